"""Observed heavy-pollution episode level (重污染天气预警) from the city mean daily AQI.

The national guidance ties warning levels to daily AQI above 200 lasting about 2 days
(yellow, level III), 3 days (orange, level II), or 4 days with 2 of them above 300, or any day
above 500 (red, level I). The guidance acts on forecasts; the network can only observe, so
this reports the level the observed days have reached, marked as observed, for the duty room.

Counting: the run is the consecutive days with AQI > 200 ending on the latest day. A missing
day (None) breaks the run: the network cannot claim a day it did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envnet.core.standards.editions import DEFAULT_EDITION, get_edition


@dataclass(frozen=True, slots=True)
class EpisodeLevel:
    name: str  # yellow | orange | red
    rank: int  # 1 yellow .. 3 red
    warning_level: str  # III | II | I
    name_zh: str
    name_en: str


@dataclass(frozen=True, slots=True)
class EpisodeRules:
    heavy_aqi: int  # a day counts towards a run when its AQI is above this
    yellow_days: int
    orange_days: int
    red_days: int
    red_severe_aqi: int  # ... with at least red_severe_days above this
    red_severe_days: int
    red_any_day_aqi: int  # or any day of the run above this


LEVELS: dict[str, EpisodeLevel] = {
    "yellow": EpisodeLevel("yellow", 1, "III", "黄色预警(Ⅲ级)", "yellow warning (level III)"),
    "orange": EpisodeLevel("orange", 2, "II", "橙色预警(Ⅱ级)", "orange warning (level II)"),
    "red": EpisodeLevel("red", 3, "I", "红色预警(Ⅰ级)", "red warning (level I)"),
}

RULES: dict[str, EpisodeRules] = {
    "2012": EpisodeRules(
        heavy_aqi=200,
        yellow_days=2,
        orange_days=3,
        red_days=4,
        red_severe_aqi=300,
        red_severe_days=2,
        red_any_day_aqi=500,
    ),
}


@dataclass(frozen=True, slots=True)
class EpisodeAssessment:
    level: EpisodeLevel | None
    run_days: int  # consecutive days above heavy_aqi ending on the latest day
    severe_days: int  # days of that run above red_severe_aqi
    latest_aqi: float | None
    observed: bool
    standard: str
    clause: str
    edition: str


def _rules(edition: str) -> EpisodeRules:
    get_edition(edition)  # unknown editions fail loudly
    return RULES[edition]


def _trailing_run(daily_aqi: Sequence[float | None], above: float) -> list[float]:
    run: list[float] = []
    for aqi in reversed(daily_aqi):
        if aqi is None or aqi <= above:
            break
        run.append(aqi)
    return run


def assess(daily_aqi: Sequence[float | None], edition: str = DEFAULT_EDITION) -> EpisodeAssessment:
    """Episode level observed at the last day of `daily_aqi` (oldest first)."""
    r = _rules(edition)
    run = _trailing_run(daily_aqi, r.heavy_aqi)
    severe = sum(1 for aqi in run if aqi > r.red_severe_aqi)
    if any(aqi > r.red_any_day_aqi for aqi in run) or (
        len(run) >= r.red_days and severe >= r.red_severe_days
    ):
        level: EpisodeLevel | None = LEVELS["red"]
    elif len(run) >= r.orange_days:
        level = LEVELS["orange"]
    elif len(run) >= r.yellow_days:
        level = LEVELS["yellow"]
    else:
        level = None
    return EpisodeAssessment(
        level=level,
        run_days=len(run),
        severe_days=severe,
        latest_aqi=daily_aqi[-1] if daily_aqi else None,
        observed=True,
        standard=get_edition(edition).episodes,
        clause=(
            f"daily AQI > {r.heavy_aqi}: {r.yellow_days} d yellow, {r.orange_days} d orange, "
            f"{r.red_days} d with {r.red_severe_days} d > {r.red_severe_aqi} or any day > "
            f"{r.red_any_day_aqi} red"
        ),
        edition=edition,
    )


def episode_level(daily_aqi: Sequence[float | None], edition: str = DEFAULT_EDITION) -> str | None:
    """ "yellow", "orange", "red" or None."""
    level = assess(daily_aqi, edition).level
    return level.name if level else None
