"""The review worker: a thread of the server that, every `review.check_interval_s`, runs the
calibration against reference stations (server/review/calibrate.py) and the neighbour
consistency check (server/review/neighbours.py), and recomputes the recent invalidations
again for the figures closed since (server/review/catchup.py). Started and stopped with the
app's lifespan (server/lifespan.py). Every step is idempotent and keyed by the stored
calibrations and invalidations, so two server processes running it write the same values; a
failing pass (InfluxDB down) is logged and retried at the next tick."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from envnet.config import Settings
from envnet.store.influx.reports import ReportQueryError
from envnet.store.state import SqliteStateStore
from server import metrics
from server.reports.service import Reports
from server.review.alerting import AlertSink
from server.review.calibrate import Calibrator
from server.review.catchup import CatchUp
from server.review.data import air_sites
from server.review.neighbours import NeighbourCheck
from server.review.recompute import Recomputer

log = logging.getLogger("envnet.review")


class ReviewWorker:
    def __init__(self, settings: Settings, store: SqliteStateStore) -> None:
        self.settings = settings
        self.store = store
        self.tick_s = settings.review.check_interval_s
        self.reports = Reports(settings, store)
        alerts = AlertSink(settings, store)
        self.calibrator = Calibrator(settings, store, self.reports, alerts)
        self.neighbours = NeighbourCheck(settings, store, self.reports, alerts)
        self.catch_up = CatchUp(settings, store, Recomputer(settings, store, self.reports))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.last: dict[str, Any] = {}

    def run_pass(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        out: dict[str, Any] = {"catch_up": self.catch_up.run(now)}  # air and water stations
        sites = air_sites(self.store)
        if sites:  # else no air station registered: nothing to calibrate or compare
            cal = out["calibration"] = self.calibrator.run(sites, now)
            nb = out["neighbours"] = self.neighbours.run(sites, now)
            metrics.review_calibrations_fitted.inc(cal["fitted"])
            metrics.review_calibrations_withdrawn.inc(cal["withdrawn"])
            metrics.review_neighbour_alerts.inc(nb["alerts_opened"])
        self.passes += 1
        self.last = out
        metrics.review_passes.inc()
        return out

    def start(self) -> None:
        if self._thread is not None or self.tick_s <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="review-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(60)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                res = self.run_pass()
                log.info("review pass: %s", res)
            except ReportQueryError as e:  # InfluxDB down or not configured: no traceback
                metrics.review_pass_failures.inc()
                log.warning("review pass skipped: %s; retrying at the next tick", e)
            except Exception:
                metrics.review_pass_failures.inc()
                log.exception("review pass failed; retrying at the next tick")
            self._stop.wait(max(0.0, self.tick_s - (time.monotonic() - t0)))
