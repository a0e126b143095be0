# Simulated sensors for 'sim-*' boards (unix port, demo, tests). Same shape as the
# real drivers: read() -> {param: value}, warmup_s, params, calibrate(**kw).
# Values are plausible for Shenyang (base * per-station factor, slow drift, noise);
# sim.json entries {"param": value} replace a value exactly, {"param": null} makes it
# missing, {"fault": "<sensor name>"} makes that sensor raise OSError.
import math
import random
import time

# name -> ((param, base, relative noise), ...); grouped like the physical sensors so
# that warm-up and faults act per sensor as on a real board.
_AIR = (
    ("pms", (("pm25", 35.0, 0.08), ("pm10", 62.0, 0.08))),
    ("gas", (("no2", 38.0, 0.05), ("o3", 75.0, 0.05), ("co", 0.8, 0.05), ("so2", 14.0, 0.05))),
    ("bme", (("t", 12.0, 0.01), ("rh", 55.0, 0.02), ("p", 1012.0, 0.0005))),
)
_WATER = (
    ("ezo", (("ph", 7.4, 0.005), ("do", 8.2, 0.02), ("ec", 520.0, 0.01), ("orp", 240.0, 0.02),
             ("t", 9.5, 0.01))),
    ("turb", (("turb", 12.0, 0.05),)),
    ("sonde", (("nh3n", 0.45, 0.04), ("cod", 16.0, 0.03))),
)


class SimSensor:
    def __init__(self, name, spec, factor, warmup_s, sim):
        self.name = name
        self.spec = spec
        self.params = tuple(p[0] for p in spec)
        self.factor = factor
        self.warmup_s = warmup_s
        self._sim = sim
        self.cal = {}
        self.sleeps = 0

    def read(self):
        o = self._sim()
        if o.get("fault") == self.name:
            raise OSError(5, "sim fault")
        # Slow drift (hours) so that means differ from window to window.
        drift = 1 + 0.1 * math.sin(time.time() / 3600)
        out = {}
        for p, base, noise in self.spec:
            if p in o:
                if o[p] is not None:
                    out[p] = o[p]
                continue
            v = base * self.factor * drift * (1 + noise * (2 * random.random() - 1))
            if p in ("t", "ph", "p"):  # not scaled by pollution level
                v = base * (1 + noise * (2 * random.random() - 1))
            out[p] = v + self.cal.get(p, 0)
        return out

    def sleep(self):
        self.sleeps += 1

    def wake(self):
        pass

    def calibrate(self, **kw):
        # e.g. {"param": "ph", "offset": 0.05}
        p = kw.get("param")
        if p not in self.params:
            raise ValueError("param must be one of %s" % ",".join(self.params))
        self.cal[p] = float(kw.get("offset", 0))
        return {"param": p, "offset": self.cal[p]}


def make(cfg, sim):
    s = cfg.get("sim") or {}
    random.seed(int(s.get("seed", 1)))
    factor = 0.7 + 0.6 * random.random()
    warm = s.get("warmup_s") or {}
    groups = _WATER if cfg.get("kind") == "water" else _AIR
    return [SimSensor(n, spec, factor, warm.get(n, 0), sim) for n, spec in groups]
