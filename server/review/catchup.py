"""Figures the gateway's evaluator closes after an invalidation, brought in line with it.

The recomputation (server/review/recompute.py) runs when a reviewer invalidates: it rewrites
the figures stored at that moment. The evaluator goes on closing hours and days from raw
readings — the rest of an invalidated hour's day (its `daily_aqi` row and daily AQI point),
the 23 hours after it whose PM 24-hour moving means read it, and a station's replayed backlog
— without reading the invalidations (the gateway never waits on review). So every review
worker pass recomputes the active invalidations made within `review.catch_up_hours` once
more; the recomputation writes only what differs, so a pass over figures already in line
costs queries and no writes.
"""

from __future__ import annotations

import logging
from typing import Any

from envnet.config import Settings
from envnet.store import review
from envnet.store.state import SqliteStateStore
from server.review.recompute import Recomputer

log = logging.getLogger("envnet.review")

# What a summary counts as a change (its other keys are timings and lists of days).
_CHANGES = (
    "hourly_withdrawn",
    "hourly_recomputed",
    "daily_recomputed",
    "daily_withdrawn",
    "water_withdrawn",
    "water_recomputed",
    "daily_aqi_rewritten",
    "bulletins_rewritten",
)


class CatchUp:
    def __init__(self, settings: Settings, store: SqliteStateStore, recompute: Recomputer):
        self.window_s = settings.review.catch_up_hours * 3600
        self.store = store
        self.recompute = recompute

    def run(self, now: float) -> dict[str, Any]:
        """Recompute the recent active invalidations; which ones changed stored figures."""
        if self.window_s <= 0:
            return {"checked": 0, "changed": []}
        recent = review.search(
            self.store, active=True, created_since=now - self.window_s, limit=10_000
        )
        changed: list[int] = []
        failed: list[int] = []
        for inv in recent:
            try:
                got = self.recompute.run(inv.station, inv.hour_start, inv.hour_end).to_dict()
            except Exception as e:  # noqa: BLE001 - InfluxDB down or refusing: the next pass
                failed.append(inv.id)
                log.warning("review catch-up: invalidation %d not recomputed: %s", inv.id, e)
                continue
            if any(got[k] for k in _CHANGES):
                changed.append(inv.id)
                log.info("review catch-up: invalidation %d (%s): %s", inv.id, inv.station, got)
        return {"checked": len(recent), "changed": changed, "failed": failed}
