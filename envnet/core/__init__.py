"""envnet/core"""
