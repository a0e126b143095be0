"""What the review worker reads: the air stations with their class, district, position and
reference, and reviewed hourly means from InfluxDB (invalidated and flagged hours out, only
valid hours: the reports' own rules). Corrected values: envnet/store/influx/corrected.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envnet.domain.alerts.model import _coordinates
from envnet.domain.reports import daily
from envnet.domain.reports.stations import interval_of
from envnet.store.influx.corrected import Means
from envnet.store.influx.reports import hourly_counts
from envnet.store.state import SqliteStateStore
from server.reports.service import Reports


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    station_class: str
    district: str | None
    lat: float | None
    lon: float | None
    reference: str | None  # the registry's `reference` station, if named
    interval_s: float

    @property
    def position(self) -> tuple[float, float] | None:
        return (self.lat, self.lon) if self.lat is not None and self.lon is not None else None


def air_sites(store: SqliteStateStore) -> dict[str, Site]:
    out = {}
    for row in store.list_stations():
        meta: Mapping[str, Any] = row.get("meta") or {}
        if (row.get("kind") or meta.get("kind") or "air") != "air":
            continue
        pos = _coordinates(meta)
        out[row["id"]] = Site(
            row["id"],
            str(meta.get("class") or meta.get("station_class") or "micro"),
            meta.get("district"),
            pos.get("lat"),
            pos.get("lon"),
            meta.get("reference"),
            interval_of("air", dict(meta)),
        )
    return out


def reviewed_means(
    reports: Reports, sites: Mapping[str, Site], params: Sequence[str], start: int, end: int
) -> Means:
    """Valid hourly means of `params` over [start, end), reviewers' invalidations out."""
    counts = hourly_counts(reports.db, "air", list(params), start, end, 0)
    reports.invalidated(counts, params, start, end)
    return {
        sid: daily.hourly_means(
            counts.get(sid, {}), site.interval_s, reports.validity.min_minutes_1h
        )
        for sid, site in sites.items()
    }
