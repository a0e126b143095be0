# Fake I2C sensors, each built from its datasheet and written independently of the
# drivers: SHT3x, SHT4x, BME280 (register map with real calibration layout),
# ADS1115 (config/conversion registers, conversion time), Atlas EZO (ASCII command
# protocol with processing times and status codes 1/2/254/255).
# A chip that is not ready NACKs: OSError(19), as the ESP32 port raises it.
import fakeclock
import struct


def nack():
    raise OSError(19)


def crc8(data):
    # Sensirion CRC-8, written out independently of the driver.
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc << 1) ^ 0x31 if crc & 0x80 else crc << 1
            crc &= 0xFF
    return crc


# --- Sensirion -----------------------------------------------------------------------
class _SHT:
    commands = {}

    def __init__(self, t=21.5, rh=45.0):
        self.t = t
        self.rh = rh
        self.ready_at = None
        self.fault = None  # "crc_t" | "crc_rh": next answer has a broken CRC
        self.writes = []

    def raws(self):
        raise NotImplementedError

    def write(self, data):
        self.writes.append(data)
        ms = self.commands.get(data)
        if ms is None:
            return  # soft reset, status clear... accepted and ignored
        self.ready_at = fakeclock.ticks_ms() + ms

    def read(self, n):
        if self.ready_at is None or fakeclock.ticks_ms() < self.ready_at:
            nack()  # no measurement, or still measuring: NACK on the read header
        self.ready_at = None
        st, srh = self.raws()
        out = bytearray(6)
        out[0], out[1] = st >> 8, st & 0xFF
        out[2] = crc8(out[0:2])
        out[3], out[4] = srh >> 8, srh & 0xFF
        out[5] = crc8(out[3:5])
        fault, self.fault = self.fault, None
        if fault == "crc_t":
            out[2] ^= 1
        elif fault == "crc_rh":
            out[5] ^= 0x80
        return bytes(out[:n])


class SHT3x(_SHT):
    # single shot, no clock stretching: high 15 ms, medium 6 ms, low 4 ms (max)
    commands = {b"\x24\x00": 15, b"\x24\x0b": 6, b"\x24\x16": 4}

    def raws(self):
        return (round((self.t + 45) * 65535 / 175), round(self.rh * 65535 / 100))


class SHT4x(_SHT):
    commands = {b"\xfd": 8, b"\xf6": 4, b"\xe0": 2}

    def raws(self):
        return (round((self.t + 45) * 65535 / 175), round((self.rh + 6) * 65535 / 125))


# --- BME280 ----------------------------------------------------------------------------
# T and P: the worked example of Bosch's BMP280 datasheet (section 3.12), whose T/P
# compensation the BME280 shares. H: trimming of a real BME280.
DATASHEET_CAL = {
    "T": (27504, 26435, -1000),
    "P": (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000),
    "H": (75, 362, 0, 313, 50, 30),
}


class BME280:
    def __init__(self, adc_t=519888, adc_p=415148, adc_h=28000, cal=DATASHEET_CAL,
                 chip_id=0x60):
        self.regs = bytearray(256)
        self.regs[0xD0] = chip_id
        self._put_cal(cal)
        self.adc = (adc_t, adc_p, adc_h)
        # Reset values of the data registers: 0x80000 / 0x8000 = "skipped".
        self.regs[0xF7:0xFF] = bytes((0x80, 0, 0, 0x80, 0, 0, 0x80, 0))
        self.ptr = 0
        self.done_at = None
        self.measurements = 0

    def _put_cal(self, cal):
        t1, t2, t3 = cal["T"]
        p = cal["P"]
        h1, h2, h3, h4, h5, h6 = cal["H"]
        c = struct.pack("<Hhh", t1, t2, t3) + struct.pack("<Hhhhhhhhh", *p)
        self.regs[0x88:0x88 + 24] = c
        self.regs[0xA1] = h1
        self.regs[0xE1:0xE3] = struct.pack("<h", h2)
        self.regs[0xE3] = h3
        self.regs[0xE4] = (h4 >> 4) & 0xFF
        self.regs[0xE5] = (h4 & 0x0F) | ((h5 & 0x0F) << 4)
        self.regs[0xE6] = (h5 >> 4) & 0xFF
        self.regs[0xE7] = h6 & 0xFF

    def _tick(self):
        if self.done_at is not None and fakeclock.ticks_ms() >= self.done_at:
            t, p, h = self.adc
            self.regs[0xF7:0xFA] = bytes((p >> 12, (p >> 4) & 0xFF, (p & 0xF) << 4))
            self.regs[0xFA:0xFD] = bytes((t >> 12, (t >> 4) & 0xFF, (t & 0xF) << 4))
            self.regs[0xFD:0xFF] = bytes((h >> 8, h & 0xFF))
            self.regs[0xF3] &= ~0x08
            self.regs[0xF4] &= ~0x03  # back to sleep mode
            self.done_at = None

    def write(self, data):
        self._tick()
        self.ptr = data[0]
        for b in data[1:]:  # register/value pairs collapse to one value per write here
            self.regs[self.ptr] = b
            if self.ptr == 0xF4 and b & 0x03 in (1, 2):  # forced mode: measure once
                self.regs[0xF3] |= 0x08
                self.done_at = fakeclock.ticks_ms() + 9
                self.measurements += 1
            if self.ptr == 0xE0 and b == 0xB6:
                self.regs[0xF4] = 0
            self.ptr += 1

    def read(self, n):
        self._tick()
        out = bytes(self.regs[self.ptr:self.ptr + n])
        self.ptr += n
        return out


# --- ADS1115 --------------------------------------------------------------------------------
_FSR = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
_SPS = (8, 16, 32, 64, 128, 250, 475, 860)


class ADS1115:
    def __init__(self, volts=(0.0, 0.0, 0.0, 0.0)):
        self.volts = list(volts)
        self.config = 0x8583  # power-on default
        self.conv = 0
        self.ptr = 0
        self.done_at = None
        self.pending = None
        self.configs = []  # every config word written, for bit-exact checks

    def _input(self, mux):
        v = self.volts
        if mux >= 4:
            return v[mux - 4]
        a, b = ((0, 1), (0, 3), (1, 3), (2, 3))[mux]
        return v[a] - v[b]

    def _tick(self):
        if self.done_at is not None and fakeclock.ticks_ms() >= self.done_at:
            self.conv = self.pending
            self.config |= 0x8000
            self.done_at = None

    def write(self, data):
        self._tick()
        self.ptr = data[0] & 3
        if len(data) >= 3:
            word = data[1] << 8 | data[2]
            if self.ptr == 1:
                self.configs.append(word)
                self.config = word & 0x7FFF
                if word & 0x8000:
                    mux = (word >> 12) & 7
                    fsr = _FSR[(word >> 9) & 7]
                    code = int(round(self._input(mux) / fsr * 32768))
                    self.pending = max(-32768, min(32767, code))
                    self.done_at = fakeclock.ticks_ms() + 1000 // _SPS[(word >> 5) & 7] + 1
                else:
                    self.config |= 0x8000

    def read(self, n):
        self._tick()
        v = self.config if self.ptr == 1 else (self.conv & 0xFFFF if self.ptr == 0 else 0)
        return bytes((v >> 8, v & 0xFF))[:n]


# --- Atlas Scientific EZO ----------------------------------------------------------------------
_INFO = {"ph": "?i,pH,2.16", "do": "?i,DO,2.12", "ec": "?i,EC,2.15", "orp": "?i,OR,2.11",
         "rtd": "?i,RTD,2.13"}
_READ_MS = {"ph": 900, "do": 600, "ec": 600, "orp": 900, "rtd": 600}
_CAL_MS = {"ph": 900, "do": 1300, "ec": 600, "orp": 900, "rtd": 600}


class EZO:
    def __init__(self, circuit="ph", value=7.0):
        self.circuit = circuit
        self.value = value
        self.temp = 25.0
        self.outputs = ["EC", "TDS", "S", "SG"] if circuit == "ec" else None
        self.cal_points = 0
        self.asleep = False
        self.commands = []
        self.pending = None  # (ready_at, code, text)
        self.fault = None  # "syntax" | "busy" | "lost": applies to the next command

    def _reading(self):
        v = self.value
        if self.circuit != "ec":
            return "%.3f" % v if self.circuit in ("ph", "rtd") else "%.2f" % v
        vals = {"EC": "%.2f" % v, "TDS": "%d" % int(v * 0.5), "S": "%.2f" % (v / 2000),
                "SG": "1.000"}
        return ",".join(vals[f] for f in self.outputs)

    def _answer(self, cmd):
        # -> (ms, code, text) for a command, per the EZO datasheets
        c = self.circuit
        up = cmd.upper()
        if up == "R":
            return _READ_MS[c], 1, self._reading()
        if up.startswith("RT,") and c in ("ph", "do", "ec"):
            self.temp = float(cmd[3:])
            return _READ_MS[c], 1, self._reading()
        if up == "T,?" and c in ("ph", "do", "ec"):
            return 300, 1, "?T,%.2f" % self.temp
        if up.startswith("T,") and c in ("ph", "do", "ec"):
            self.temp = float(cmd[2:])
            return 300, 1, ""
        if up == "CAL,?":
            return 300, 1, "?CAL,%d" % self.cal_points
        if up == "CAL,CLEAR":
            self.cal_points = 0
            return 300, 1, ""
        if up.startswith("CAL"):
            ok = {"ph": up.startswith("CAL,MID,") or up.startswith("CAL,LOW,")
                  or up.startswith("CAL,HIGH,"),
                  "do": up in ("CAL", "CAL,0"),
                  "ec": up == "CAL,DRY" or up.startswith("CAL,"),
                  "orp": up.startswith("CAL,"), "rtd": up.startswith("CAL,")}[c]
            if not ok:
                return 300, 2, ""
            if up.startswith("CAL,MID"):
                self.cal_points = 1
            elif up != "CAL,DRY":
                self.cal_points += 1
            return _CAL_MS[c], 1, ""
        if up == "O,?" and c == "ec":
            return 300, 1, "?O," + ",".join(self.outputs)
        if up.startswith("O,") and c == "ec":
            f, on = cmd[2:].split(",")
            if on == "1" and f not in self.outputs:
                self.outputs.append(f)
                self.outputs.sort(key=["EC", "TDS", "S", "SG"].index)
            elif on == "0" and f in self.outputs:
                self.outputs.remove(f)
            return 300, 1, ""
        if up == "I":
            return 300, 1, _INFO[c]
        return 300, 2, ""

    def write(self, data):
        cmd = bytes(data).decode()
        self.commands.append(cmd)
        if self.asleep:
            self.asleep = False  # the command only wakes the circuit
            self.pending = None
            return
        if cmd == "Sleep":
            self.asleep = True
            self.pending = None
            return
        ms, code, text = self._answer(cmd)
        fault, self.fault = self.fault, None
        if fault == "syntax":
            code = 2
        elif fault == "busy":
            ms = 10 ** 9
        elif fault == "lost":
            self.pending = None
            return
        self.pending = (fakeclock.ticks_ms() + ms, code, text)

    def read(self, n):
        out = bytearray(n)
        if self.asleep:
            nack()
        if self.pending is None:
            out[0] = 255
            return bytes(out)
        ready, code, text = self.pending
        if fakeclock.ticks_ms() < ready:
            out[0] = 254
            return bytes(out)
        self.pending = None
        out[0] = code
        if code == 1:
            t = text.encode()[:n - 2]
            out[1:1 + len(t)] = t
        return bytes(out)


# --- scripted device ----------------------------------------------------------------------
class Fixed:
    # Answers every read with bytes the CPython test built from the datasheet.
    def __init__(self, data):
        self.data = bytes(data)
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))

    def read(self, n):
        return self.data[:n]
