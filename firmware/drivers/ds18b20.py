# Maxim DS18B20 1-Wire thermometer (the waterproof stainless probe), externally
# powered (3 wires; parasite power needs a strong pull-up we do not fit).
#
#   reset, SKIP ROM (CC) or MATCH ROM (55 + 8 ROM bytes), CONVERT T (44): 750 ms at
#   12 bit; reset, select, READ SCRATCHPAD (BE): 9 bytes = T lsb, T msb, TH, TL,
#   config, FF, reserved, 10, CRC (Dallas CRC-8 over bytes 0..7).
#   T = signed 16-bit / 16 degC at 12 bit. 0x0550 (+85 degC) is the power-on value:
#   read back without a finished conversion (brown-out, or a parasite-powered probe).
# `ow` is a MicroPython onewire.OneWire (frozen in the ESP32 build): reset(),
# writebyte(), readinto(), select_rom().
# UNTESTABLE HERE: 1-Wire slot timing (ESP32 C code) and long-cable behaviour; the
# fake bus works in bytes.
import sensorbase as sb
from checksum import crc8_dallas

FAMILY = 0x28
_CONV_MS = {9: 94, 10: 188, 11: 375, 12: 750}


def temperature(sp):
    # Checked 9-byte scratchpad -> degC; raises on CRC, bus-stuck or power-on data.
    ones = 0
    for b in sp:
        ones += b == 0xFF
    if ones == 9:
        # Idle bus: nobody drove it (this ROM is absent while another probe answered
        # the reset, or the data line broke after the presence pulse).
        raise sb.SensorError("ds18b20: no device answered (all 0xFF)")
    c = crc8_dallas(sp, 0, 8)
    if c != sp[8]:
        raise sb.CRCError("ds18b20: scratchpad CRC 0x%02x, device sent 0x%02x" % (c, sp[8]))
    if sp[4] & 0x9F != 0x1F or sp[5] != 0xFF:
        # All-zero bytes pass the CRC; a real config byte has bits 0..4 set.
        raise sb.SensorError("ds18b20: implausible scratchpad (bus held low?)")
    raw = sp[0] | (sp[1] << 8)
    if raw & 0x8000:
        raw -= 65536
    if raw == 0x0550:
        raise sb.SensorError("ds18b20: power-on value 85 degC, conversion did not run")
    bits = 9 + ((sp[4] >> 5) & 3)
    raw &= ~((1 << (12 - bits)) - 1)  # low bits are undefined below 12-bit resolution
    return raw / 16


def parse_rom(rom):
    # "28ff4c8b01160393" or 8 bytes -> bytes, validated (family and ROM CRC).
    if isinstance(rom, str):
        rom = bytes(int(rom[i:i + 2], 16) for i in range(0, len(rom), 2))
    if len(rom) != 8 or crc8_dallas(rom, 0, 7) != rom[7]:
        raise ValueError("ds18b20: bad ROM code %r" % rom)
    if rom[0] != FAMILY:
        raise ValueError("ds18b20: ROM family 0x%02x is not a DS18B20" % rom[0])
    return bytes(rom)


class DS18B20(sb.Sensor):
    name = "ds18b20"
    params = ("t",)

    def __init__(self, ow, rom=None, resolution=12, name=None):
        if resolution not in _CONV_MS:
            raise ValueError("ds18b20: resolution must be 9..12")
        self.ow = ow
        self.rom = parse_rom(rom) if rom else None  # None: the only device on the bus
        self.resolution = resolution
        self._ms = _CONV_MS[resolution]
        self._res_set = resolution == 12  # 12 bit is the factory/EEPROM default
        self._sp = bytearray(9)
        if name:
            self.name = name

    def _select(self):
        if not self.ow.reset():
            raise self.err(sb.SensorError, "no presence pulse (probe unplugged?)")
        if self.rom is None:
            self.ow.writebyte(0xCC)
        else:
            self.ow.writebyte(0x55)
            self.ow.write(self.rom)

    def start(self):
        if not self._res_set:
            self._select()
            self.ow.write(bytes((0x4E, 0x4B, 0x46, ((self.resolution - 9) << 5) | 0x1F)))
            self._res_set = True
        self._select()
        self.ow.writebyte(0x44)
        self._mark()

    def measure(self):
        if self._t0 is None:
            self.start()
        self._wait(self._ms)
        self._t0 = None
        self._select()
        self.ow.writebyte(0xBE)
        self.ow.readinto(self._sp)
        return {"t": temperature(self._sp)}
