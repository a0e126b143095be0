"""Editions: which set of national standards the alert engine applies.

Standards get revised, so the edition is a setting (`standards.edition`) and every AQI result
and alert records the edition and the standard designation that produced it. An edition
bundles one designation per table family; each table module (hj633, gb3095, gb3838) keys its
data by designation, so a new edition adds a table and a line here, never an `if`.

Only "2012" ships. HJ 633-2024 is known to move the IAQI 100 breakpoint to PM2.5 60 and
PM10 120 ug/m3, but its other breakpoints are not in our reference, and an edition ships only
when its whole table is known: no breakpoint is invented.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_EDITION = "2012"


@dataclass(frozen=True, slots=True)
class Edition:
    name: str
    aqi: str  # IAQI breakpoints and categories
    air_limits: str  # ambient concentration limits and data validity
    water: str  # surface-water classes
    episodes: str  # heavy-pollution warning levels


EDITIONS: dict[str, Edition] = {
    "2012": Edition(
        name="2012",
        aqi="HJ 633-2012",
        air_limits="GB 3095-2012",
        water="GB 3838-2002",
        episodes="重污染天气预警分级 (national guidance; observed, not forecast)",
    ),
}


def designation_edition(designation: str) -> str:
    """The edition (year) of one standard: "GB 3838-2002" -> "2002". Each index carries its
    own standard's, since a bundle ("2012") holds standards of different years."""
    return designation.rsplit("-", 1)[-1]


class UnknownEdition(ValueError):
    pass


def get_edition(name: str = DEFAULT_EDITION) -> Edition:
    try:
        return EDITIONS[name]
    except KeyError:
        raise UnknownEdition(
            f"standards edition {name!r} is not shipped (available: {', '.join(EDITIONS)})"
        ) from None
