"""From validated MQTT messages to buffered InfluxDB points and station-state updates.

Pure functions of (message, station metadata, receive time); no I/O, so the rules are easy to
test and identical in every gateway process.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from envnet.core import contract
from envnet.core.contract import Health, Message, Reading, Status
from envnet.store.influx.line_protocol import _field_key, _field_value, line, series_key
from gateway.buffer import Point

# Station metadata that becomes InfluxDB tags (DESIGN.md: station, kind, district, river/section).
META_TAGS = ("district", "river", "section")
HEALTH_NUMBERS = ("battery_v", "rssi_dbm", "uptime_s", "heap_free", "buffered", "dropped")


class ReceiveStamps:
    """Millisecond receive timestamps, unique per (station, measurement).

    Health and status points are stamped with our receive time; two from one station in the
    same millisecond (a burst after reconnecting) would overwrite each other in InfluxDB.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def __call__(self, station: str, measurement: str, at: float) -> int:
        key = (station, measurement)
        ms = max(round(at * 1000), self._last.get(key, 0) + 1)
        self._last[key] = ms
        return ms


@dataclass(slots=True)
class Ingested:
    points: list[Point] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)  # for state and evaluation
    out_of_range: int = 0


def _tags(station: str, kind: str | None, meta: dict | None) -> dict[str, str | None]:
    tags: dict[str, str | None] = {"station": station, "kind": kind}
    for key in META_TAGS:
        tags[key] = (meta or {}).get(key)
    return tags


@lru_cache(maxsize=65536)
def _reading_series(kind: str, station: str, district: Any, river: Any, section: Any) -> str:
    """The escaped `kind,district=..,kind=..,...,station=..` prefix of a reading's line."""
    tags = {"station": station, "kind": kind, "district": district, "river": river}
    tags["section"] = section
    return series_key(kind, tags)


# Per (kind, parameter): the escaped field key with its "=", and the plausible range (None:
# no limits known). Looked up once: the same few parameters recur in every reading.
_FIELDS: dict[tuple[str, str], tuple[str, tuple[float, float] | None]] = {}


def _field_spec(kind: str, name: str) -> tuple[str, tuple[float, float] | None]:
    spec = contract.param_spec(kind, name)
    limits = (spec["min"], spec["max"]) if spec is not None else None
    out = _FIELDS[(kind, name)] = (f"{_field_key(name)}=", limits)
    return out


def reading_point(
    station: str, r: Reading, meta: dict | None, received_at: float
) -> tuple[Point, dict, int]:
    """One reading -> (point, state row, values flagged out of range by the gateway).

    The hot path of ingest (one call per reading): the line is assembled here rather than by
    `line()` (same text: tests/test_ingest_line.py holds the two together), the series prefix
    cached per station and metadata, the field keys and ranges per (kind, parameter)."""
    values = r.values
    flags = dict(r.flags)
    out_of_range = 0
    kind = r.kind
    parts = []
    isfinite = math.isfinite
    for name, value in values.items():
        try:
            key_eq, limits = _FIELDS[(kind, name)]
        except KeyError:
            key_eq, limits = _field_spec(kind, name)
        if limits is not None and not limits[0] <= value <= limits[1] and name not in flags:
            # A station should have flagged it; the gateway does, so no alert trusts it.
            flags[name] = "range"
            out_of_range += 1
        x = float(value)
        if isfinite(x):  # the contract refuses NaN; the last guard, as in line()
            parts.append(f"{key_eq}{x!r}")
    # A clock-unsynced station's ts is only an estimate: store our receive time instead.
    station_ts = float(r.ts)
    ts = received_at if flags.get("*") == "clock" else station_ts
    parts.append(f"seq={r.seq}i")
    # Delivery latency (receive minus measure time), for the network's own assessment.
    parts.append(f"latency_s={round(received_at - station_ts, 3)!r}")
    for name, flag in flags.items():
        fv = _field_value(flag)
        if fv is not None:
            parts.append(f"{_field_key('flag_all' if name == '*' else f'flag_{name}')}={fv}")
    if r.extras:
        extra = json.dumps(r.extras, ensure_ascii=False, sort_keys=True)
        parts.append(f"extra={_field_value(extra)}")
    m = meta or {}
    try:
        prefix = _reading_series(kind, station, m.get("district"), m.get("river"), m.get("section"))
    except TypeError:  # an unhashable tag value from hand-edited metadata: no cache
        prefix = series_key(kind, _tags(station, kind, meta))
    text = f"{prefix} {','.join(parts)} {round(ts * 1000)}"
    row = {
        "station": station,
        "kind": kind,
        "seq": r.seq,
        "ts": ts,
        "station_ts": station_ts,
        "values": dict(values),
        "flags": flags,
        "received_at": received_at,
    }
    # Identity uses the station's own ts, so replays of a clock-flagged reading dedupe too.
    return Point(station, kind, r.seq, station_ts, text), row, out_of_range


def health_point(
    station: str, h: Health, meta: dict | None, received_at: float, ts_ms: int
) -> Point:
    fields: dict[str, object] = {}
    for key in HEALTH_NUMBERS:
        v = getattr(h, key)
        if v is not None:
            fields[key] = float(v)
    fields["errors_total"] = float(sum(h.errors.values()))
    if h.fw:
        fields["fw"] = h.fw
    if h.reset_cause:
        fields["reset_cause"] = h.reset_cause
    kind = (meta or {}).get("kind")
    return Point(
        station,
        "health",
        None,
        received_at,
        line("health", _tags(station, kind, meta), fields, ts_ms),
    )


def status_point(
    station: str, s: Status, meta: dict | None, received_at: float, ts_ms: int
) -> Point:
    kind = (meta or {}).get("kind") or (s.model_extra or {}).get("kind")
    fields = {"online": 1.0 if s.state == "online" else 0.0, "state": s.state}
    return Point(
        station,
        "status",
        None,
        received_at,
        line("status", _tags(station, kind, meta), fields, ts_ms),
    )


def ingest(msg: Message, meta: dict | None, received_at: float, stamps: ReceiveStamps) -> Ingested:
    out = Ingested()
    if msg.sub == "reading":
        for r in msg.body:
            point, row, bad = reading_point(msg.station, r, meta, received_at)
            out.points.append(point)
            out.readings.append(row)
            out.out_of_range += bad
    elif msg.sub == "health":
        ts_ms = stamps(msg.station, "health", received_at)
        out.points.append(health_point(msg.station, msg.body, meta, received_at, ts_ms))
    elif msg.sub == "status":
        ts_ms = stamps(msg.station, "status", received_at)
        out.points.append(status_point(msg.station, msg.body, meta, received_at, ts_ms))
    return out
