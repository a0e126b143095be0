"""What a reviewer's invalidation is, whether a request for one is acceptable, and which
hours and days it touches (pure; the store keeps them, the server recomputes the figures).

Granularity: the clock hour. Data review in the national method works on hourly values
(an hourly mean is the smallest published figure; HJ 630 and the GB 3095 validity rules are
stated in hours), so an invalidation covers every clock hour its [start, end) range touches:
a range 10:50-11:10 invalidates the hours 10:00 and 11:00. The answer to a request states the
hours it covers (`hour_start`, `hour_end`), so the reviewer sees what was taken out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from envnet.core import calendar as cal
from envnet.core.calendar import HOUR

# The fixed list of reasons (issue 18): API value -> (Chinese, English). The API accepts the
# spaced spelling of the issue ("local interference") and the stored one alike.
REASONS: dict[str, tuple[str, str]] = {
    "maintenance": ("维护", "maintenance"),
    "calibration": ("校准", "calibration"),
    "local_interference": ("局部干扰", "local interference"),
    "instrument_fault": ("仪器故障", "instrument fault"),
    "other": ("其他", "other"),
}
ALL = "*"  # parameters: every parameter of the station
SPELLINGS = tuple(sorted({*REASONS, *(r.replace("_", " ") for r in REASONS)}))
MAX_NOTE = 2000
MAX_SPAN_S = 400 * 86400  # one request covers at most reports.max_days' default


class InvalidationError(ValueError):
    """A request for an invalidation cannot be accepted; str() says why (a 4xx message)."""


class UnknownStation(InvalidationError):
    """The station is not in the registry (the API answers 404)."""


def normalise_reason(reason: str) -> str:
    """Accepts `local interference` and `local_interference` alike; refuses anything else."""
    r = reason.strip().lower().replace(" ", "_").replace("-", "_")
    if r not in REASONS:
        raise InvalidationError(
            f"unknown reason {reason!r}: one of {', '.join(r.replace('_', ' ') for r in REASONS)}"
        )
    return r


def hour_bounds(start: float, end: float, offset_s: int = 0) -> tuple[int, int]:
    """The clock hours [first hour start, last hour end) that [start, end) touches."""
    first = int(math.floor((start - offset_s) / HOUR)) * HOUR + offset_s
    last = int(math.ceil((end - offset_s) / HOUR)) * HOUR + offset_s
    return first, last


def hours(hour_start: int, hour_end: int) -> range:
    return range(hour_start, hour_end, HOUR)


@dataclass(frozen=True, slots=True)
class Request:
    """A checked request (times in epoch seconds, hours already expanded)."""

    station: str
    start: float
    end: float
    hour_start: int
    hour_end: int
    parameters: tuple[str, ...]  # (ALL,) or sorted parameter names
    reason: str
    note: str


def check_request(
    *,
    station: str,
    start: float,
    end: float,
    parameters: Sequence[str] | None,
    reason: str,
    note: str,
    station_params: Iterable[str] | None,
    now: float,
    offset_s: int = 0,
) -> Request:
    """Validate a request. `station_params` is None for a station the registry does not know
    (refused: review is of the network's own stations); otherwise the parameters its kind
    measures. The range may not reach into the future (data not yet measured cannot have been
    reviewed) nor be inverted or empty."""
    if station_params is None:
        raise UnknownStation(f"unknown station {station!r}: not in the registry")
    if not (math.isfinite(start) and math.isfinite(end)):
        raise InvalidationError("start and end must be finite times")
    if end <= start:
        raise InvalidationError(
            f"inverted or empty range: end ({end}) is not after start ({start})"
        )
    if end > now:
        raise InvalidationError(
            f"the range ends in the future ({end} > now {now:.0f}): only measured data is reviewed"
        )
    if end - start > MAX_SPAN_S:
        raise InvalidationError(f"a range covers at most {MAX_SPAN_S // 86400} days")
    known = set(station_params)
    params = tuple(sorted(set(parameters or ()))) or (ALL,)
    if ALL in params:
        params = (ALL,)
    else:
        unknown = [p for p in params if p not in known]
        if unknown:
            raise InvalidationError(
                f"parameter(s) {', '.join(unknown)} not measured by {station}"
                f" (known: {', '.join(sorted(known))}; or '*' for all)"
            )
    if len(note) > MAX_NOTE:
        raise InvalidationError(f"note longer than {MAX_NOTE} characters")
    first, last = hour_bounds(start, end, offset_s)
    return Request(station, start, end, first, last, params, normalise_reason(reason), note)


def params_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    return ALL in a or ALL in b or bool(set(a) & set(b))


def ranges_overlap(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def covers(parameters: Sequence[str], param: str) -> bool:
    return ALL in parameters or param in parameters


def days_touched(hour_start: int, hour_end: int, zone: ZoneInfo) -> list[date]:
    """The local days whose figures an invalidation of these hours changes."""
    first = cal.date_of(hour_start, zone)
    last = cal.date_of(hour_end - 1, zone)
    return list(cal.days(first, last))
