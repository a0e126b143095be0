"""envnet/domain"""
