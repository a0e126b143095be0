"""InfluxDB line protocol, the one format both the v1 /write and the v2 write API carry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache


def _escape_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _escape_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", r"\,").replace(" ", r"\ ")


def _field_value(v: object) -> str | None:
    if type(v) is float:  # the common case first: readings are floats
        return repr(v) if math.isfinite(v) else None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        # InfluxDB refuses NaN/inf; the contract already rejects them, this is the last guard.
        return repr(v) if math.isfinite(v) else None
    if v is None:
        return None
    s = str(v).replace("\\", "\\\\").replace('"', r"\"").replace("\n", " ")
    return f'"{s}"'


@lru_cache(maxsize=65536)
def _series_key(measurement: str, tags: tuple[tuple[str, object], ...]) -> str:
    tag_s = "".join(
        f",{_escape_key(k)}={_escape_key(str(v))}" for k, v in sorted(tags) if v not in (None, "")
    )
    return f"{_escape_measurement(measurement)}{tag_s}"


@lru_cache(maxsize=4096)
def _field_key(name: str) -> str:
    return _escape_key(name)


def series_key(measurement: str, tags: Mapping[str, object]) -> str:
    """`measurement,tag=value,...`: the same few thousand series recur, so it is cached."""
    items = tuple(tags.items())
    try:
        return _series_key(measurement, items)
    except TypeError:  # an unhashable tag value from hand-edited metadata: no cache
        return _series_key.__wrapped__(measurement, items)


def line(
    measurement: str,
    tags: Mapping[str, object],
    fields: Mapping[str, object],
    ts_ms: int,
) -> str:
    """One point. Tags with empty values are left out (InfluxDB refuses empty tag values)."""
    parts = []
    for k, v in fields.items():
        fv = _field_value(v)
        if fv is not None:
            parts.append(f"{_field_key(k)}={fv}")
    if not parts:
        raise ValueError(f"point for {measurement} has no fields")
    return f"{series_key(measurement, tags)} {','.join(parts)} {ts_ms}"
