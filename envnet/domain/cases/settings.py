"""Settings of the supervision loop (`[cases]`); config.py mounts the section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The slip policy table; empty: the packaged envnet/domain/cases/policy.json.
    policy_file: str = ""
    # Grid cells, districts and responsible units (JSON with "districts", "units", "cells";
    # the demo's site file has them); loaded into the store when the server starts.
    grid_file: str = ""
    # Open cases from alerts (by the policy's open_cases); false: cases are opened by hand only.
    from_alerts: bool = True
    # How often the server's scheduler issues due slips and takes in new alerts.
    tick_s: float = Field(5.0, gt=0, le=600)
    # Report photos: stored by SHA-256 here, each at most this size (the API's 64 KiB body
    # limit bounds a report, photos included, so keep photos small or thumbnails).
    photos_dir: str = "var/case-photos"
    photo_max_bytes: int = Field(40_000, ge=1_000, le=10_000_000)
    photo_max_count: int = Field(6, ge=0, le=50)
    # The cases' clock. Empty / 1.0: the system clock. clock_file: read the time (unix s)
    # from this file (tests). clock_scale != 1: compressed time, t0 + (wall - wall0) * scale
    # (the demo, whose data clock runs the same way).
    clock_file: str = ""
    clock_scale: float = Field(1.0, gt=0, le=100_000)
    clock_t0: float = 0.0
    clock_wall0: float = 0.0
