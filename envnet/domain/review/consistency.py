"""Neighbour consistency (pure): a station that disagrees with the stations around it.

For each hour, a station's value is compared with the median of its neighbours' values (its
district, or the stations within a radius), scaled by a robust spread: the median absolute
deviation (MAD, x1.4826 so it estimates a standard deviation for normal data), with a floor
so that a network reading nearly the same everywhere does not flag a 2 µg/m³ difference. A
station is an outlier in an hour when |value - median| > k x spread; it raises a data-quality
alert when that lasts `sustain_hours` consecutive hours. Medians and MADs, not means and
standard deviations, so that one bad neighbour does not move the yardstick.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAD_SCALE = 1.4826


@dataclass(frozen=True, slots=True)
class Check:
    k: float = 4.0
    spread_floor: float = 5.0  # µg/m³ for PM
    min_neighbours: int = 3
    sustain_hours: int = 6


@dataclass(frozen=True, slots=True)
class HourVerdict:
    hour: int
    value: float
    median: float
    spread: float
    score: float  # (value - median) / spread
    neighbours: tuple[str, ...]

    def outlier(self, k: float) -> bool:
        return abs(self.score) > k


def robust_spread(values: Sequence[float], floor: float) -> float:
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return max(MAD_SCALE * mad, floor)


def hour_verdict(
    hour: int, value: float, neighbours: Mapping[str, float], check: Check
) -> HourVerdict | None:
    """None when too few neighbours have a value that hour (no verdict, not 'consistent')."""
    if len(neighbours) < check.min_neighbours:
        return None
    vals = list(neighbours.values())
    med = statistics.median(vals)
    spread = robust_spread(vals, check.spread_floor)
    return HourVerdict(hour, value, med, spread, (value - med) / spread, tuple(sorted(neighbours)))


@dataclass(frozen=True, slots=True)
class Disagreement:
    station: str
    first_hour: int
    last_hour: int
    hours: int
    direction: str  # "high" | "low"
    neighbours: tuple[str, ...]
    median_score: float


def disagreements(
    station: str,
    series: Mapping[int, float],
    neighbour_series: Mapping[str, Mapping[int, float]],
    check: Check,
) -> list[Disagreement]:
    """Runs of >= sustain_hours consecutive outlier hours on the same side."""
    runs: list[Disagreement] = []
    run: list[HourVerdict] = []

    def close() -> None:
        if len(run) >= check.sustain_hours:
            names = sorted({n for v in run for n in v.neighbours})
            runs.append(
                Disagreement(
                    station,
                    run[0].hour,
                    run[-1].hour,
                    len(run),
                    "high" if run[0].score > 0 else "low",
                    tuple(names),
                    statistics.median(v.score for v in run),
                )
            )
        run.clear()

    prev: int | None = None
    for h in sorted(series):
        nb = {s: vals[h] for s, vals in neighbour_series.items() if s != station and h in vals}
        v = hour_verdict(h, series[h], nb, check)
        contiguous = prev is not None and h - prev == 3600
        if v is None or not v.outlier(check.k):
            close()
        else:
            if run and (not contiguous or (v.score > 0) != (run[0].score > 0)):
                close()
            run.append(v)
        prev = h
    close()
    return runs


def drop_to_background(
    series: Mapping[int, float],
    inspection_hour: int,
    background: float,
    window_h: int = 6,
    ratio: float = 0.5,
) -> bool:
    """A sudden drop to background around a known inspection (a station whose operator
    switched on a purifier or moved the inlet while inspectors were near): the mean of the
    `window_h` hours around the inspection is under `ratio` x the mean of the same span
    before it and within 1.5x background. Flagged for a reviewer; never invalidated by itself."""
    span = window_h * 3600
    during = [v for h, v in series.items() if abs(h - inspection_hour) <= span // 2]
    before = [
        v
        for h, v in series.items()
        if inspection_hour - span - span // 2 <= h < inspection_hour - span // 2
    ]
    if not during or not before:
        return False
    d, b = statistics.fmean(during), statistics.fmean(before)
    return d < ratio * b and d <= 1.5 * background
