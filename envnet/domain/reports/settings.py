"""Settings of the bureau's reports (`[reports]`) and its plan targets (`[targets]`).

Kept here rather than in envnet/config.py so the reports package owns its knobs; config.py
only mounts the two sections. Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from envnet.core.calendar import DEFAULT_TIMEZONE
from envnet.core.standards import gb3838
from envnet.core.standards.hj633 import POLLUTANTS
from envnet.domain.settings_json import json_if_text


def _split(v: object) -> object:
    # ENVNET_REPORTS_REQUIRED_POLLUTANTS=pm25,pm10 arrives as one string.
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return v


class ReportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The bureau's day is the local natural day (自然日), 00:00-24:00 in this zone.
    timezone: str = DEFAULT_TIMEZONE
    # A station day counts (good-days ratio, completeness) only with a valid daily value of
    # each of these; a PM-only micro network would set ["pm25", "pm10"].
    required_pollutants: list[str] = Field(default_factory=lambda: list(POLLUTANTS))
    # Stations whose daily concentrations make the city's value (national practice: the
    # national- and city-control stations). If the registry has none of these, all count.
    city_station_classes: list[str] = Field(default_factory=lambda: ["national", "city"])
    # What ranks the districts (lower is better except good_days_ratio).
    rank_by: Literal["composite", "pm25", "good_days_ratio"] = "composite"
    # A water section's daily value needs this many valid hourly means (6 = the 4-hourly
    # samples of an automatic water station).
    water_min_hours_day: int = Field(6, ge=1, le=24)
    bulletin_measurement: str = Field("aqi_daily", min_length=1)
    # Longest range a period or completeness report accepts, in days.
    max_days: int = Field(400, ge=1, le=3660)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not a known IANA time zone (got {v!r})") from None
        return v

    @field_validator("required_pollutants", "city_station_classes", mode="before")
    @classmethod
    def _lists(cls, v: object) -> object:
        return _split(v)

    @field_validator("required_pollutants")
    @classmethod
    def _pollutants(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if p not in POLLUTANTS]
        if bad or not v:
            raise ValueError(f"must be a non-empty subset of {', '.join(POLLUTANTS)} (got {v})")
        return v

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class TargetSettings(BaseModel):
    """The year's plan targets; unset targets are reported as such, never invented."""

    model_config = ConfigDict(extra="forbid")

    pm25_annual: float | None = Field(None, gt=0, description="ug/m3, city annual mean")
    good_days_ratio: float | None = Field(None, gt=0, le=100, description="percent")
    # station id -> target class (III, "Ⅲ", 3); overrides the registry's target_class.
    sections: dict[str, str | int] = Field(default_factory=dict)

    @field_validator("sections", mode="before")
    @classmethod
    def _json(cls, v: object) -> object:
        return json_if_text(v)  # ENVNET_TARGETS_SECTIONS='{"hun-city-01": "III"}'

    @field_validator("sections")
    @classmethod
    def _classes(cls, v: dict[str, str | int]) -> dict[str, str | int]:
        for sid, cls_ in v.items():
            try:
                gb3838.parse_class(cls_)
            except ValueError as e:
                raise ValueError(f"{sid}: {e}") from None
        return v
