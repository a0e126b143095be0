"""Alerts from corrected values (`review.use_corrected`, docs/review.md).

A calibrated micro station's PM readings are corrected with its applied calibration before
they reach the windows, so the hourly, 8-hour and 24-hour means the limit rules and the AQI
read are corrected means (the correction is linear: the mean of corrected readings is the
corrected mean). The data-quality rules (flat line, jump) keep reading the raw values: they
judge the sensor, and a stuck sensor's corrected value still moves with humidity.

Each reading's humidity term uses the reading's own RH. A reading without a usable RH (none,
or flagged) cannot be corrected and counts raw, as the server's reports count an hour without
a corrected value raw.

Which values a window used is recorded per parameter and clock hour (the calibration ids, 0
for raw) in the station's rule state, and every limit and AQI alert of the station names them
in its clause: `values: raw`, `values: corrected (calibration 12)`, or, for a window that
spans a change, `values: corrected (calibrations 12, 13), raw in 3 of 24 h`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from envnet.core.calendar import HOUR
from envnet.domain.alerts.windows import EXCLUDED_FLAGS, HISTORY_S, NOT_EVALUATED_FLAGS
from envnet.domain.review.calibration import Fit

RAW = 0  # the "calibration id" of a reading counted raw


@dataclass(frozen=True, slots=True)
class Correction:
    """A station's applied calibration of one parameter."""

    cal_id: int
    fit: Fit

    def correct(self, micro: float, rh: float) -> float:
        # A concentration below zero is zero: a low reading in humid air can invert below it.
        return max(0.0, self.fit.correct(micro, rh))


# station id -> parameter -> its applied calibration (empty: none applied)
Corrections = Callable[[str], Mapping[str, Correction]]


def correct_reading(
    values: Mapping[str, float],
    flags: Mapping[str, str],
    corrections: Mapping[str, Correction],
    tracked: tuple[str, ...],
) -> tuple[dict[str, float], dict[str, int]]:
    """The values the windows average, and for each calibrated or `tracked` parameter the
    reading counts in a window, the calibration id that corrected it (RAW: not corrected; no
    calibration applied, or its RH missing or flagged)."""
    whole = flags.get("*")
    if whole in NOT_EVALUATED_FLAGS:
        return dict(values), {}  # never evaluated
    skip = (*EXCLUDED_FLAGS, *NOT_EVALUATED_FLAGS)
    rh = values.get("rh")
    out = dict(values)
    used: dict[str, int] = {}
    for param in {*tracked, *corrections}:
        if param not in values or flags.get(param) in skip:
            continue
        c = corrections.get(param)
        if c is not None and rh is not None and flags.get("rh") not in skip:
            out[param] = c.correct(values[param], rh)
            used[param] = c.cal_id
        else:
            used[param] = RAW
    return out, used


def record(state: dict[str, Any], hour: int, used: Mapping[str, int]) -> None:
    """Add one reading's bases to the hour's (state: the station's rule state)."""
    book = state.setdefault("values", {})
    for param, cal_id in used.items():
        bases = book.setdefault(param, {}).setdefault(str(hour), [])
        if cal_id not in bases:
            bases.append(cal_id)


def prune(state: dict[str, Any], closed_hour: int) -> None:
    """Forget hours older than the windows' history (48 h)."""
    oldest = closed_hour - HISTORY_S
    for series in state.get("values", {}).values():
        for key in [k for k in series if int(k) <= oldest]:
            del series[key]


def note(state: Mapping[str, Any], params: tuple[str, ...], last_hour: int, hours: int) -> str:
    """`values: ...` for a window of `hours` clock hours ending with `last_hour` (its start)
    over `params`: which calibrations corrected it, and how many hours were raw."""
    book = state.get("values", {})
    ids: set[int] = set()
    seen = raw_hours = 0
    for h in range(last_hour - (hours - 1) * HOUR, last_hour + 1, HOUR):
        bases = {b for p in params for b in book.get(p, {}).get(str(h), ())}
        seen += bool(bases)  # an hour without a recorded reading did not count
        ids |= bases - {RAW}
        raw_hours += RAW in bases
    if not ids:
        return "values: raw"
    word = "calibration" if len(ids) == 1 else "calibrations"
    text = f"values: corrected ({word} {', '.join(map(str, sorted(ids)))})"
    return text + (f", raw in {raw_hours} of {seen} h" if raw_hours else "")
