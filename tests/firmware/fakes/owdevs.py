# Fake DS18B20 on the fake 1-Wire bus, built from the datasheet: scratchpad layout,
# power-on value +85 degC (0x0550), 750 ms conversion at 12 bit, Dallas CRC-8.
import fakeclock


def dallas_crc(data):
    # Written independently of the driver's: shift-register form, LSB first.
    crc = 0
    for byte in data:
        for i in range(8):
            bit = ((byte >> i) ^ crc) & 1
            crc = ((crc >> 1) ^ (0x8C if bit else 0)) & 0xFF
    return crc


def make_rom(serial, family=0x28):
    r = bytearray(8)
    r[0] = family
    for i in range(6):
        r[1 + i] = (serial >> (8 * i)) & 0xFF
    r[7] = dallas_crc(r[:7])
    return bytes(r)


def raw_of(temp_c):
    raw = int(round(temp_c * 16))
    return raw & 0xFFFF


class DS18B20:
    def __init__(self, temp_c=20.0, serial=1, present=True):
        self.temp_c = temp_c
        self.rom = make_rom(serial)
        self.present = present
        self.sp = bytearray((0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0))  # power-on
        self.sp[8] = dallas_crc(self.sp[:8])
        self.conv_done_at = None
        self.corrupt_crc = False
        self.stuck_low = False  # bus shorted: every bit reads 0
        self._cmd = None
        self._out = []
        self._wr = []
        self.conversions = 0

    def bus_reset(self):
        self._cmd = None
        self._out = []
        self._wr = []

    def _finish(self):
        if self.conv_done_at is not None and fakeclock.ticks_ms() >= self.conv_done_at:
            bits = 9 + ((self.sp[4] >> 5) & 3)
            raw = raw_of(self.temp_c) & ~((1 << (12 - bits)) - 1) & 0xFFFF
            self.sp[0] = raw & 0xFF
            self.sp[1] = raw >> 8
            self.sp[8] = dallas_crc(self.sp[:8])
            self.conv_done_at = None

    def write_byte(self, b):
        if self._cmd == 0x4E:  # write scratchpad: TH, TL, config
            self._wr.append(b)
            if len(self._wr) == 3:
                self.sp[2], self.sp[3], self.sp[4] = self._wr[0], self._wr[1], self._wr[2] | 0x1F
                self.sp[8] = dallas_crc(self.sp[:8])
            return
        self._cmd = b
        if b == 0x44:
            bits = 9 + ((self.sp[4] >> 5) & 3)
            self.conv_done_at = fakeclock.ticks_ms() + {9: 94, 10: 188, 11: 375, 12: 750}[bits]
            self.conversions += 1
        elif b == 0xBE:
            self._finish()
            out = list(self.sp)
            if self.corrupt_crc:
                out[8] ^= 0x55
            self._out = out

    def read_byte(self):
        if self.stuck_low:
            return 0
        if self._cmd == 0x44:
            self._finish()
            return 0 if self.conv_done_at is not None else 0xFF  # read slots show "busy"
        return self._out.pop(0) if self._out else 0xFF
