"""The stations a report covers: the registry's metadata, plus any station InfluxDB has data
for that the registry does not know (its data is reported, without district or target)."""

from __future__ import annotations

from dataclasses import dataclass

from envnet.core import contract
from envnet.core.standards import gb3838
from envnet.domain import registry


@dataclass(frozen=True, slots=True)
class StationInfo:
    id: str
    kind: str
    registered: bool
    name: str | None = None
    name_en: str | None = None
    station_class: str | None = None
    district: str | None = None
    district_en: str | None = None
    interval_s: float = 60.0
    river: str | None = None
    section: str | None = None
    target_class: int | None = None  # GB 3838 1..5
    waterbody: gb3838.Waterbody = "river"
    # water: the parameters a complete class needs (registry `assessment_params`)
    assessment: tuple[str, ...] = gb3838.ASSESSMENT_ITEMS

    @classmethod
    def from_registry(cls, row: dict, target_override: str | int | None = None) -> StationInfo:
        meta = row.get("meta") or {}
        kind = row.get("kind") or meta.get("kind") or "air"
        target = target_override if target_override is not None else meta.get("target_class")
        return cls(
            id=row["id"],
            kind=kind,
            registered=bool(row.get("registered", True)),
            name=registry.names(meta)[0],
            name_en=registry.names(meta)[1],
            station_class=meta.get("class"),
            district=meta.get("district"),
            district_en=meta.get("district_en"),
            interval_s=interval_of(kind, meta),
            river=meta.get("river"),
            section=meta.get("section"),
            target_class=gb3838.parse_class(target) if target else None,
            waterbody="lake" if meta.get("waterbody") in ("lake", "reservoir") else "river",
            assessment=gb3838.assessment_set(meta.get("assessment_params")),
        )


def interval_of(kind: str, meta: dict) -> float:
    """Each reading stands for one publish interval: the registry's, else the contract's."""
    if meta.get("interval_s"):
        return float(meta["interval_s"])
    return float(contract.KINDS.get(kind, contract.KINDS["air"])["interval_s"])


def unregistered(station_id: str, kind: str) -> StationInfo:
    return StationInfo(station_id, kind, False, interval_s=interval_of(kind, {}))
