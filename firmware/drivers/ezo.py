# Atlas Scientific EZO circuits in I2C mode: pH, DO, EC, ORP, RTD.
#
# Protocol: write an ASCII command, wait the circuit's processing time, read back.
# The first byte of the answer is a status code: 1 success, 2 syntax error,
# 254 still processing, 255 no data pending; then ASCII text ended by a NUL.
# Temperature compensation: "RT,<t>" sets the temperature and reads in one command;
# older firmware needs "T,<t>" first ("tcomp": "t"). The temperature comes from the
# sensor the profile links as "t" (a DS18B20 or the EZO-RTD, read just before), and
# an uncompensated "R" is used until it has one. Calibration lives in the
# circuit's EEPROM, so calibrate() has nothing to persist on the station.
from micropython import const
import sensorbase as sb

SUCCESS = const(1)
SYNTAX_ERROR = const(2)
PENDING = const(254)
NO_DATA = const(255)
_BUF = const(40)

# circuit: (param, default address, ms for R/RT, ms for Cal, needs temperature)
# processing times from the EZO datasheets; "T,", "O,", "i" and queries take 300 ms.
CIRCUITS = {
    "ph": ("ph", 0x63, 900, 900, True),
    "do": ("do", 0x61, 600, 1300, True),
    "ec": ("ec", 0x64, 600, 600, True),
    "orp": ("orp", 0x62, 900, 900, False),
    "rtd": ("t", 0x66, 600, 600, False),
}


def parse_response(buf):
    # -> (code, text); text is "" unless code is SUCCESS.
    code = buf[0]
    if code != SUCCESS:
        return code, ""
    end = 1
    while end < len(buf) and buf[end] != 0:
        end += 1
    return code, bytes(buf[1:end]).decode().strip()


class EZO(sb.I2CDevice):
    def __init__(self, i2c, circuit="ph", addr=None, tcomp="rt",
                 retries=8, warmup_s=0, fields=None, name=None):
        if circuit not in CIRCUITS:
            raise ValueError("ezo: circuit must be one of %s" % ", ".join(CIRCUITS))
        if tcomp not in ("rt", "t", "none"):
            raise ValueError("ezo: tcomp must be rt, t or none")
        param, default_addr, self.read_ms, self.cal_ms, needs_t = CIRCUITS[circuit]
        sb.I2CDevice.__init__(self, i2c, default_addr if addr is None else addr)
        self.circuit = circuit
        self.param = param
        self.params = (param,)
        self.tcomp = tcomp if needs_t else "none"
        self.retries = retries
        # Potentiometric/galvanic probes sit in the water and read true at once; the
        # circuit's ~1 s boot is covered by the profile's power.sensor_settle_ms.
        self.warmup_s = warmup_s
        self.name = name or "ezo-" + circuit
        # EC: output order, from the profile (saves a 300 ms "O,?" per boot) or learned
        self.fields = fields
        self.text = None  # last raw answer, for the console
        self._buf = bytearray(_BUF)
        self._cmd = None

    # --- protocol -------------------------------------------------------------------
    def send(self, cmd):
        self.write(cmd.encode())
        self._cmd = cmd
        self._mark()

    def response(self, wait_ms):
        # Wait out the processing time, then poll while the circuit says 254.
        self._wait(wait_ms)
        cmd = self._cmd
        self._t0 = None
        for _ in range(self.retries):
            self.read_into(self._buf)
            code, text = parse_response(self._buf)
            if code == SUCCESS:
                return text
            if code == PENDING:
                sb.sleep_ms(100)
                continue
            if code == SYNTAX_ERROR:
                raise self.err(sb.DeviceError, "syntax error for %r" % cmd)
            if code == NO_DATA:
                raise self.err(sb.DeviceError, "no data pending after %r (command lost?)" % cmd)
            raise self.err(sb.SensorError, "bad response code %d after %r" % (code, cmd))
        raise self.err(sb.SensorTimeout, "still processing %r after %d ms"
                       % (cmd, wait_ms + 100 * self.retries))

    def query(self, cmd, wait_ms=300):
        self.send(cmd)
        return self.response(wait_ms)

    # --- measurement ------------------------------------------------------------------
    def start(self):
        if self.circuit == "ec" and self.fields is None:
            self._learn_fields()  # before "R": any command discards a pending reading
        t = self.env("t") if self.tcomp != "none" else None
        if t is None or not -5 <= t <= 100:
            self.send("R")
        elif self.tcomp == "rt":
            self.send("RT,%.2f" % t)
        else:
            self.query("T,%.2f" % t)
            self.send("R")

    def measure(self):
        if self._t0 is None:
            self.start()
        text = self.response(self.read_ms)
        self.text = text
        parts = text.split(",")
        i = 0
        if self.fields and "EC" in self.fields:
            i = self.fields.index("EC")
        try:
            return {self.param: float(parts[i])}
        except (ValueError, IndexError):
            raise self.err(sb.SensorError, "unparsable reading %r" % text)

    def _learn_fields(self):
        # EC can output EC, TDS, S (salinity), SG in that order, each switchable;
        # "O,?" -> "?O,EC,TDS,S,SG" says which are on. Make sure EC is.
        text = self.query("O,?")
        f = text.split(",")[1:] if text.startswith("?O") else []
        if "EC" not in f:
            self.query("O,EC,1")
            f = ["EC"] + [x for x in f if x != "EC"]
        self.fields = f

    # --- calibration and power ----------------------------------------------------------
    def calibrate(self, point=None, value=None):
        # pH: point mid|low|high + value (mid first: it clears low/high), or clear.
        # DO: point atm (in air) | zero (in zero solution) | clear.
        # EC: point dry | one | low | high (+ value in uS/cm) | clear.
        # ORP, RTD: value (mV / degC) | point clear.
        c = self.circuit
        if point == "clear":
            cmd = "Cal,clear"
        elif c == "ph" and point in ("mid", "low", "high") and value is not None:
            cmd = "Cal,%s,%.2f" % (point, value)
        elif c == "do" and point in ("atm", "zero"):
            cmd = "Cal" if point == "atm" else "Cal,0"
        elif c == "ec" and point == "dry":
            cmd = "Cal,dry"
        elif c == "ec" and point in ("one", "low", "high") and value is not None:
            cmd = "Cal,%d" % value if point == "one" else "Cal,%s,%d" % (point, value)
        elif c in ("orp", "rtd") and point is None and value is not None:
            cmd = "Cal,%.2f" % value
        else:
            raise ValueError("%s: bad calibration point=%r value=%r" % (self.name, point, value))
        self.send(cmd)
        self.response(self.cal_ms)
        points = self.query("Cal,?")  # "?Cal,2"
        return {"cal_points": int(points.split(",")[1]) if "," in points else None}

    def sleep(self):
        # No answer to "Sleep"; the next command wakes the circuit.
        self.write(b"Sleep")

    def wake(self):
        # The first command after Sleep only wakes the circuit; send a harmless one.
        # UNTESTABLE HERE: modelled in the fake from the datasheet, not seen on a chip.
        try:
            self.write(b"i")
        except sb.SensorError:
            pass
        sb.sleep_ms(300)
        self._t0 = None
