"""From valid hourly means to daily values and the daily AQI (pure functions).

The hour and day rules are those of the alert windows (envnet/domain/alerts/windows.py), applied to
a stored history instead of a stream:

- A valid hourly mean needs >= 45 minutes of unflagged data (GB 3095-2012 sec. 8); the
  data minutes of an hour are its unflagged readings x the station's publish interval,
  capped at 60.
- A valid 24-hour (calendar day) mean needs >= 20 valid hourly means.
- O3: the 8-hour moving means ending 08:00..24:00 of the day, each valid with >= 6 valid hourly
  means; the daily maximum exists when >= `o3_min_8h` (default 14) of them are valid.
- O3 daily maximum 1-hour mean: the largest valid hourly O3 mean of the day.
- The daily AQI is HJ 633-2012's, from its seven indicators: the valid 24-h means, the O3
  daily maximum 1-hour mean and the O3 daily maximum 8-hour mean (both O3 indices count every
  day).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from envnet.core.standards import hj633
from envnet.core.standards.gb3095 import Validity
from envnet.domain.alerts.windows import O3_8H_DAY_FIRST
from envnet.domain.reports import rules

# hour start (epoch s) -> valid hourly mean, per parameter
Hourly = Mapping[str, Mapping[int, float]]

O3_DAILY = "o3_8h"  # the key of the O3 daily maximum 8-hour mean among daily values
O3_1H_MAX = "o3_1h_max"  # the key of the O3 daily maximum 1-hour mean among daily values


@dataclass(frozen=True, slots=True)
class HourCounts:
    """What InfluxDB returns for one station-hour and parameter, before validity."""

    count: int  # unflagged readings
    total: float  # their sum


def hourly_means(
    counts: Mapping[str, Mapping[int, HourCounts]], interval_s: float, min_minutes: int
) -> dict[str, dict[int, float]]:
    """Valid hourly means only: an hour with too few data minutes gives no mean at all."""
    out: dict[str, dict[int, float]] = {}
    for param, hours in counts.items():
        for h, c in hours.items():
            minutes = min(60.0, c.count * interval_s / 60.0)
            if c.count > 0 and minutes >= min_minutes:
                out.setdefault(param, {})[h] = round(c.total / c.count, rules.DECIMALS)
    return out


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), rules.DECIMALS)


def _hours_of(series: Mapping[int, float], hours: Iterable[int]) -> list[float]:
    return [series[h] for h in hours if h in series]


def o3_8h_means(o3: Mapping[int, float], day_hours: Sequence[int], min_hours: int) -> list[float]:
    """The day's valid 8-h moving means, windows ending 08:00..24:00 (within the day)."""
    out = []
    for end in range(O3_8H_DAY_FIRST, len(day_hours)):
        vals = _hours_of(o3, day_hours[end - 7 : end + 1])
        if len(vals) >= min_hours:
            out.append(_mean(vals))
    return out


@dataclass(frozen=True, slots=True)
class DayValues:
    values: dict[str, float]  # valid daily values: 24-h means, "o3_8h" and "o3_1h_max"
    hours: dict[str, int]  # valid hourly means per pollutant
    o3_8h_count: int
    o3_1h_max: float | None


def day_values(hourly: Hourly, day_hours: Sequence[int], v: Validity, o3_min_8h: int) -> DayValues:
    """Daily values of one station for the day whose clock hours are `day_hours`."""
    values: dict[str, float] = {}
    hours: dict[str, int] = {}
    for p in hj633.POLLUTANTS:
        vals = _hours_of(hourly.get(p, {}), day_hours)
        if vals:
            hours[p] = len(vals)
        if p != "o3" and len(vals) >= v.min_hours_24h:
            values[p] = _mean(vals)
    o3 = hourly.get("o3", {})
    eights = o3_8h_means(o3, day_hours, v.min_hours_8h)
    if len(eights) >= o3_min_8h:
        values[O3_DAILY] = max(eights)
    o3_hours = _hours_of(o3, day_hours)
    if o3_hours:
        values[O3_1H_MAX] = max(o3_hours)
    return DayValues(values, hours, len(eights), max(o3_hours) if o3_hours else None)


@dataclass(frozen=True, slots=True)
class DailyIndex:
    """The daily AQI of a station, district or the city."""

    values: dict[str, float]
    result: hj633.AqiResult
    valid: bool  # every required pollutant has a valid daily value
    missing: tuple[str, ...]  # required pollutants without one
    members: int = 1  # stations behind the values (1 for a station)
    extra: dict = field(default_factory=dict)


def required_key(pollutant: str) -> str:
    return O3_DAILY if pollutant == "o3" else pollutant


def daily_index(
    values: Mapping[str, float],
    required: Sequence[str],
    edition: str,
    o3_1h_max: float | None = None,
    members: int = 1,
) -> DailyIndex:
    conc = {p: c for p, c in values.items() if p in hj633.POLLUTANTS and p != "o3"}
    o3_1h = o3_1h_max if o3_1h_max is not None else values.get(O3_1H_MAX)
    result = hj633.daily_aqi(conc, values.get(O3_DAILY), o3_1h, edition)
    missing = tuple(p for p in required if required_key(p) not in values)
    return DailyIndex(
        dict(values), result, not missing and result.aqi is not None, missing, members
    )


def mean_values(stations: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], int]:
    """District / city daily values: per pollutant, the mean over the stations that have a
    valid daily value of it (concentrations are averaged first, then indexed)."""
    out: dict[str, float] = {}
    keys = {k for s in stations for k in s}
    for k in sorted(keys):
        vals = [s[k] for s in stations if k in s]
        out[k] = _mean(vals)
    return out, len(stations)
