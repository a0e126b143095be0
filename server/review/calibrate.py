"""Calibration of micro stations against the reference stations beside them, in production.

Each pass, for every co-location pair (a micro station and its reference: the registry's
`reference`, else the nearest station of `review.reference_classes` within
`review.colocation_max_m`) and every parameter of `review.calibration_parameters`:

- with no calibration yet, the first `calibration_window_days` of paired hourly means in the
  last `calibration_backfill_days` are fitted (envnet/domain/review/calibration.py);
- an applied calibration is walked forward a step (`calibration_step_days`) at a time, as
  `rolling()` does: assessed out of sample on the step's new pairs; passing, its values for
  the step are written and it is refitted on the window ending there (a new stored
  calibration, so every corrected value names the one that made it); failing (R², bias,
  slope, or too few pairs to refit) it is stored `withdrawn`, its corrected values from the
  failing step on are deleted, and a `calibration_degraded` alert names the problems;
- hours after the last full step are corrected provisionally with the applied calibration
  (deleted again if the step then fails);
- a withdrawn calibration is never refitted by the worker: a person looks first and asks
  for a fresh fit (`Calibrator.refit`: POST /review/calibrations/{station}/refit, `envnet
  review refit`), which the worker then walks forward like any applied calibration
  (docs/review.md).

Corrected values go to InfluxDB's `air_corrected` (server/review/data.py) with `cal_id`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from envnet.config import Settings
from envnet.core.calendar import HOUR
from envnet.domain.alerts import rules
from envnet.domain.review.calibration import (
    CalibrationError,
    Fit,
    Limits,
    Pair,
    Quality,
    colocation,
    fit,
    pair_hourly,
    quality,
)
from envnet.store import review
from envnet.store.audit import record_audit
from envnet.store.influx.corrected import corrected_lines, delete_corrected
from envnet.store.state import SqliteStateStore
from server.reports.service import Reports
from server.review.alerting import AlertSink
from server.review.data import Site, air_sites, reviewed_means

log = logging.getLogger("envnet.review")
DAY = 86400
Micro = dict[int, tuple[float, float]]  # hour start -> (micro hourly mean, its RH)


@dataclass(frozen=True, slots=True)
class Colocation:
    micro: str
    reference: str
    distance_m: float | None  # None: named by the registry, no positions to measure


def colocations(sites: dict[str, Site], settings: Settings) -> list[Colocation]:
    """Every micro station with its reference station, by id."""
    classes = set(settings.review.reference_classes)
    refs = {sid: s.position for sid, s in sites.items() if s.station_class in classes}
    out = []
    for sid, s in sorted(sites.items()):
        if s.station_class in classes:
            continue
        if s.reference and s.reference in sites:
            out.append(Colocation(sid, s.reference, None))
            continue
        if s.position is None:
            continue
        known = {r: p for r, p in refs.items() if p is not None}
        near = colocation(s.position, known, settings.review.colocation_max_m)
        if near is not None:
            out.append(Colocation(sid, near[0], round(near[1], 1)))
    return out


class RefitRefused(ValueError):
    """A person's refit cannot be done (nothing stored); `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class Calibrator:
    def __init__(
        self, settings: Settings, store: SqliteStateStore, reports: Reports, alerts: AlertSink
    ) -> None:
        self.settings = settings
        self.r = settings.review
        self.store = store
        self.reports = reports
        self.alerts = alerts
        self.limits: Limits = self.r.limits()
        self.window_s = int(self.r.calibration_window_days * DAY)
        self.step_s = max(HOUR, int(self.r.calibration_step_days * DAY))

    def run(self, sites: dict[str, Site], now: float) -> dict[str, int]:
        """One pass over every co-location pair; -> counts of what happened."""
        out = {"pairs": 0, "fitted": 0, "withdrawn": 0, "corrected_hours": 0}
        now_h = int(now) - int(now) % HOUR  # the last complete hour ends here
        for co in colocations(sites, self.settings):
            out["pairs"] += 1
            for param in self.r.calibration_parameters:
                try:
                    self._one(co, param, sites, now_h, out)
                except CalibrationError as e:  # degenerate data: nothing to apply yet
                    log.info("calibration %s/%s: %s", co.micro, param, e)
        return out

    def refit(
        self, station: str, parameters: list[str] | None, now: float, actor: str
    ) -> list[review.Calibration]:
        """A person's way back after a withdrawal (or after re-pairing): fit each parameter
        afresh on the last `calibration_window_days` of pairs and store the fits `applied`,
        all of them or none, with a `review.calibration.refit` audit row in the same
        transaction. The worker walks them forward from now. Refused (RefitRefused, nothing
        stored): a station that is not a registered air station (404), a parameter not
        calibrated (400), no reference pair, too few pairs or a fit failing its limits (409)."""
        sites = air_sites(self.store)
        if station not in sites:
            raise RefitRefused(404, f"{station} is not a registered air station")
        known = list(self.r.calibration_parameters)
        params = parameters or known
        unknown = [p for p in params if p not in known]
        if unknown:
            raise RefitRefused(
                400,
                f"not calibrated: {', '.join(unknown)} (review.calibration_parameters: "
                f"{', '.join(known)})",
            )
        co = next((c for c in colocations(sites, self.settings) if c.micro == station), None)
        if co is None:
            raise RefitRefused(
                409,
                f"{station} has no reference pair: it is a reference station itself, or has no"
                " registry `reference` and no reference station within"
                f" {self.r.colocation_max_m:g} m",
            )
        now_h = int(now) - int(now) % HOUR
        period = (now_h - self.window_s, now_h)
        fitted: list[tuple[str, Fit, Quality]] = []
        problems: list[str] = []
        for param in params:
            pairs, _ = self._pairs(co, param, sites, *period)
            try:
                f = fit(pairs, self.limits.min_pairs)
            except CalibrationError as e:
                problems.append(f"{param}: {e} (pairs with {co.reference} since {_iso(period[0])})")
                continue
            q = quality(f, pairs, self.limits)
            if q.ok:
                fitted.append((param, f, q))
            else:
                problems.append(f"{param}: {'; '.join(q.problems)}")
        if problems:
            raise RefitRefused(409, f"nothing refitted for {station}: {' | '.join(problems)}")
        with self.store.tx():
            cals = [
                review.save_calibration(
                    self.store,
                    station=station,
                    reference=co.reference,
                    parameter=param,
                    period=period,
                    fit=f,
                    quality=q,
                    actor=actor,
                )
                for param, f, q in fitted
            ]
            record_audit(
                self.store,
                actor=actor,
                action="review.calibration.refit",
                target=station,
                detail={
                    "reference": co.reference,
                    "period": list(period),
                    "calibrations": {c.parameter: c.id for c in cals},
                },
                at=time.time(),
            )
        log.info("calibrations of %s refitted by %s: %s", station, actor, [c.id for c in cals])
        return cals

    def _pairs(
        self, co: Colocation, param: str, sites: dict[str, Site], a: int, b: int
    ) -> tuple[list[Pair], Micro]:
        """Paired hours (for fitting), and the micro station's hours with RH (to correct,
        whether or not the reference reported that hour)."""
        pair_sites = {co.micro: sites[co.micro], co.reference: sites[co.reference]}
        means = reviewed_means(self.reports, pair_sites, [param, "rh"], a, b)
        micro = means.get(co.micro, {}).get(param, {})
        rh = means.get(co.micro, {}).get("rh", {})
        pairs = pair_hourly(means.get(co.reference, {}).get(param, {}), micro, rh)
        return pairs, {h: (micro[h], rh[h]) for h in sorted(set(micro) & set(rh))}

    def _one(
        self, co: Colocation, param: str, sites: dict[str, Site], now_h: int, out: dict[str, int]
    ) -> None:
        latest = review.calibrations(self.store, station=co.micro, parameter=param, limit=1)
        cal = latest[0] if latest else None
        if cal is not None and cal.status != "applied":
            return  # withdrawn: raw values until a person looks
        if cal is not None and cal.reference != co.reference:
            cal = None  # the station was paired anew: start over
        start = (
            cal.period_end - self.window_s
            if cal
            else now_h - int(self.r.calibration_backfill_days * DAY)
        )
        pairs, micro = self._pairs(co, param, sites, start, now_h)
        if cal is None:
            if not pairs:
                return
            t = min(pairs[0].hour + self.window_s, now_h)
            win = [p for p in pairs if t - self.window_s <= p.hour < t]
            if len(win) < self.limits.min_pairs:
                return  # not yet enough co-located hours: nothing to judge
            f = fit(win, self.limits.min_pairs)
            q = quality(f, win, self.limits)
            cal = self._save(co, param, (t - self.window_s, t), f, q, out)
            if cal is None:
                return
            self._write(co, param, cal, micro, t - self.window_s, t, out)
        t = cal.period_end
        step_limits = Limits(1, self.limits.min_r2, self.limits.max_bias, self.limits.slope_range)
        while t + self.step_s <= now_h:
            current = _fit_of(cal)
            new = [p for p in pairs if t <= p.hour < t + self.step_s]
            q = quality(current, new, step_limits)
            if new and not q.ok:
                self._save(co, param, (t, t + self.step_s), current, q, out, since=t)
                return
            self._write(co, param, cal, micro, t, t + self.step_s, out)
            t += self.step_s
            win = [p for p in pairs if t - self.window_s <= p.hour < t]
            try:
                f = fit(win, self.limits.min_pairs)
                q = quality(f, win, self.limits)
            except CalibrationError as e:
                f, q = current, Quality(len(win), None, None, None, (str(e),))
            nxt = self._save(co, param, (t - self.window_s, t), f, q, out, since=t)
            if nxt is None:
                return
            cal = nxt
        # provisional: the hours since the last full step, with the calibration in force
        self._write(co, param, cal, micro, t, now_h, out)

    def _save(
        self,
        co: Colocation,
        param: str,
        period: tuple[int, int],
        f: Fit,
        q: Quality,
        out: dict[str, int],
        since: int | None = None,
    ) -> review.Calibration | None:
        """Store the calibration; a failing one is withdrawn: its values from `since` on are
        deleted and the station-fault alert raised. -> the calibration if applied."""
        cal = review.save_calibration(
            self.store,
            station=co.micro,
            reference=co.reference,
            parameter=param,
            period=period,
            fit=f,
            quality=q,
        )
        if q.ok:
            out["fitted"] += 1
            return cal
        out["withdrawn"] += 1
        if since is not None:
            delete_corrected(self.reports.db, co.micro, param, since)
        problems = "; ".join(q.problems)
        clause = (
            f"calibration {cal.id} of {param} against {co.reference} over"
            f" {_iso(period[0])}..{_iso(period[1])}: {problems}; withdrawn, raw values are"
            " used until a person looks"
        )
        self.alerts.observe(
            co.micro,
            rules.calibration_degraded(
                param, True, float(period[1]), q.bias, self.limits.max_bias, clause
            ),
        )
        log.warning("calibration %s of %s/%s withdrawn: %s", cal.id, co.micro, param, problems)
        return None

    def _write(
        self,
        co: Colocation,
        param: str,
        cal: review.Calibration,
        micro: Micro,
        a: int,
        b: int,
        out: dict[str, int],
    ) -> None:
        """Correct the micro station's hours in [a, b) with `cal`."""
        f = _fit_of(cal)
        values = [(h, v, f.correct(v, rh)) for h, (v, rh) in micro.items() if a <= h < b]
        if not values:
            return
        self.reports.db.write(corrected_lines(co.micro, co.reference, param, cal.id, values))
        out["corrected_hours"] += len(values)


def _fit_of(cal: review.Calibration) -> Fit:
    return Fit(cal.slope, cal.humidity, cal.offset, cal.n, cal.r2 or 0.0)
