"""The assessment rules the reports apply, as data and one function each (docs/reports.md).

Sources: HJ 633-2012 (AQI, categories), GB 3095-2012 sec. 8 (validity) and Table 1 (limits,
via envnet.core.standards.gb3095), HJ 663-2013 (assessment statistics and the percentile method),
the national city ranking rules (环境空气质量综合指数). Breakpoints and limits are never copied
here: they are read from envnet/core/standards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from envnet.core.standards import gb3095
from envnet.core.standards.editions import DEFAULT_EDITION
from envnet.domain.alerts.windows import EXCLUDED_FLAGS, NOT_EVALUATED_FLAGS

# Readings with these flags are stored but left out of every mean, as in the alert windows:
# warmup/fault/range are not trustworthy, cal/maint are not ambient air or water.
EXCLUDED = frozenset(EXCLUDED_FLAGS) | frozenset(NOT_EVALUATED_FLAGS)

# HJ 633-2012 Table 2: levels I and II (优, 良) are "good days" (优良天): AQI <= 100.
GOOD_DAY_MAX_LEVEL = 2
# The plan's name of the indicator their share is (the site file's plan.indicators too).
GOOD_DAYS_RATIO_NAME = ("空气质量优良天数比率", "ratio of days with good or excellent air quality")

# The period statistic of each daily series (HJ 663-2013 Table 2 / GB 3095 annual
# assessment): mean of the daily means, CO 95th percentile of the daily means, O3 90th
# percentile of the daily maximum 8-hour means. Key "o3_8h" is the daily max 8-h series.
PERIOD_STATISTIC: dict[str, tuple[str, float | None]] = {
    "pm25": ("mean", None),
    "pm10": ("mean", None),
    "so2": ("mean", None),
    "no2": ("mean", None),
    "co": ("percentile", 95),
    "o3_8h": ("percentile", 90),
}

# The composite index (综合指数) divides each period statistic by a GB 3095 Grade II limit:
# the annual limit for SO2, NO2, PM10, PM2.5, the 24-h limit for CO and the 8-h for O3.
COMPOSITE_LIMIT_WINDOW: dict[str, tuple[str, str]] = {
    "so2": ("so2", "annual"),
    "no2": ("no2", "annual"),
    "pm10": ("pm10", "annual"),
    "pm25": ("pm25", "annual"),
    "co": ("co", "24h"),
    "o3_8h": ("o3", "8h"),
}
COMPOSITE_GRADE = 2

DECIMALS = 3  # removes float noise from means; not a GB/T 8170 修约 (docs/reports.md)
RATIO_DECIMALS = 2  # percent
COMPOSITE_DECIMALS = 2  # ranking compares the composite index at this precision


def percentile(values: Sequence[float], p: float) -> float | None:
    """HJ 663-2013 Annex A: the p-th percentile of `values`.

    Sort ascending X(1) <= ... <= X(n); k = 1 + (n - 1) * p / 100; s = the integer part of k;
    m_p = X(s) + (X(s+1) - X(s)) * (k - s). With one value it is that value; none gives None.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be 0..100 (got {p})")
    xs = sorted(values)
    if not xs:
        return None
    k = 1 + (len(xs) - 1) * p / 100
    s = math.floor(k)
    if s >= len(xs):
        return float(xs[-1])
    return xs[s - 1] + (xs[s] - xs[s - 1]) * (k - s)


def is_good_day(level: int) -> bool:
    return level <= GOOD_DAY_MAX_LEVEL


def composite_limit(key: str, edition: str = DEFAULT_EDITION) -> float:
    pollutant, window = COMPOSITE_LIMIT_WINDOW[key]
    lim = gb3095.limit(pollutant, window, COMPOSITE_GRADE, edition)
    if lim is None:
        raise AssertionError(f"GB 3095 has no {window} limit for {pollutant}")
    return lim
