# Winsen ZE-series electrochemical gas modules (ZE03-x, ZE07-CO, ZE15-CO) on a UART,
# 9600 8N1. All frames are 9 bytes starting 0xFF; checksum = (~sum(bytes 1..7)) + 1.
#   read (Q&A):   FF 01 86 00 00 00 00 00 79
#   answer:       FF 86 Ch Cl -- -- -- -- cs     concentration = Ch:Cl / 10^decimals
#   active frame: FF gas unit decimals Ch Cl Rh Rl cs   (sent every second unprompted)
#   to Q&A:       FF 01 78 04 .. (ZE03)   FF 01 78 41 .. (ZE07/ZE15)
#   to active:    FF 01 78 03 .. (ZE03)   FF 01 78 40 .. (ZE07/ZE15)
# The answer frame does not say its unit or resolution, so those come from the
# profile (defaults per model below); active frames carry their decimals themselves.
# UNTESTABLE HERE: Winsen's manuals differ between models and revisions in the Q&A
# layout; check one answer against the module's own manual at commissioning.
import sensorbase as sb
from checksum import winsen_sum
from gas import MOLAR_MASS, to_mass

_MODES = {"ze03": (0x04, 0x03), "ze07": (0x41, 0x40), "ze15": (0x41, 0x40)}
# Resolution of the Q&A answer per model and gas (ZE07/ZE15-CO: 0.1 ppm).
_DECIMALS = {"ze03": {"co": 0, "so2": 1, "no2": 1, "o3": 1}, "ze07": {"co": 1}, "ze15": {"co": 1}}


def frame(cmd, arg=0):
    f = bytearray(9)
    f[0] = 0xFF
    f[1] = 0x01
    f[2] = cmd
    f[3] = arg
    f[8] = winsen_sum(f)
    return f


CMD_READ = frame(0x86)


class ZE(sb.Sensor):
    def __init__(self, uart, gas="co", model="ze07", mode="qa", unit="ppm", decimals=None,
                 warmup_s=180, timeout_ms=None, name=None):
        if model not in _MODES:
            raise ValueError("winsen: model must be one of %s" % ", ".join(_MODES))
        if mode not in ("qa", "active"):
            raise ValueError("winsen: mode must be qa or active")
        if gas not in MOLAR_MASS:
            raise ValueError("winsen: unknown gas %r" % gas)
        self.uart = uart
        self.gas = gas
        self.params = (gas,)
        self.model = model
        self.mode = mode
        self.unit = unit
        self.decimals = _DECIMALS[model].get(gas, 1) if decimals is None else decimals
        self.warmup_s = warmup_s  # electrochemical cells settle for minutes after power-up
        self.timeout_ms = timeout_ms or (1000 if mode == "qa" else 2500)
        self.name = name or "%s-%s" % (model, gas)
        self.raw = None
        self._buf = bytearray(9)
        self._mv = memoryview(self._buf)
        self._moded = False

    def _setup(self):
        qa, active = _MODES[self.model]
        sb.uart_drain(self.uart, self._buf)
        self.uart.write(frame(0x78, qa if self.mode == "qa" else active))
        self._moded = True

    def start(self):
        if not self._moded:
            self._setup()
        sb.uart_drain(self.uart, self._buf)
        if self.mode == "qa":
            self.uart.write(CMD_READ)
        self._mark()

    def measure(self):
        if self._t0 is None:
            self.start()
        try:
            b = self.read_frame()
        finally:
            self._t0 = None
        if b[1] == 0x86:
            raw, dec = (b[2] << 8) | b[3], self.decimals
        else:
            raw, dec = (b[4] << 8) | b[5], b[3]
        self.raw = raw
        return {self.gas: to_mass(self.gas, raw / (10 ** dec), self.unit)}

    def read_frame(self):
        # 0xFF is common in noise, so a frame that fails its checksum is treated as a
        # false start: slide one byte on. Only if no good frame turns up do we report
        # the checksum failure (or a timeout when nothing frame-like arrived).
        buf = self._buf
        n = 0
        bad = None
        skipped = 0
        while True:
            n = sb.uart_fill(self.uart, self._mv, n, 9, self._t0, self.timeout_ms)
            i = 0
            while i < n and buf[i] != 0xFF:
                i += 1
            if i == 0 and n == 9:
                want = 0x86 if self.mode == "qa" else None
                ok_cmd = buf[1] == want if want else buf[1] not in (0x86, 0x78)
                if ok_cmd and winsen_sum(buf) == buf[8]:
                    return buf
                if ok_cmd:
                    bad = (winsen_sum(buf), buf[8])
                i = 1
            if i:
                buf[0:n - i] = buf[i:n]
                n -= i
                skipped += i
                if skipped <= 64:
                    continue
            if bad:
                raise self.err(sb.CRCError, "checksum 0x%02x, frame says 0x%02x" % bad)
            if n == 0 and not skipped:
                raise self.err(sb.SensorTimeout, "no data in %d ms" % self.timeout_ms)
            raise self.err(sb.SensorTimeout, "no valid frame in %d ms (%d bytes skipped, %d left)"
                           % (self.timeout_ms, skipped, n))
