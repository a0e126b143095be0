"""HJ 633-2012 Technical Regulation on Ambient Air Quality Index: IAQI, AQI, categories.

The breakpoints (Table 1) and categories (Table 2) are data below, keyed by designation; the
functions only read them. Only the 2012 edition ships: HJ 633-2024's full table is not in our
reference and no breakpoint of it is invented here (see editions.py).

Arithmetic is exact (fractions of the decimal value as written), so a concentration that sits
on a breakpoint gives exactly that breakpoint's IAQI before rounding up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Literal

from envnet.core.standards.editions import DEFAULT_EDITION, get_edition

Column = Literal["1h", "8h", "24h"]

# HJ 633-2012 Table 1 order; also the order ties are reported in.
POLLUTANTS: tuple[str, ...] = ("so2", "no2", "pm10", "co", "o3", "pm25")

# The indicators an AQI is the maximum of (HJ 633-2012 sec. 5): each pollutant's index, and
# O3 twice: "o3" is read on the 1-hour column (the hourly mean in the real-time report, the
# daily maximum 1-hour mean in the daily report), "o3_8h" on the 8-hour column (the 8-hour
# moving mean, the daily maximum 8-hour moving mean). Table 1 order; ties are reported in it.
INDICATORS: tuple[str, ...] = ("so2", "no2", "pm10", "co", "o3", "o3_8h", "pm25")
O3_8H = "o3_8h"

# Which PM concentration enters the real-time PM IAQI (`standards.realtime_pm`): "1h" the
# hourly mean, "24h" the 24-hour moving mean. Both are published either way.
RealtimePm = Literal["1h", "24h"]
DEFAULT_REALTIME_PM: RealtimePm = "1h"

INDICATOR_LABELS: dict[str, tuple[str, str]] = {
    "so2": ("二氧化硫(SO2)", "SO2"),
    "no2": ("二氧化氮(NO2)", "NO2"),
    "pm10": ("颗粒物(PM10)", "PM10"),
    "co": ("一氧化碳(CO)", "CO"),
    "o3": ("臭氧(O3)1小时", "O3 1-hour"),
    "o3_8h": ("臭氧(O3)8小时", "O3 8-hour"),
    "pm25": ("细颗粒物(PM2.5)", "PM2.5"),
}

POLLUTANT_LABELS: dict[str, tuple[str, str]] = {
    "so2": ("二氧化硫(SO2)", "SO2"),
    "no2": ("二氧化氮(NO2)", "NO2"),
    "pm10": ("颗粒物(PM10)", "PM10"),
    "co": ("一氧化碳(CO)", "CO"),
    "o3": ("臭氧(O3)", "O3"),
    "pm25": ("细颗粒物(PM2.5)", "PM2.5"),
}

IAQI_STEPS: dict[str, tuple[int, ...]] = {
    "HJ 633-2012": (0, 50, 100, 150, 200, 300, 400, 500),
}

# Table 1 breakpoints, ug/m3 (CO mg/m3), one entry per IAQI step. A column shorter than the
# steps ends where the standard stops indexing it: SO2 1 h above 800 (use the 24 h IAQI) and
# O3 8 h above 800 (use the 1 h IAQI).
BREAKPOINTS: dict[str, dict[tuple[str, Column], tuple[float, ...]]] = {
    "HJ 633-2012": {
        ("so2", "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
        ("so2", "1h"): (0, 150, 500, 650, 800),
        ("no2", "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
        ("no2", "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
        ("pm10", "24h"): (0, 50, 150, 250, 350, 420, 500, 600),
        ("co", "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
        ("co", "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
        ("o3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
        ("o3", "8h"): (0, 100, 160, 215, 265, 800),
        ("pm25", "24h"): (0, 35, 75, 115, 150, 250, 350, 500),
    },
}

# Which column each pollutant's hourly (real-time) IAQI uses: PM has no 1 h column, so its
# 24 h column is applied to the hourly concentration.
HOURLY_COLUMN: dict[str, Column] = {
    "so2": "1h",
    "no2": "1h",
    "co": "1h",
    "o3": "1h",
    "pm10": "24h",
    "pm25": "24h",
}


@dataclass(frozen=True, slots=True)
class Category:
    level: int  # 1..6
    roman: str  # I..VI
    aqi_min: int
    aqi_max: int | None  # None: no upper bound
    name_zh: str
    name_en: str
    colour_zh: str
    colour_en: str
    rgb: str  # HJ 633-2012 appendix colour, for dashboards


# Table 2: AQI levels, categories and colours.
CATEGORIES: dict[str, tuple[Category, ...]] = {
    "HJ 633-2012": (
        Category(1, "I", 0, 50, "优", "excellent", "绿色", "green", "#00e400"),
        Category(2, "II", 51, 100, "良", "good", "黄色", "yellow", "#ffff00"),
        Category(3, "III", 101, 150, "轻度污染", "lightly polluted", "橙色", "orange", "#ff7e00"),
        Category(4, "IV", 151, 200, "中度污染", "moderately polluted", "红色", "red", "#ff0000"),
        Category(5, "V", 201, 300, "重度污染", "heavily polluted", "紫色", "purple", "#99004c"),
        Category(
            6, "VI", 301, None, "严重污染", "severely polluted", "褐红色", "maroon", "#7e0023"
        ),
    ),
}

PRIMARY_MIN_AQI = 50  # a primary pollutant is named only when AQI > 50
EXCEEDING_IAQI = 100  # a pollutant with IAQI > 100 is exceeding

CLAUSE_TABLE1 = "Table 1"
CLAUSE_SO2_NOTE = "Table 1 note: SO2 1 h > 800 ug/m3 is not indexed, the 24 h IAQI is reported"
CLAUSE_O3_NOTE = "Table 1 note: O3 8 h > 800 ug/m3 is not indexed, the 1 h IAQI is reported"
CLAUSE_TABLE2 = "Table 2"


@dataclass(frozen=True, slots=True)
class Iaqi:
    pollutant: str
    column: Column  # the column the index was read from
    concentration: float  # the concentration it was read for
    value: int
    note: str | None = None  # which other-column rule applied, if any


@dataclass(frozen=True, slots=True)
class AqiResult:
    """An AQI and what it rests on. `iaqi` and `primary`/`exceeding` are keyed by indicator
    (INDICATORS: the pollutants, with O3 as "o3" 1-hour and "o3_8h" 8-hour); `concentrations`
    are the report's published indicators (nine for the real-time report, seven daily:
    see realtime_concentrations / daily_aqi), whether or not each entered the AQI."""

    window: Literal["1h", "24h"]  # hourly (real-time) or daily
    aqi: int | None  # None: no pollutant had valid data
    iaqi: dict[str, Iaqi]
    primary: tuple[str, ...]
    exceeding: tuple[str, ...]
    category: Category | None
    edition: str
    standard: str
    clauses: tuple[str, ...] = field(default=())
    concentrations: dict[str, float] = field(default_factory=dict)
    pm_basis: RealtimePm | None = None  # real-time only: the PM concentration indexed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["primary"] = list(self.primary)
        d["exceeding"] = list(self.exceeding)
        d["clauses"] = list(self.clauses)
        return d


def _designation(edition: str) -> str:
    return get_edition(edition).aqi


def breakpoints(pollutant: str, column: Column, edition: str = DEFAULT_EDITION) -> tuple:
    return BREAKPOINTS[_designation(edition)][(pollutant, column)]


def _exact(x: float) -> Fraction:
    # repr() is the shortest decimal that round-trips: 35.1 is taken as 35.1, not its binary.
    return Fraction(repr(float(x)))


def iaqi(pollutant: str, column: Column, conc: float, edition: str = DEFAULT_EDITION) -> int | None:
    """IAQI of one concentration in one column, rounded up; None above a column's end.

    Above the IAQI 500 breakpoint the index is capped at 500 (the scale ends there; the
    category is "severely polluted" either way).
    """
    if conc < 0 or not math.isfinite(conc):
        raise ValueError(f"{pollutant} concentration must be finite and >= 0 (got {conc})")
    designation = _designation(edition)
    bps = BREAKPOINTS[designation][(pollutant, column)]
    steps = IAQI_STEPS[designation]
    c = _exact(conc)
    if c > bps[-1]:
        return steps[-1] if len(bps) == len(steps) else None
    for i in range(1, len(bps)):
        if c <= bps[i]:
            lo, hi = Fraction(bps[i - 1]), Fraction(bps[i])
            value = Fraction(steps[i] - steps[i - 1]) / (hi - lo) * (c - lo) + steps[i - 1]
            return math.ceil(value)
    raise AssertionError("unreachable: c <= bps[-1]")


def category(aqi: int, edition: str = DEFAULT_EDITION) -> Category:
    for cat in CATEGORIES[_designation(edition)]:
        if cat.aqi_max is None or aqi <= cat.aqi_max:
            return cat
    raise AssertionError("unreachable: the last category is unbounded")


def category_by_level(level: int, edition: str = DEFAULT_EDITION) -> Category:
    return CATEGORIES[_designation(edition)][level - 1]


def _result(
    window: Literal["1h", "24h"],
    parts: dict[str, Iaqi],
    edition: str,
    concentrations: Mapping[str, float],
    notes: set[str],
    pm_basis: RealtimePm | None = None,
) -> AqiResult:
    designation = _designation(edition)
    conc = dict(concentrations)
    if not parts:
        return AqiResult(window, None, {}, (), (), None, edition, designation, (), conc, pm_basis)
    clauses = {CLAUSE_TABLE1, CLAUSE_TABLE2} | {p.note for p in parts.values() if p.note} | notes
    aqi = max(p.value for p in parts.values())
    primary = tuple(k for k in INDICATORS if k in parts and parts[k].value == aqi)
    return AqiResult(
        window=window,
        aqi=aqi,
        iaqi=parts,
        primary=primary if aqi > PRIMARY_MIN_AQI else (),
        exceeding=tuple(k for k in INDICATORS if k in parts and parts[k].value > EXCEEDING_IAQI),
        category=category(aqi, edition),
        edition=edition,
        standard=designation,
        clauses=tuple(sorted(clauses)),
        concentrations=conc,
        pm_basis=pm_basis,
    )


PM = ("pm10", "pm25")


def realtime_concentrations(
    conc_1h: Mapping[str, float],
    o3_8h: float | None = None,
    means_24h: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The real-time report's nine indicators (HJ 633-2012 sec. 5), those that have a value:
    the six 1-hour means (so2, no2, o3, co, pm10, pm25), the O3 8-hour moving mean (o3_8h),
    and the PM 24-hour moving means (pm10_24h, pm25_24h)."""
    out = {p: float(conc_1h[p]) for p in POLLUTANTS if p in conc_1h}
    if o3_8h is not None:
        out[O3_8H] = float(o3_8h)
    for p in PM:
        if means_24h and p in means_24h:
            out[f"{p}_24h"] = float(means_24h[p])
    return out


def hourly_aqi(
    conc_1h: Mapping[str, float],
    so2_24h: float | None = None,
    edition: str = DEFAULT_EDITION,
    o3_8h: float | None = None,
    means_24h: Mapping[str, float] | None = None,
    pm_basis: RealtimePm = DEFAULT_REALTIME_PM,
) -> AqiResult:
    """Real-time AQI (实时报); keys of `conc_1h` other than the six pollutants are ignored.

    The AQI is the maximum of the 1-hour IAQI of SO2, NO2, CO and O3, the O3 8-hour IAQI of
    the 8-hour moving mean `o3_8h`, and the PM IAQI on the 24-hour column of the PM
    concentration `pm_basis` names: the 1-hour mean ("1h") or the 24-hour moving mean
    ("24h", from `means_24h`; without one, that PM has no real-time IAQI).

    SO2 1 h above 800: the 24 h IAQI is reported, from `so2_24h` (or means_24h["so2"]), the
    valid 24 h moving mean, when given; without one, the 24 h column is applied to the hourly
    value, which continues the 1 h column without a step (both give 200 at 800).
    O3 8 h above 800 is not indexed (Table 1 note b): the 1-hour O3 IAQI stands for it.
    """
    if pm_basis not in ("1h", "24h"):
        raise ValueError(f"pm_basis must be '1h' or '24h' (got {pm_basis!r})")
    m24 = dict(means_24h or {})
    if so2_24h is None:
        so2_24h = m24.get("so2")
    parts: dict[str, Iaqi] = {}
    notes: set[str] = set()
    for p in POLLUTANTS:
        if p in PM and pm_basis == "24h":
            if p in m24:
                parts[p] = Iaqi(p, "24h", m24[p], _not_none(iaqi(p, "24h", m24[p], edition)))
            continue
        if p not in conc_1h:
            continue
        c = conc_1h[p]
        column = HOURLY_COLUMN[p]
        value = iaqi(p, column, c, edition)
        if value is not None:
            parts[p] = Iaqi(p, column, c, value)
            continue
        c24 = so2_24h if so2_24h is not None else c
        parts[p] = Iaqi(p, "24h", c24, _not_none(iaqi(p, "24h", c24, edition)), CLAUSE_SO2_NOTE)
    _o3_8h_part(parts, notes, o3_8h, edition)
    ordered = {k: parts[k] for k in INDICATORS if k in parts}
    conc = realtime_concentrations(conc_1h, o3_8h, m24)
    return _result("1h", ordered, edition, conc, notes, pm_basis)


def _o3_8h_part(parts: dict[str, Iaqi], notes: set[str], o3_8h: float | None, edition: str) -> None:
    """The O3 8-hour IAQI, or (above 800, Table 1 note b) none: the 1-hour one stands for it;
    if there is no 1-hour O3 IAQI either, the 1-hour column is applied to the 8-hour value
    (both columns give 300 at 800, and a 1-hour maximum is never below the 8-hour mean)."""
    if o3_8h is None:
        return
    value = iaqi("o3", "8h", o3_8h, edition)
    if value is not None:
        parts[O3_8H] = Iaqi("o3", "8h", o3_8h, value)
        return
    notes.add(CLAUSE_O3_NOTE)
    if "o3" not in parts:
        v1 = _not_none(iaqi("o3", "1h", o3_8h, edition))
        parts["o3"] = Iaqi("o3", "1h", o3_8h, v1, CLAUSE_O3_NOTE)


def daily_aqi(
    conc_24h: Mapping[str, float],
    o3_8h_max: float | None = None,
    o3_1h_max: float | None = None,
    edition: str = DEFAULT_EDITION,
) -> AqiResult:
    """Daily AQI (日报) from its seven indicators (HJ 633-2012 sec. 5): the 24 h means of SO2,
    NO2, PM10, CO, PM2.5, the O3 daily maximum 1-hour mean (`o3_1h_max`, 1-hour column,
    indicator "o3") and the O3 daily maximum 8-hour moving mean (`o3_8h_max`, 8-hour column,
    indicator "o3_8h"). The O3 1-hour IAQI counts every day, not only when the 8-hour value
    passes 800; above 800 the 8-hour value is not indexed (Table 1 note b).

    Published concentrations: the five 24 h means, "o3_1h_max" and "o3_8h".
    """
    if "o3" in conc_24h:
        raise ValueError("pass O3 as o3_8h_max and o3_1h_max, not as a 24 h mean")
    parts: dict[str, Iaqi] = {}
    notes: set[str] = set()
    conc: dict[str, float] = {}
    for p in POLLUTANTS:
        if p in conc_24h:
            conc[p] = float(conc_24h[p])
            parts[p] = Iaqi(p, "24h", conc_24h[p], _not_none(iaqi(p, "24h", conc_24h[p], edition)))
    if o3_1h_max is not None:
        conc["o3_1h_max"] = float(o3_1h_max)
        parts["o3"] = Iaqi("o3", "1h", o3_1h_max, _not_none(iaqi("o3", "1h", o3_1h_max, edition)))
    if o3_8h_max is not None:
        conc[O3_8H] = float(o3_8h_max)
    _o3_8h_part(parts, notes, o3_8h_max, edition)
    ordered = {k: parts[k] for k in INDICATORS if k in parts}
    return _result("24h", ordered, edition, conc, notes)


def _not_none(v: int | None) -> int:
    if v is None:
        raise AssertionError("other-column fallback is indexed by construction")
    return v


@dataclass(frozen=True, slots=True)
class HealthAdvice:
    """HJ 633-2012 Table 2's two text columns for one AQI level, with an English rendering."""

    effects_zh: str  # 对健康影响情况
    measures_zh: str  # 建议采取的措施
    effects_en: str
    measures_en: str


# Table 2, columns "对健康影响情况" and "建议采取的措施", by level (1..6). The Chinese text is the
# standard's; the English is ours, for the public pages' side-by-side rendering.
HEALTH_ADVICE: dict[str, dict[int, HealthAdvice]] = {
    "HJ 633-2012": {
        1: HealthAdvice(
            "空气质量令人满意，基本无空气污染",
            "各类人群可正常活动",
            "Air quality is satisfactory; there is basically no air pollution.",
            "Everyone can carry on with normal activities.",
        ),
        2: HealthAdvice(
            "空气质量可接受，但某些污染物可能对极少数异常敏感人群健康有较弱影响",
            "极少数异常敏感人群应减少户外活动",
            "Air quality is acceptable, but some pollutants may slightly affect a very small"
            " number of unusually sensitive people.",
            "The very few unusually sensitive people should reduce outdoor activity.",
        ),
        3: HealthAdvice(
            "易感人群症状有轻度加剧，健康人群出现刺激症状",
            "儿童、老年人及心脏病、呼吸系统疾病患者应减少长时间、高强度的户外锻炼",
            "Symptoms of susceptible people worsen slightly; healthy people notice irritation.",
            "Children, the elderly and people with heart or respiratory disease should reduce"
            " long or strenuous outdoor exercise.",
        ),
        4: HealthAdvice(
            "进一步加剧易感人群症状，可能对健康人群心脏、呼吸系统有影响",
            "儿童、老年人及心脏病、呼吸系统疾病患者避免长时间、高强度的户外锻炼，"
            "一般人群适量减少户外运动",
            "Symptoms of susceptible people worsen further; the heart and lungs of healthy"
            " people may be affected.",
            "Children, the elderly and people with heart or respiratory disease should avoid"
            " long or strenuous outdoor exercise; everyone else should reduce outdoor exercise.",
        ),
        5: HealthAdvice(
            "心脏病和肺病患者症状显著加剧，运动耐受力降低，健康人群普遍出现症状",
            "儿童、老年人和心脏病、肺病患者应停留在室内，停止户外运动，一般人群减少户外运动",
            "Symptoms of people with heart or lung disease worsen markedly and exercise"
            " tolerance falls; healthy people commonly show symptoms.",
            "Children, the elderly and people with heart or lung disease should stay indoors"
            " and stop outdoor exercise; everyone else should reduce outdoor exercise.",
        ),
        6: HealthAdvice(
            "健康人群运动耐受力降低，有明显强烈症状，提前出现某些疾病",
            "儿童、老年人和病人应当留在室内，避免体力消耗，一般人群应避免户外活动",
            "Healthy people's exercise tolerance falls, with marked, strong symptoms; some"
            " illnesses appear early.",
            "Children, the elderly and the sick should stay indoors and avoid exertion;"
            " everyone else should avoid outdoor activity.",
        ),
    },
}


def health_advice(level: int, edition: str = DEFAULT_EDITION) -> HealthAdvice:
    """Table 2's health effects and recommended measures for an AQI level (1..6)."""
    return HEALTH_ADVICE[_designation(edition)][level]
