# Reading encoder: builds the contract v1 JSON by hand so that key order is fixed
# (v, seq, ts, kind, values, flags), floats are short and never NaN/inf (json.dumps
# would emit NaN, which the gateway rejects as bad JSON), and no intermediate dict is
# needed for the whole message.
import json
from contract import PARAMS, VERSION

DECIMALS = 2  # enough for pH 7.42 and NH3-N 0.42 mg/L; keeps payloads short


def num(x):
    # JSON text for a number, or None when it must not be sent (bool, NaN, inf).
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return str(x)
    if x != x or x > 1e30 or x < -1e30:
        return None
    s = "%.*f" % (DECIMALS, x)
    s = s.rstrip("0")
    if s.endswith("."):
        s += "0"
    if s == "-0.0":
        s = "0.0"
    return s


def _order(kind, values):
    # Contract parameters first in contract order, then any others (kept, sorted).
    known = [p[0] for p in PARAMS.get(kind, ())]
    out = [k for k in known if k in values]
    rest = sorted(k for k in values if k not in known)
    return out + rest


def encode(seq, ts, kind, values, flags=None, extra=None):
    # values: {param: number}; flags: {param|"*": flag}; extra: more top-level keys.
    parts = ['{"v":%d,"seq":%d,"ts":%d,"kind":%s,"values":{' % (VERSION, seq, ts, json.dumps(kind))]
    first = True
    for k in _order(kind, values):
        t = num(values[k])
        if t is None:
            continue
        parts.append('%s%s:%s' % ("" if first else ",", json.dumps(k), t))
        first = False
    parts.append('},"flags":{')
    first = True
    if flags:
        for k in sorted(flags):
            parts.append('%s%s:%s' % ("" if first else ",", json.dumps(k), json.dumps(flags[k])))
            first = False
    parts.append("}")
    if extra:
        for k in sorted(extra):
            parts.append(",%s:%s" % (json.dumps(k), json.dumps(extra[k])))
    parts.append("}")
    return "".join(parts)


def join(items):
    # Replay payload: a JSON array of already-encoded readings (no re-parsing).
    return "[" + ",".join(items) + "]"
