"""Settings of data review (`[review]`): calibration and neighbour checks. docs/review.md."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from envnet.domain.review.calibration import Limits
from envnet.domain.review.consistency import Check
from envnet.domain.settings_json import json_if_text


class ReviewSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Reports and alerts use calibrated (corrected) values of calibrated micro stations
    # instead of raw ones; every report says which it used ("values": "corrected" | "raw").
    use_corrected: bool = False
    # With use_corrected, the gateway's evaluator re-reads each station's applied
    # calibrations this often: a withdrawn one stops being applied within this time.
    calibration_refresh_s: float = Field(300.0, ge=1, le=86400)
    # Parameters calibrated against the reference stations (PM at least).
    calibration_parameters: list[str] = Field(default_factory=lambda: ["pm25", "pm10"])
    # Station classes that are references (national and city stations).
    reference_classes: list[str] = Field(default_factory=lambda: ["national", "city"])
    # A micro station is paired with its registry's `reference` station, else the nearest
    # reference within this distance.
    colocation_max_m: float = Field(500.0, gt=0, le=50_000)
    # The server's review worker (calibration and neighbour checks) runs every this many
    # seconds; 0 switches it off.
    check_interval_s: float = Field(3600.0, ge=0, le=86400)
    # Figures the evaluator closes after an invalidation (the rest of its day, the hours whose
    # 24-hour moving means read it) are written from raw data; each worker pass recomputes the
    # active invalidations made within this many hours again, so those figures are reviewed
    # too (a recomputation that changes nothing writes nothing). 0 switches it off.
    catch_up_hours: float = Field(72.0, ge=0, le=24 * 31)
    # How far back a pair with no calibration yet is walked (the first fit needs a window).
    calibration_backfill_days: float = Field(30.0, gt=0, le=400)
    calibration_window_days: float = Field(14.0, gt=0, le=365)
    calibration_step_days: float = Field(1.0, gt=0, le=365)
    calibration_min_pairs: int = Field(72, ge=3)
    calibration_min_r2: float = Field(0.7, ge=0, le=1)
    calibration_max_bias: float = Field(5.0, gt=0)
    # Neighbour consistency: district median, or the stations within this radius.
    neighbour_radius_m: float = Field(3000.0, gt=0)
    neighbour_k: float = Field(4.0, gt=0)
    neighbour_spread_floor: float = Field(5.0, ge=0)
    neighbour_min: int = Field(3, ge=1)
    neighbour_sustain_hours: int = Field(6, ge=1, le=168)
    # How many hours back each pass of the neighbour check looks (>= sustain hours).
    neighbour_lookback_hours: int = Field(24, ge=1, le=24 * 31)
    # Known inspections, station -> unix s: a sudden drop to background around one is
    # flagged for review (never invalidated by itself).
    inspections: dict[str, list[float]] = Field(default_factory=dict)
    # PM2.5 background (µg/m³) for that flag.
    background_pm25: float = Field(15.0, ge=0)

    @field_validator("inspections", mode="before")
    @classmethod
    def _json(cls, v: Any) -> Any:
        # ENVNET_REVIEW_INSPECTIONS takes the table as JSON: {"station": [unix s, ...]}
        return json_if_text(v)

    def limits(self) -> Limits:
        return Limits(
            self.calibration_min_pairs, self.calibration_min_r2, self.calibration_max_bias
        )

    def check(self) -> Check:
        return Check(
            self.neighbour_k,
            self.neighbour_spread_floor,
            self.neighbour_min,
            self.neighbour_sustain_hours,
        )
