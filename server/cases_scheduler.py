"""The case scheduler: a thread of the server that, every `cases.tick_s`, takes in new alerts,
notes readings back to normal, and issues the slips that fell due (envnet/store/case_schedule.py
does the work in the store; this is the loop). It runs whether or not readings arrive, in every
server process: the store's unique keys make it exactly once. Started and stopped with the
app's lifespan (server/lifespan.py)."""

from __future__ import annotations

import logging
import threading
import time

from envnet.store.case_schedule import CaseScheduler
from server.cases_clock import Clock

log = logging.getLogger("envnet.cases")


class CaseSchedulerWorker:
    def __init__(self, scheduler: CaseScheduler, clock: Clock, tick_s: float, from_alerts: bool):
        self.scheduler = scheduler
        self.clock = clock
        self.tick_s = tick_s
        self.from_alerts = from_alerts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="case-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(30)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                res = self.scheduler.run_pass(self.clock(), self.from_alerts)
                self.passes += 1
                if any(res.values()):
                    log.info(
                        "cases: %(opened)d opened, %(normal)d back to normal, %(slips)d slips",
                        res,
                    )
            except Exception:
                log.exception("case scheduler pass failed; retrying")
            self._stop.wait(max(0.0, self.tick_s - (time.monotonic() - t0)))
