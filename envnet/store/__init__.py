"""envnet/store"""
