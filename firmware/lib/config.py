# Station configuration: config.json in the current directory (the device root).
# Required keys must be present (a clear error names the missing one); optional keys
# get defaults. Remote/console changes are validated against SETTABLE, persisted
# atomically and applied without a restart by the station.
import json
import fsutil
from contract import PARAMS

PATH = "config.json"

REQUIRED = ("station_id", "kind", "board", "interval_s", "sample_s", "health_s",
            "mqtt.host", "mqtt.port")

DEFAULTS = {
    # tls: MQTT over TLS, verifying the broker against the CA certificate in file `ca`
    # (PEM or DER, on the flash next to config.json); no CA file, no connection.
    "mqtt": {"user": "", "password": "", "keepalive": 30, "tls": False, "ca": "ca.pem"},
    "wifi": {"ssid": "", "password": ""},
    "ntp": {"host": "pool.ntp.org"},
    "sim": {"seed": 1},
    "maint": False,
    "deep_sleep": None,  # None: the board profile decides (battery probes sleep)
    "burst_n": 5,  # deep-sleep mode: samples per wake
    "burst_ms": 200,  # ... and the gap between them
    "backoff_max_s": 120,  # reconnect backoff ceiling
    "buffer": {"slots": 1000, "slot_size": 384, "batch": 10, "replay_bytes": 1536},
    "pm_rh_correction": False,  # EPA 2021 PM2.5 correction (needs an RH sensor)
    "wdt_s": 60,
    "duty": [],  # sensor names slept between windows (e.g. ["pm"] for a PMS5003)
    "ota": {"key": "", "key_id": ""},  # fleet key (hex) for update signatures (docs/ota.md)
}

# key -> (type, min, max); None bounds are open. Identity keys are not settable:
# changing station_id/kind/board is re-provisioning.
_NUM = (int, float)
SETTABLE = {
    "interval_s": (_NUM, 0.1, 86400),
    "sample_s": (_NUM, 0.05, 3600),
    "health_s": (_NUM, 1, 86400),
    "maint": (bool, None, None),
    "deep_sleep": (bool, None, None),
    "burst_n": (int, 1, 60),
    "burst_ms": (int, 0, 10000),
    "backoff_max_s": (_NUM, 1, 3600),
    "pm_rh_correction": (bool, None, None),
    "duty": (list, 0, 8),
    "mqtt.host": (str, 1, 253),
    "mqtt.port": (int, 1, 65535),
    "mqtt.user": (str, 0, 64),
    "mqtt.password": (str, 0, 128),
    "mqtt.keepalive": (int, 5, 3600),
    "wifi.ssid": (str, 0, 32),
    "wifi.password": (str, 0, 64),
    "ntp.host": (str, 1, 253),
}
# Checked like SETTABLE but only set by provisioning (config.json): a remote `set` must not
# be able to turn TLS off or swap the CA, i.e. move a station to a broker of its choosing.
PROVISIONED = {
    "mqtt.tls": (bool, None, None),
    "mqtt.ca": (str, 1, 64),
}
SECRET = ("mqtt.password", "wifi.password", "ota.key")


class ConfigError(Exception):
    pass


def get(cfg, key, default=None):
    d = cfg
    for k in key.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _put(cfg, key, value):
    ks = key.split(".")
    d = cfg
    for k in ks[:-1]:
        d = d.setdefault(k, {})
    d[ks[-1]] = value


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict):
            _merge(dst.setdefault(k, {}), v)
        elif k not in dst:
            dst[k] = v


def _valid_id(s):
    # strip(set) is empty only when every character is in the set. Not `for c in s`: every
    # character a str yields is interned for the life of the station (a name in the heap).
    ok = "abcdefghijklmnopqrstuvwxyz0123456789"
    return (isinstance(s, str) and 2 <= len(s) <= 32 and not s[:1].strip(ok)
            and not s.strip(ok + "-"))


def check(cfg):
    for key in REQUIRED:
        if get(cfg, key) is None:
            raise ConfigError("%s: missing key '%s'" % (PATH, key))
    if not _valid_id(cfg["station_id"]):
        raise ConfigError("%s: station_id %r must match [a-z0-9][a-z0-9-]{1,31}"
                          % (PATH, cfg["station_id"]))
    if cfg["kind"] not in PARAMS:
        raise ConfigError("%s: kind %r is not one of %s" % (PATH, cfg["kind"], ", ".join(PARAMS)))
    for key, spec in list(SETTABLE.items()) + list(PROVISIONED.items()):
        v = get(cfg, key)
        if v is not None:
            err = _check_value(key, v, spec)
            if err:
                raise ConfigError("%s: %s" % (PATH, err))
    if cfg["sample_s"] > cfg["interval_s"]:
        raise ConfigError("%s: sample_s must not exceed interval_s" % PATH)


def _check_value(key, v, spec):
    typ, lo, hi = spec
    if isinstance(v, bool) and typ is not bool:
        return "%s must be a %s" % (key, "number" if typ is _NUM else typ.__name__)
    if not isinstance(v, typ):
        return "%s must be a %s" % (key, "number" if typ is _NUM else typ.__name__)
    n = len(v) if typ in (str, list) else v
    if lo is not None and n < lo or hi is not None and n > hi:
        return "%s out of range [%s, %s]" % (key, lo, hi)
    return None


def load(path=PATH):
    try:
        with open(path) as f:
            cfg = json.loads(f.read())
    except OSError:
        raise ConfigError("%s: not found (provision the station first)" % path)
    except ValueError as e:
        raise ConfigError("%s: not valid JSON (%s)" % (path, e))
    if not isinstance(cfg, dict):
        raise ConfigError("%s: must be a JSON object" % path)
    _merge(cfg, DEFAULTS)
    check(cfg)
    return cfg


def update(cfg, changes, path=PATH):
    # Validate every change first, then apply all and persist; -> changed keys.
    if not isinstance(changes, dict) or not changes:
        raise ValueError("set needs {key: value}")
    for k, v in changes.items():
        spec = SETTABLE.get(k)
        if spec is None:
            raise ValueError("%s is not settable" % k)
        err = _check_value(k, v, spec)
        if err:
            raise ValueError(err)
    trial = json.loads(json.dumps(cfg))
    for k, v in changes.items():
        _put(trial, k, v)
    if trial["sample_s"] > trial["interval_s"]:
        raise ValueError("sample_s must not exceed interval_s")
    changed = [k for k in changes if get(cfg, k) != changes[k]]
    for k in changed:
        _put(cfg, k, changes[k])
    if changed:
        fsutil.write_json(path, cfg)
    return changed


def view(cfg, keys=None):
    # Flat {dotted key: value} with secrets masked.
    out = {}
    _flatten(cfg, "", out)
    for k in SECRET:
        if out.get(k):
            out[k] = "***"
    if keys:
        missing = [k for k in keys if k not in out]
        if missing:
            raise ValueError("unknown key %s" % missing[0])
        out = {k: out[k] for k in keys}
    return out


def _flatten(d, prefix, out):
    for k, v in d.items():
        if isinstance(v, dict):
            _flatten(v, prefix + k + ".", out)
        else:
            out[prefix + k] = v


def parse_value(text):
    # Console values: JSON where possible (30, true, "x"), else the bare string.
    try:
        return json.loads(text)
    except ValueError:
        return text
