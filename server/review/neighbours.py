"""Neighbour consistency in production: each pass, every air station's reviewed hourly means
of the checked parameters (`review.calibration_parameters`, corrected values where the
calibration wrote them and `review.use_corrected` says so) over the last
`review.neighbour_lookback_hours`, against its neighbours' median
(envnet/domain/review/consistency.py). Neighbours: the station's district, when it has at
least `neighbour_min` other stations, else the stations within `neighbour_radius_m`.

A disagreement still running at the end of the looked-at hours, or newer than the last pass,
raises (or keeps) a `neighbour_disagreement` alert whose clause names the neighbours; hours
with a verdict and no disagreement resolve it after the rule's hold. A sudden drop to
background around a known inspection (`review.inspections`) raises `inspection_drop`: flagged
for a reviewer, never invalidated by itself."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from envnet.config import Settings
from envnet.core.calendar import HOUR
from envnet.domain.alerts import rules
from envnet.domain.review.calibration import distance_m
from envnet.domain.review.consistency import disagreements, drop_to_background, hour_verdict
from envnet.store.influx.corrected import use_corrected
from envnet.store.state import SqliteStateStore
from server.reports.service import Reports
from server.review.alerting import AlertSink
from server.review.data import Site, reviewed_means

CURSOR_KEY = "review.neighbours.checked_until"
CST = timezone(timedelta(hours=8))


def neighbours_of(sid: str, sites: Mapping[str, Site], settings: Settings) -> tuple[str, list[str]]:
    """(how they were chosen, neighbour ids)."""
    s = sites[sid]
    r = settings.review
    if s.district:
        same = sorted(o for o, x in sites.items() if o != sid and x.district == s.district)
        if len(same) >= r.neighbour_min:
            return f"district {s.district}", same
    if s.position is None:
        return "", []
    near = sorted(
        o
        for o, x in sites.items()
        if o != sid
        and x.position is not None
        and distance_m(*s.position, *x.position) <= r.neighbour_radius_m
    )
    return f"within {r.neighbour_radius_m:.0f} m", near


def _hhmm(ts: int) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y-%m-%d %H:00")


class NeighbourCheck:
    def __init__(
        self, settings: Settings, store: SqliteStateStore, reports: Reports, alerts: AlertSink
    ) -> None:
        self.settings = settings
        self.r = settings.review
        self.store = store
        self.reports = reports
        self.alerts = alerts

    def run(self, sites: dict[str, Site], now: float) -> dict[str, int]:
        out = {"checked": 0, "disagreements": 0, "alerts_opened": 0, "inspection_drops": 0}
        end = int(now) - int(now) % HOUR
        start = end - self.r.neighbour_lookback_hours * HOUR
        cursor = int(self.store.get_kv(CURSOR_KEY) or 0)
        params = list(self.r.calibration_parameters)
        means = reviewed_means(self.reports, sites, params, start - 12 * HOUR, end)
        if self.r.use_corrected:
            use_corrected(self.reports.db, means, params, start - 12 * HOUR, end)
        check = self.r.check()
        for sid in sorted(sites):
            how, nbs = neighbours_of(sid, sites, self.settings)
            for p in params:
                series = {h: v for h, v in means.get(sid, {}).get(p, {}).items() if h >= start}
                if not series or len(nbs) < check.min_neighbours:
                    continue
                out["checked"] += 1
                nb = {n: means.get(n, {}).get(p, {}) for n in nbs}
                self._station(sid, p, how, series, nb, cursor, out)
        self._inspections(means, start, end, out)
        self.store.put_kv(CURSOR_KEY, end)
        return out

    def _station(
        self,
        sid: str,
        p: str,
        how: str,
        series: dict[int, float],
        nb: dict[str, dict[int, float]],
        cursor: int,
        out: dict[str, int],
    ) -> None:
        check = self.r.check()
        runs = disagreements(sid, series, nb, check)
        last = max(series)
        live = [r for r in runs if r.last_hour >= last - HOUR or r.last_hour >= cursor]
        if live:
            d = live[-1]
            out["disagreements"] += 1
            clause = (
                f"{d.direction} against the median of its neighbours ({how}:"
                f" {', '.join(d.neighbours)}) for {d.hours} h, {_hhmm(d.first_hour)} to"
                f" {_hhmm(d.last_hour + HOUR)} (UTC+8), median {d.median_score:+.1f} robust"
                f" spreads; values: {'corrected' if self.r.use_corrected else 'raw'}"
            )
            obs = rules.neighbour_disagreement(
                p, True, float(d.last_hour + HOUR), d.median_score, check.k, clause
            )
            events = self.alerts.observe(sid, obs)
            out["alerts_opened"] += sum(e.type == "alert.opened" for e in events)
            return
        v = hour_verdict(
            last, series[last], {n: s[last] for n, s in nb.items() if last in s}, check
        )
        if v is not None and not v.outlier(check.k):
            obs = rules.neighbour_disagreement(
                p, False, float(last + HOUR), v.score, check.k, "", span_s=HOUR
            )
            self.alerts.observe(sid, obs)

    def _inspections(self, means: dict, start: int, end: int, out: dict[str, int]) -> None:
        for sid, times in self.r.inspections.items():
            pm25 = means.get(sid, {}).get("pm25", {})
            for t in times:
                hour = int(t) - int(t) % HOUR
                if not start <= hour < end - 3 * HOUR or not pm25:
                    continue
                if drop_to_background(pm25, hour, self.r.background_pm25):
                    out["inspection_drops"] += 1
                    clause = (
                        f"PM2.5 dropped to background around the inspection at {_hhmm(hour)}"
                        " (UTC+8): flagged for a reviewer, not invalidated"
                    )
                    self.alerts.observe(sid, rules.inspection_drop(float(hour), clause))
