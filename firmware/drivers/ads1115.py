# TI ADS1115 16-bit I2C ADC, single-shot conversions.
#
# Config register (0x01), written big-endian:
#   15 OS (write 1: start; reads 0 while converting)   14:12 MUX (100..111 = AINx vs GND,
#   000 = AIN0-AIN1, 011 = AIN2-AIN3)   11:9 PGA (full scale 6.144/4.096/2.048/1.024/
#   0.512/0.256 V)   8 MODE (1 = single-shot)   7:5 data rate   1:0 COMP_QUE (11 = off)
# Conversion register (0x00): signed 16-bit, LSB = full scale / 32768.
import sensorbase as sb

_PGA = {6144: 0, 4096: 1, 2048: 2, 1024: 3, 512: 4, 256: 5}  # full scale, mV
_RATE = {8: 0, 16: 1, 32: 2, 64: 3, 128: 4, 250: 5, 475: 6, 860: 7}  # samples/s
_DIFF = {(0, 1): 0, (0, 3): 1, (1, 3): 2, (2, 3): 3}


def config_word(channel, fsr_mv=4096, rate=128, neg=None):
    if fsr_mv not in _PGA:
        raise ValueError("ads1115: fsr_mv must be one of %s" % sorted(_PGA))
    if rate not in _RATE:
        raise ValueError("ads1115: rate must be one of %s" % sorted(_RATE))
    if neg is None:
        if not 0 <= channel <= 3:
            raise ValueError("ads1115: channel must be 0..3")
        mux = 4 + channel
    else:
        mux = _DIFF.get((channel, neg))
        if mux is None:
            raise ValueError("ads1115: differential pairs are 0-1, 0-3, 1-3, 2-3")
    return 0x8000 | (mux << 12) | (_PGA[fsr_mv] << 9) | 0x0100 | (_RATE[rate] << 5) | 0x0003


class ADS1115(sb.I2CDevice):
    name = "ads1115"

    def __init__(self, i2c, addr=0x48, rate=128):
        sb.I2CDevice.__init__(self, i2c, addr)
        self.rate = rate
        self._ms = 1000 // rate + 2  # one conversion period plus oscillator tolerance
        self._buf = bytearray(2)

    def read_raw(self, channel, fsr_mv=4096, neg=None):
        cfg = config_word(channel, fsr_mv, self.rate, neg)
        b = self._buf
        b[0] = cfg >> 8
        b[1] = cfg & 0xFF
        self.write_reg(0x01, b)
        sb.sleep_ms(self._ms)
        for _ in range(10):
            self.read_reg(0x01, b)
            if b[0] & 0x80:  # OS = 1: conversion done
                break
            sb.sleep_ms(1)
        else:
            raise self.err(sb.SensorTimeout, "conversion did not finish")
        self.read_reg(0x00, b)
        v = (b[0] << 8) | b[1]
        return v - 65536 if v & 0x8000 else v

    def read_v(self, channel, fsr_mv=4096, neg=None):
        return self.read_raw(channel, fsr_mv, neg) * fsr_mv / 32768000
