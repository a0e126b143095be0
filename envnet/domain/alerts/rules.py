"""Alert rules as data, their settings, and pure checks that turn a value into an Observation.

A check says whether one observed value is bad (outside its limit) or fine, with the
severity, limit, standard and clause an alert would cite. It never decides the lifecycle:
engine.py turns observations into opened / escalated / resolved alerts.

Severity ("low" < "medium" < "high" < "critical") is our own scale; the standards are silent.
Air exceedances take it from the AQI category of the offending concentration, because GB 3095
Grade II limits coincide with HJ 633's IAQI 100 breakpoints: lightly polluted = low,
moderately = medium, heavily = high, severely = critical. See docs/standards.md for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from envnet.core.standards import gb3095, gb3838, hj633
from envnet.core.standards.editions import designation_edition
from envnet.core.standards.episodes import EpisodeAssessment

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
FAULT_STANDARD = "envnet station QC"


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def _severity(index: int) -> str:
    return SEVERITIES[max(0, min(len(SEVERITIES) - 1, index))]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kind: Literal["exceedance", "fault", "episode"]
    # "data": observed at data time (window ends), resolved only by new in-limit data;
    # "wall": observed at receive time, and tick() may resolve it once the hold has passed.
    clock: Literal["data", "wall"]
    hold_s: float  # how long values must stay within the limit before the alert resolves
    name_zh: str
    name_en: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        # One rule per averaging window, so that a pollutant's 1 h and 24 h alerts (one open
        # alert per station, rule, parameter) open and resolve independently.
        Rule(
            "air_limit_1h",
            "exceedance",
            "data",
            7200,
            "环境空气污染物1小时平均浓度超标",
            "air pollutant 1-hour mean above its GB 3095 limit",
        ),
        Rule(
            "air_limit_8h",
            "exceedance",
            "data",
            7200,
            "臭氧8小时平均浓度超标",
            "O3 8-hour mean above its GB 3095 limit",
        ),
        Rule(
            "air_limit_24h",
            "exceedance",
            "data",
            7200,
            "环境空气污染物24小时平均浓度超标",
            "air pollutant 24-hour mean above its GB 3095 limit",
        ),
        Rule(
            "aqi_category",
            "exceedance",
            "data",
            7200,
            "空气质量指数达到污染级别",
            "AQI at or above the alert category",
        ),
        Rule(
            "water_class",
            "exceedance",
            "data",
            7200,
            "水质劣于断面目标类别",
            "water quality worse than the section's target class",
        ),
        Rule("offline", "fault", "wall", 300, "站点离线", "station offline"),
        Rule("battery_low", "fault", "wall", 1800, "电池电压低", "low battery"),
        Rule("sensor_fault", "fault", "wall", 900, "传感器故障", "sensor fault flag"),
        Rule("flatline", "fault", "wall", 3600, "数据长时间恒定", "flat-lined sensor"),
        Rule("jump", "fault", "wall", 3600, "数据突变", "implausible jump"),
        Rule("clock_unsynced", "fault", "wall", 900, "时钟未同步", "clock not synced"),
        Rule("buffer_overflow", "fault", "wall", 3600, "缓存溢出丢数", "buffer overflowing"),
        # Raised by the server's review worker (server/review/worker.py), at data time: the
        # gateway's tick never resolves them. A withdrawn calibration stays withdrawn until
        # a person looks, so its alert resolves only by a person (acknowledge, then the
        # next calibration); a neighbour disagreement resolves after consistent hours.
        Rule(
            "calibration_degraded",
            "fault",
            "data",
            86400,
            "校准失效(与参比站比对)",
            "calibration against the reference station degraded",
        ),
        Rule(
            "neighbour_disagreement",
            "fault",
            "data",
            7200,
            "与周边站点数据不一致",
            "disagrees with the neighbouring stations",
        ),
        Rule(
            "inspection_drop",
            "fault",
            "data",
            86400,
            "检查期间数据骤降至背景值(待审核)",
            "sudden drop to background around an inspection (for review)",
        ),
        Rule(
            "episode",
            "episode",
            "data",
            0,
            "重污染天气(观测)",
            "heavy-pollution episode (observed)",
        ),
    )
}

# Largest plausible change between consecutive readings (one publish interval apart): beyond
# it the value is a data-quality or tampering signal. Engineering defaults, not a standard.
DEFAULT_JUMP_LIMITS: dict[str, float] = {
    "pm25": 300,
    "pm10": 500,
    "so2": 500,
    "no2": 300,
    "o3": 300,
    "co": 10,
    "t": 5,
    "rh": 30,
    "p": 5,
    "ph": 1.0,
    "do": 4,
    "ec": 1000,
    "turb": 500,
    "orp": 300,
    "nh3n": 3,
    "cod": 50,
}
FLATLINE_PARAMS: dict[str, tuple[str, ...]] = {
    "air": ("pm25", "pm10", "so2", "no2", "o3", "co", "t", "rh", "p"),
    "water": ("ph", "do", "ec", "turb", "orp", "nh3n", "cod", "t"),
}


class AlertSettings(BaseModel):
    """Settings of the alert engine; fits as an `alerts` section of envnet's config."""

    model_config = ConfigDict(extra="forbid")

    # Used when the engine is given AlertSettings alone; with the full Settings the engine
    # takes `standards.edition` instead.
    edition: str = "2012"
    air_grade: Literal[1, 2] = 2
    # "moving": the 24 h limit is checked on the 24 h moving mean every hour (timely);
    # "calendar": only on the CST calendar-day mean, at the day's end (the formal basis).
    air_24h: Literal["moving", "calendar"] = "moving"
    aqi_min_level: int = Field(3, ge=2, le=6)  # 3 = lightly polluted (轻度污染)
    hold_s: dict[str, float] = Field(default_factory=dict)  # per rule id, overrides RULES
    offline_intervals: float = Field(3, gt=0)
    battery_low_v: float = 3.4
    battery_critical_v: float = 3.2
    flatline_air_s: float = Field(6 * 3600, gt=0)
    flatline_water_s: float = Field(12 * 3600, gt=0)
    flatline_s: dict[str, float] = Field(default_factory=dict)  # per parameter, overrides
    jump_limits: dict[str, float] = Field(default_factory=dict)  # per parameter, overrides
    o3_daily_min_8h: int = Field(14, ge=1, le=17)
    idle_close_s: float = Field(900, gt=0)
    episode_enabled: bool = True
    episode_station_classes: list[str] = Field(default_factory=lambda: ["national", "city"])
    episode_delay_s: float = Field(2 * 3600, ge=0)  # data time after a day's end

    @field_validator("hold_s")
    @classmethod
    def _known_rules(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(RULES)}")
        return v

    def hold(self, rule: str) -> float:
        return self.hold_s.get(rule, RULES[rule].hold_s)

    def jump_limit(self, param: str) -> float | None:
        return self.jump_limits.get(param, DEFAULT_JUMP_LIMITS.get(param))

    def flatline_after(self, kind: str, param: str) -> float | None:
        if param in self.flatline_s:
            return self.flatline_s[param]
        if param not in FLATLINE_PARAMS.get(kind, ()):
            return None
        return self.flatline_air_s if kind == "air" else self.flatline_water_s


@dataclass(frozen=True, slots=True)
class Observation:
    """One evaluated value of one (rule, parameter): bad (outside the limit) or fine."""

    rule: str
    parameter: str
    window: str
    bad: bool
    at: float  # observation time in the rule's clock
    span_s: float = 0.0  # the period the observation stands for (counts as within-limit time)
    severity: str = "low"
    value: float | None = None
    limit: float | None = None
    limit_op: str = "<="
    unit: str = ""
    standard: str = FAULT_STANDARD
    clause: str = ""
    edition: str = ""
    category_zh: str | None = None
    category_en: str | None = None


# --- exceedance checks -----------------------------------------------------------------

_IAQI_COLUMN = {"1h": "1h", "8h": "8h", "24h": "24h"}
_OTHER_COLUMN = {("so2", "1h"): "24h", ("o3", "8h"): "1h"}  # HJ 633 Table 1 notes


def _air_category(pollutant: str, window: str, value: float, edition: str) -> hj633.Category:
    column = _IAQI_COLUMN[window]
    sub = hj633.iaqi(pollutant, column, value, edition)  # type: ignore[arg-type]
    if sub is None:  # beyond the column: the column the standard points to continues it
        sub = hj633.iaqi(pollutant, _OTHER_COLUMN[(pollutant, window)], value, edition)  # type: ignore[arg-type]
    return hj633.category(sub or 0, edition)


def air_limit(
    pollutant: str, window: str, value: float, at: float, grade: int = 2, edition: str = "2012"
) -> Observation | None:
    """A valid mean against GB 3095 Table 1; None where no limit exists for the window."""
    check = gb3095.check(pollutant, window, value, grade, edition)
    if check is None:
        return None
    cat = _air_category(pollutant, window, value, edition)
    return Observation(
        rule=f"air_limit_{window}",
        parameter=pollutant,
        window=window,
        bad=check.exceeded,
        at=at,
        span_s=3600,
        severity=_severity(cat.level - 3),
        value=value,
        limit=check.limit,
        unit=check.unit,
        standard=check.standard,
        clause=check.clause,
        edition=edition,
        category_zh=cat.name_zh,
        category_en=cat.name_en,
    )


def aqi_category(result: hj633.AqiResult, at: float, min_level: int = 3) -> Observation | None:
    if result.aqi is None or result.category is None:
        return None
    cat = result.category
    threshold = hj633.category_by_level(min_level, result.edition)
    return Observation(
        rule="aqi_category",
        parameter="aqi",
        window=result.window,
        bad=cat.level >= min_level,
        at=at,
        span_s=3600,
        severity=_severity(cat.level - min_level),
        value=float(result.aqi),
        limit=float(threshold.aqi_min - 1),
        unit="",
        standard=result.standard,
        clause=f"{hj633.CLAUSE_TABLE2}: level {threshold.roman} {threshold.name_en} or worse",
        edition=result.edition,
        category_zh=cat.name_zh,
        category_en=cat.name_en,
    )


def water_class(
    param: str,
    value: float,
    target: int,
    at: float,
    waterbody: gb3838.Waterbody = "river",
    drinking_source: bool = False,
    edition: str = "2012",
) -> Observation | None:
    """An hourly mean against the section's target class; None for unclassified parameters.

    Severity: one class worse = low, two = medium, three or more = high; a drinking-water
    source section is one step more. pH outside 6-9 is worse than V, so always exceeding.
    """
    cls = gb3838.water_class(param, value, waterbody, edition)
    limit = gb3838.class_limit(param, target, value, waterbody, edition)
    spec = gb3838.param_limits(param, waterbody, edition)
    if cls is None or limit is None or spec is None:
        return None
    zh, en = gb3838.class_label(cls)
    target_zh, target_en = gb3838.class_label(target)
    return Observation(
        rule="water_class",
        parameter=param,
        window="1h",
        bad=cls > target,
        at=at,
        span_s=3600,
        severity=_severity(cls - target - 1 + (1 if drinking_source else 0)),
        value=value,
        limit=limit[1],
        limit_op=limit[0],
        unit=spec.unit,
        standard=gb3838.get_edition(edition).water,
        clause=f"{gb3838.CLAUSE}, {gb3838.PARAM_LABELS[param][1]}, target {target_en}",
        # the edition of the standard cited (GB 3838-2002: "2002"), like the water index
        edition=designation_edition(gb3838.get_edition(edition).water),
        category_zh=zh,
        category_en=en,
    )


def episode(assessment: EpisodeAssessment, city_aqi: float, at: float) -> Observation:
    level = assessment.level
    return Observation(
        rule="episode",
        parameter="aqi",
        window="24h",
        bad=level is not None,
        at=at,
        span_s=86400,
        severity=_severity(level.rank) if level else "low",  # yellow medium .. red critical
        value=city_aqi,
        limit=200.0,
        standard=assessment.standard,
        clause=assessment.clause,
        edition=assessment.edition,
        category_zh=level.name_zh if level else None,
        category_en=level.name_en if level else None,
    )


# --- station faults --------------------------------------------------------------------


def offline(silence_s: float, threshold_s: float, at: float) -> Observation:
    return Observation(
        "offline",
        "status",
        "instant",
        silence_s > threshold_s,
        at,
        severity="medium",
        value=round(silence_s, 1),
        limit=threshold_s,
        unit="s",
        clause="no message for offline_intervals publish intervals",
    )


def battery(volts: float, at: float, s: AlertSettings) -> Observation:
    return Observation(
        "battery_low",
        "battery_v",
        "instant",
        volts < s.battery_low_v,
        at,
        severity="medium" if volts < s.battery_critical_v else "low",
        value=volts,
        limit=s.battery_low_v,
        limit_op=">=",
        unit="V",
        clause="battery_v below battery_low_v",
    )


def sensor_fault(param: str, flagged: bool, at: float) -> Observation:
    return Observation(
        "sensor_fault",
        param,
        "instant",
        flagged,
        at,
        severity="low",
        value=1.0 if flagged else 0.0,
        limit=0.0,
        clause="reading flag 'fault' (HJ 212 flag D)",
    )


def flatline(param: str, flat_s: float, threshold_s: float, at: float) -> Observation:
    return Observation(
        "flatline",
        param,
        "instant",
        flat_s >= threshold_s,
        at,
        severity="low",
        value=round(flat_s, 1),
        limit=threshold_s,
        limit_op="<",
        unit="s",
        clause="identical values for longer than the flat-line limit",
    )


def jump(param: str, delta: float, limit: float, at: float) -> Observation:
    return Observation(
        "jump",
        param,
        "instant",
        delta > limit,
        at,
        severity="medium",
        value=round(delta, 6),
        limit=limit,
        clause="change between consecutive readings beyond the plausible limit",
    )


def clock(unsynced: bool, at: float) -> Observation:
    return Observation(
        "clock_unsynced",
        "ts",
        "instant",
        unsynced,
        at,
        severity="low",
        value=1.0 if unsynced else 0.0,
        limit=0.0,
        clause="reading flag '*': 'clock' (station time not synced)",
    )


def calibration_degraded(
    param: str, bad: bool, at: float, bias: float | None, max_bias: float, problems: str
) -> Observation:
    """The calibration of `param` failed its check against the reference station."""
    return Observation(
        "calibration_degraded",
        param,
        "1h",
        bad,
        at,
        severity="medium",
        value=None if bias is None else round(bias, 3),
        limit=max_bias,
        unit="µg/m³",
        clause=problems or "calibration passes its check",
    )


def neighbour_disagreement(
    param: str, bad: bool, at: float, score: float, k: float, clause: str, span_s: float = 0
) -> Observation:
    """Sustained distance from the neighbours' median, in robust spreads (MAD units)."""
    return Observation(
        "neighbour_disagreement",
        param,
        "1h",
        bad,
        at,
        span_s=span_s,
        severity="low",
        value=round(abs(score), 2),  # robust spreads from the median, either side
        limit=k,
        clause=clause,
    )


def inspection_drop(at: float, clause: str) -> Observation:
    """PM2.5 fell to background around a known inspection: a reviewer looks."""
    return Observation("inspection_drop", "pm25", "1h", True, at, severity="low", clause=clause)


def buffer_overflow(dropped_delta: int, at: float) -> Observation:
    return Observation(
        "buffer_overflow",
        "dropped",
        "instant",
        dropped_delta > 0,
        at,
        severity="medium",
        value=float(dropped_delta),
        limit=0.0,
        clause="health 'dropped' rose: the offline ring buffer overflowed",
    )
