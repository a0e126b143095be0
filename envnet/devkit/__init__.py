"""envnet/devkit"""
