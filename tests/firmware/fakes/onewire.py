# Fake of MicroPython's frozen `onewire` module (ESP32 build) on top of the fake
# machine: OneWire(Pin) talks bytes to the DS18B20 models attached with
# machine.attach("onewire", <gpio>, device). Bytes, not time slots: the slot timing
# lives in the ESP32's C code and cannot be exercised on a build machine.
import machine


class OneWireError(Exception):
    pass


class OneWire:
    SEARCH_ROM = 0xF0
    MATCH_ROM = 0x55
    SKIP_ROM = 0xCC

    def __init__(self, pin):
        self.pin = pin
        self._id = pin.id if hasattr(pin, "id") else pin
        self._sel = []
        self._state = "idle"
        self._rom = bytearray()

    def _devs(self):
        return machine.device("onewire", self._id) or []

    def reset(self, required=False):
        devs = [d for d in self._devs() if d.present]
        self._state = "rom"
        self._sel = []
        for d in devs:
            d.bus_reset()
        if required and not devs:
            raise OneWireError
        return bool(devs)

    def writebyte(self, b):
        if self._state == "rom":
            if b == self.SKIP_ROM:
                self._sel = [d for d in self._devs() if d.present]
                self._state = "func"
            elif b == self.MATCH_ROM:
                self._rom = bytearray()
                self._state = "match"
            else:
                self._state = "idle"
        elif self._state == "match":
            self._rom.append(b)
            if len(self._rom) == 8:
                self._sel = [d for d in self._devs() if d.present and bytes(d.rom) == bytes(self._rom)]
                self._state = "func"
        elif self._state == "func":
            for d in self._sel:
                d.write_byte(b)

    def write(self, buf):
        for b in buf:
            self.writebyte(b)

    def readbyte(self):
        # Open-drain bus: idle high (0xFF); several devices AND their bits.
        v = 0xFF
        for d in self._sel:
            v &= d.read_byte()
        return v

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self.readbyte()

    def select_rom(self, rom):
        self.reset()
        self.writebyte(self.MATCH_ROM)
        self.write(rom)

    def scan(self):
        # The real search walks ROM bits; here the answer is what it would find.
        return [bytearray(d.rom) for d in self._devs() if d.present]

    def crc8(self, data):
        crc = 0
        for b in data:
            for _ in range(8):
                crc = (crc >> 1) ^ 0x8C if (crc ^ b) & 1 else crc >> 1
                b >>= 1
        return crc
