"""GB 3095-2012 Ambient Air Quality Standards: concentration limits and data validity.

Table 1 (basic items) is data below, keyed by designation, per (grade, pollutant, window):
Grade I applies to nature reserves and scenic areas, Grade II to residential, commercial and
industrial areas (the default). A value complies when it is <= the limit.

O3's "8h" limit is on the daily maximum 8 h moving mean; any 8 h mean above it means the day's
maximum is above it too, so the stream checks every valid 8 h mean against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from envnet.core.standards.editions import DEFAULT_EDITION, get_edition

Window = Literal["1h", "8h", "24h", "annual"]
Grade = Literal[1, 2]

UNITS: dict[str, str] = {
    "so2": "ug/m3",
    "no2": "ug/m3",
    "o3": "ug/m3",
    "pm10": "ug/m3",
    "pm25": "ug/m3",
    "co": "mg/m3",
}

LIMITS: dict[str, dict[tuple[int, str, str], float]] = {
    "GB 3095-2012": {
        (2, "so2", "annual"): 60,
        (2, "so2", "24h"): 150,
        (2, "so2", "1h"): 500,
        (2, "no2", "annual"): 40,
        (2, "no2", "24h"): 80,
        (2, "no2", "1h"): 200,
        (2, "co", "24h"): 4,
        (2, "co", "1h"): 10,
        (2, "o3", "8h"): 160,
        (2, "o3", "1h"): 200,
        (2, "pm10", "annual"): 70,
        (2, "pm10", "24h"): 150,
        (2, "pm25", "annual"): 35,
        (2, "pm25", "24h"): 75,
        (1, "so2", "annual"): 20,
        (1, "so2", "24h"): 50,
        (1, "so2", "1h"): 150,
        (1, "no2", "annual"): 40,
        (1, "no2", "24h"): 80,
        (1, "no2", "1h"): 200,
        (1, "co", "24h"): 4,
        (1, "co", "1h"): 10,
        (1, "o3", "8h"): 100,
        (1, "o3", "1h"): 160,
        (1, "pm10", "annual"): 40,
        (1, "pm10", "24h"): 50,
        (1, "pm25", "annual"): 15,
        (1, "pm25", "24h"): 35,
    },
}


@dataclass(frozen=True, slots=True)
class Validity:
    """Minimum data for a mean to exist (GB 3095-2012 sec. 8); fewer gives no mean at all."""

    min_minutes_1h: int
    min_hours_8h: int
    min_hours_24h: int


VALIDITY: dict[str, Validity] = {
    "GB 3095-2012": Validity(min_minutes_1h=45, min_hours_8h=6, min_hours_24h=20),
}

CLAUSE_VALIDITY = "sec. 8 (data validity)"
_WINDOW_TEXT = {
    "1h": "1-hour mean",
    "8h": "daily max 8-hour mean",
    "24h": "24-hour mean",
    "annual": "annual mean",
}
_GRADE_TEXT = {1: "Grade I", 2: "Grade II"}


@dataclass(frozen=True, slots=True)
class LimitCheck:
    pollutant: str
    window: str
    grade: int
    value: float
    limit: float
    exceeded: bool
    unit: str
    standard: str
    clause: str
    edition: str


def _designation(edition: str) -> str:
    return get_edition(edition).air_limits


def validity(edition: str = DEFAULT_EDITION) -> Validity:
    return VALIDITY[_designation(edition)]


def limit(
    pollutant: str, window: str, grade: int = 2, edition: str = DEFAULT_EDITION
) -> float | None:
    """The limit, or None where Table 1 sets none (e.g. PM2.5 1 h, CO annual)."""
    return LIMITS[_designation(edition)].get((grade, pollutant, window))


def windows_for(pollutant: str, grade: int = 2, edition: str = DEFAULT_EDITION) -> tuple[str, ...]:
    table = LIMITS[_designation(edition)]
    return tuple(w for (g, p, w) in table if g == grade and p == pollutant)


def clause(pollutant: str, window: str, grade: int) -> str:
    name = "PM2.5" if pollutant == "pm25" else pollutant.upper()
    return f"Table 1, {_GRADE_TEXT[grade]}, {name} {_WINDOW_TEXT[window]}"


def check(
    pollutant: str, window: str, value: float, grade: int = 2, edition: str = DEFAULT_EDITION
) -> LimitCheck | None:
    """Compare one valid mean with its limit; None when no limit exists for that window."""
    lim = limit(pollutant, window, grade, edition)
    if lim is None:
        return None
    return LimitCheck(
        pollutant=pollutant,
        window=window,
        grade=grade,
        value=value,
        limit=lim,
        exceeded=value > lim,
        unit=UNITS[pollutant],
        standard=_designation(edition),
        clause=clause(pollutant, window, grade),
        edition=edition,
    )
