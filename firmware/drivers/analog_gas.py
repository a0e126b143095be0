# Analog electrochemical gas sensors (Alphasense B4 with ISB, Winsen ME4 on a
# transimpedance board...) read through an ADS1115.
#
# Signal S = WE - n * AE volts: the auxiliary electrode (AE) carries the cell's
# zero-current drift with temperature, so subtracting it (Alphasense "algorithm 1")
# removes most of it; without an aux channel S = WE. Then
#   conc = (S - zero_v) / sensitivity          (sensitivity in mV per ppb or ppm)
# and a cross-sensitive cell (OX-B431 sees O3 + NO2) subtracts its partner gas in ppb
# taken from the partner sensor's last reading. Zero and span calibration move
# zero_v and the sensitivity; calibrate() returns them for the station to persist.
import sensorbase as sb
from ads1115 import ADS1115
from gas import MOLAR_MASS, to_mass, to_ppb


class AnalogGas(sb.Sensor):
    def __init__(self, i2c, gas="no2", channel=0, aux_channel=None, addr=0x48, fsr_mv=4096,
                 n_aux=1.0, zero_v=0.0, sens_mv=None, unit="ppb", cross=None, cross_factor=1.0,
                 samples=4, warmup_s=600, name=None):
        if unit not in ("ppb", "ppm"):
            raise ValueError("analog_gas: unit must be ppb or ppm")
        if gas not in MOLAR_MASS or (cross is not None and cross not in MOLAR_MASS):
            raise ValueError("analog_gas: unknown gas %r" % (gas if gas not in MOLAR_MASS else cross))
        self.adc = ADS1115(i2c, addr)
        self.gas = gas
        self.params = (gas,)
        self.channel = channel
        self.aux = aux_channel
        self.fsr_mv = fsr_mv
        self.n_aux = n_aux
        self.zero_v = zero_v
        self.unit = unit
        self.cross = cross  # e.g. "no2" for an ozone (OX) cell; linked by drivers_setup
        self.cross_factor = cross_factor
        self.samples = max(1, samples)
        self.warmup_s = warmup_s  # biased cells need minutes after power-up
        self.name = name or "%s-analog" % gas
        self.adc.name = self.name
        # Without a sensitivity from the cell's certificate or a span calibration the
        # value is meaningless: say so (the sampler flags "cal") instead of guessing.
        self.uncalibrated = sens_mv is None
        self.sens_mv = 1.0 if sens_mv is None else sens_mv
        self.signal_v = None

    def signal(self):
        # Mean of a few conversions: the cells' output is noisy at the 0.1 mV level.
        s = 0.0
        for _ in range(self.samples):
            v = self.adc.read_v(self.channel, self.fsr_mv)
            if self.aux is not None:
                v -= self.n_aux * self.adc.read_v(self.aux, self.fsr_mv)
            s += v
        self.signal_v = s / self.samples
        return self.signal_v

    def measure(self):
        conc = (self.signal() - self.zero_v) * 1000 / self.sens_mv
        if self.cross:
            other = self.env(self.cross)
            if other is None:
                raise self.err(sb.SensorError, "needs %s for cross-sensitivity, none yet"
                               % self.cross)
            ppb = to_ppb(self.cross, other) * self.cross_factor
            conc -= ppb if self.unit == "ppb" else ppb / 1000
        return {self.gas: to_mass(self.gas, conc, self.unit)}

    def calibrate(self, zero=False, span=None, sens_mv=None, zero_v=None):
        # zero=True in zero air; span=<concentration in `unit`> with span gas applied;
        # or sens_mv / zero_v typed in from the cell's calibration certificate.
        if sens_mv is not None or zero_v is not None:
            out = {}
            if zero_v is not None:
                self.zero_v = out["zero_v"] = float(zero_v)
            if sens_mv is not None:
                if not sens_mv:
                    raise ValueError("%s: sens_mv must not be 0" % self.name)
                self.sens_mv = out["sens_mv"] = float(sens_mv)
                self.uncalibrated = False
            return out
        if zero:
            self.zero_v = self.signal()
            return {"zero_v": self.zero_v}
        if span is None:
            raise ValueError("%s: calibrate(zero=True) or calibrate(span=<%s>)"
                             % (self.name, self.unit))
        d = self.signal() - self.zero_v
        if abs(d) < 0.0005 or not span:
            raise ValueError("%s: span signal %.1f mV above zero is too small"
                             % (self.name, d * 1000))
        self.sens_mv = d * 1000 / span
        self.uncalibrated = False
        return {"sens_mv": self.sens_mv}
