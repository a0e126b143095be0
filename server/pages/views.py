"""What the pages show about stations, read from the stores: the registry, the live state,
and the evaluator's latest indices (`latest_indices`, the same as GET /stations/{id}).

No index is computed here: AQI, IAQI, primary pollutant, category and water class are the
evaluator's (envnet.core.standards); a category's colour and advice are looked up by level.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from envnet.core import contract
from envnet.core.standards import hj633
from envnet.domain import registry
from envnet.domain.alerts import latest_indices
from envnet.store.alerts import SqliteAlertStore
from envnet.store.state import SqliteStateStore

KIND_INTERVALS = {k: float(v["interval_s"]) for k, v in contract.KINDS.items()}


@dataclass
class StationPage:
    """One station as the public pages show it."""

    id: str
    kind: str
    state: str
    name_zh: str
    name_en: str
    district_zh: str | None
    district_en: str | None
    station_class: str | None
    lat: float | None
    lon: float | None
    last_seen: float | None
    last_values: dict[str, float]
    health: dict[str, Any] | None
    meta: dict[str, Any]
    realtime: dict[str, Any] | None = None  # latest_indices()["aqi_1h"]
    water: dict[str, Any] | None = None  # latest_indices()["water"]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def aqi(self) -> int | None:
        return (self.realtime or {}).get("aqi")

    @property
    def category(self) -> hj633.Category | None:
        cat = (self.realtime or {}).get("category") or {}
        level = cat.get("level") if isinstance(cat, dict) else None
        return hj633.category_by_level(int(level)) if level else None


class StationViews:
    def __init__(self, store: SqliteStateStore, stale_after_intervals: float) -> None:
        self.store = store
        self.alerts = SqliteAlertStore(store)
        self.stale_after = stale_after_intervals

    def all(self, with_indices: bool = True) -> list[StationPage]:
        _, rows = self.store.station_views_json(
            time.time(), self.stale_after, KIND_INTERVALS, "air", None, None, None, 0
        )
        # json.loads takes the NaN a stored value may hold; pages print it as "—".
        return [self._page(json.loads(text), with_indices) for _, text, _ in rows]

    def one(self, station_id: str) -> StationPage | None:
        for page in self.all(with_indices=False):
            if page.id == station_id:
                self._indices(page)
                return page
        return None

    def _indices(self, page: StationPage) -> None:
        latest = latest_indices(self.alerts, page.id)
        page.realtime = latest.get("aqi_1h")
        page.water = latest.get("water")

    def _page(self, v: dict[str, Any], with_indices: bool) -> StationPage:
        meta = v.get("meta") or {}
        page = StationPage(
            id=v["id"],
            kind=v.get("kind") or "air",
            state=v.get("state") or "unknown",
            name_zh=registry.names(meta)[0] or v["id"],
            name_en=registry.names(meta)[1] or "",
            district_zh=meta.get("district"),
            district_en=meta.get("district_en"),
            station_class=meta.get("class"),
            lat=_num(meta.get("lat")),
            lon=_num(meta.get("lon")),
            last_seen=v.get("last_seen"),
            last_values=v.get("last_values") or {},
            health=v.get("last_health"),
            meta=meta,
        )
        if with_indices:
            self._indices(page)
        return page


def _num(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None
