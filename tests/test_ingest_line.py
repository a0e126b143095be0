"""gateway.ingest.reading_point assembles a reading's line itself (the hot path); it must give
exactly the text the generic line protocol builder (`line()`) gives for the same fields."""

from __future__ import annotations

import json

import pytest

from envnet.core import contract
from envnet.store.influx.line_protocol import line
from gateway.ingest import _tags, reading_point

NOW = 1_765_000_000.0


def reference_line(station: str, r, meta: dict | None, received_at: float) -> str:
    """The reading's line as it was built before the fast path: through `line()`."""
    flags = dict(r.flags)
    for name, value in r.values.items():
        if name not in flags and contract.out_of_range(r.kind, name, value):
            flags[name] = "range"
    ts = received_at if r.clock_unsynced else float(r.ts)
    fields: dict[str, object] = {k: float(v) for k, v in r.values.items()}
    fields["seq"] = r.seq
    fields["latency_s"] = round(received_at - float(r.ts), 3)
    for name, flag in flags.items():
        fields["flag_all" if name == "*" else f"flag_{name}"] = flag
    if r.extras:
        fields["extra"] = json.dumps(r.extras, ensure_ascii=False, sort_keys=True)
    return line(r.kind, _tags(station, r.kind, meta), fields, round(ts * 1000))


BODIES = [
    {"v": 1, "seq": 7, "ts": NOW - 3.25, "kind": "air", "values": {"pm25": 12.5, "pm10": 30}},
    {"v": 1, "seq": 0, "ts": int(NOW), "kind": "water", "values": {"ph": 7.1, "do": 8.2}},
    # out of range (flagged by the gateway), one flagged by the station, one unknown parameter
    {
        "v": 1,
        "seq": 3,
        "ts": NOW,
        "kind": "air",
        "values": {"pm25": 99999.0, "pm10": 5.0, "weird param": 1.5},
        "flags": {"pm10": "cal"},
    },
    # clock not synced: the receive time is stored
    {
        "v": 1,
        "seq": 9,
        "ts": 1000.5,
        "kind": "air",
        "values": {"pm25": 1.0},
        "flags": {"*": "clock"},
    },
    # extras (pydantic path only)
    {
        "v": 1,
        "seq": 4,
        "ts": NOW - 1,
        "kind": "water",
        "values": {"ph": 7.0},
        "extras": {"note": 'a "quoted", spaced=note', "n": 2},
    },
]
METAS = [
    None,
    {"kind": "air", "district": "Shen He", "river": "Hun,River", "section": "a=b"},
    {"kind": "water", "district": "", "river": None},
    {"kind": "air", "district": ["not", "hashable"]},
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("meta", METAS)
def test_reading_point_line_equals_the_generic_builder(body: dict, meta: dict | None) -> None:
    payload = json.dumps(body).encode()
    station = "sy-air-01"
    decoded = [contract.decode(f"envnet/v1/{station}/reading", payload).body[0]]
    if "extras" not in body:  # the msgspec fast path gives a FastReading
        fast = contract.decode_fast(f"envnet/v1/{station}/reading", payload).body[0]
        assert isinstance(fast, contract.FastReading)
        decoded.append(fast)
    for r in decoded:
        point, row, bad = reading_point(station, r, meta, NOW + 0.123)
        assert point.line == reference_line(station, r, meta, NOW + 0.123)
        assert (point.station, point.measurement, point.seq, point.ts) == (
            station,
            body["kind"],
            body["seq"],
            float(body["ts"]),
        )
        assert row["flags"].get("pm25") == ("range" if bad else None) or body["kind"] != "air"
