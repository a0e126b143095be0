"""InfluxDB line protocol, the one format both the v1 /write and the v2 write API carry."""

from __future__ import annotations

import math
from collections.abc import Mapping


def _escape_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _escape_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", r"\,").replace(" ", r"\ ")


def _field_value(v: object) -> str | None:
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


def line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, object],
    ts_ms: int,
) -> str:
    """One point. Tags with empty values are left out (InfluxDB refuses empty tag values)."""
    tag_s = "".join(
        f",{_escape_key(k)}={_escape_key(str(v))}"
        for k, v in sorted(tags.items())
        if v not in (None, "")
    )
    parts = []
    for k, v in fields.items():
        fv = _field_value(v)
        if fv is not None:
            parts.append(f"{_escape_key(k)}={fv}")
    if not parts:
        raise ValueError(f"point for {measurement} has no fields")
    return f"{_escape_measurement(measurement)}{tag_s} {','.join(parts)} {ts_ms}"
