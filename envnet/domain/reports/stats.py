"""Period statistics over daily series: good-days ratio, category counts, period statistics,
the composite index and competition ranking. Pure functions; the rules are in rules.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from envnet.core.standards import hj633
from envnet.domain.reports import rules

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DayIndex:
    """One day of one place, as the period statistics need it."""

    date: str
    valid: bool  # every required pollutant had a valid daily value
    aqi: int | None
    level: int | None
    values: Mapping[str, float]  # daily concentrations (o3 as "o3_8h")


@dataclass(frozen=True, slots=True)
class GoodDays:
    days: int  # days in the period
    valid: int
    good: int
    ratio: float | None  # percent of VALID days; None when no day is valid


def good_days(days: Sequence[DayIndex]) -> GoodDays:
    """Good-days ratio (空气质量优良天数比率) over VALID days: an invalid day is neither good
    nor bad."""
    valid = [d for d in days if d.valid and d.level is not None]
    good = sum(1 for d in valid if rules.is_good_day(d.level or 0))
    ratio = round(100 * good / len(valid), rules.RATIO_DECIMALS) if valid else None
    return GoodDays(len(days), len(valid), good, ratio)


def category_counts(days: Sequence[DayIndex]) -> dict[str, int]:
    """Valid days per HJ 633 category, keyed by level roman numeral (I..VI), all present."""
    counts = {cat.roman: 0 for cat in hj633.CATEGORIES["HJ 633-2012"]}
    for d in days:
        if d.valid and d.level is not None:
            counts[hj633.category_by_level(d.level).roman] += 1
    return counts


def period_statistics(days: Sequence[DayIndex]) -> dict[str, float | None]:
    """Each pollutant's period statistic over the days that have a valid daily value of it.

    Per HJ 663 a pollutant's statistic uses all its valid daily values, also on days whose AQI
    is not valid because another pollutant is missing.
    """
    out: dict[str, float | None] = {}
    for key, (kind, p) in rules.PERIOD_STATISTIC.items():
        series = [d.values[key] for d in days if key in d.values]
        if not series:
            out[key] = None
        elif kind == "mean":
            out[key] = round(sum(series) / len(series), rules.DECIMALS)
        else:
            value = rules.percentile(series, p or 0)
            out[key] = None if value is None else round(value, rules.DECIMALS)
    return out


def composite_index(statistics: Mapping[str, float | None]) -> float | None:
    """Σ statistic / limit over the six pollutants; None unless all six are known."""
    total = 0.0
    for key in rules.COMPOSITE_LIMIT_WINDOW:
        value = statistics.get(key)
        if value is None:
            return None
        total += value / rules.composite_limit(key)
    return round(total, rules.COMPOSITE_DECIMALS)


def competition_rank(
    items: Sequence[T], key: Callable[[T], float | None], higher_is_better: bool = False
) -> list[tuple[int | None, T]]:
    """Standard competition ranking ("1224"): equal keys share a rank, the next rank skips.

    Items whose key is None are not ranked (rank None) and come last, in their given order.
    """
    ranked = [it for it in items if key(it) is not None]
    ranked.sort(key=lambda it: key(it) or 0.0, reverse=higher_is_better)
    out: list[tuple[int | None, T]] = []
    prev: float | None = None
    rank = 0
    for pos, it in enumerate(ranked, start=1):
        k = key(it)
        if k != prev:
            rank, prev = pos, k
        out.append((rank, it))
    out.extend((None, it) for it in items if key(it) is None)
    return out
