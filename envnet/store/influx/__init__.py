"""envnet/store/influx"""
