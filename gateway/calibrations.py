"""The applied calibrations the evaluator corrects PM with (`review.use_corrected`).

The server's review worker fits and withdraws calibrations in the state store
(envnet/store/review.py); the evaluator reads each station's applied ones through this cache,
re-read every `review.calibration_refresh_s`, so a withdrawn calibration stops being applied
within that time and a new one starts. One cache per evaluator worker: each partition's
stations are read by the worker that evaluates them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from envnet.domain.alerts.corrected import Correction
from envnet.domain.review.calibration import Fit
from envnet.store import review
from envnet.store.state import SqliteStateStore


class CalibrationCache:
    def __init__(
        self,
        store: SqliteStateStore,
        parameters: list[str],
        refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.parameters = tuple(parameters)
        self.refresh_s = refresh_s
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Correction]]] = {}
        review.ensure_schema(store)  # once, outside the evaluator's transactions

    def __call__(self, station: str) -> Mapping[str, Correction]:
        now = self.clock()
        hit = self._cache.get(station)
        if hit is not None and hit[0] > now:
            return hit[1]
        found: dict[str, Correction] = {}
        for param in self.parameters:
            cal = review.applied_calibration(self.store, station, param)
            if cal is not None:
                fit = Fit(cal.slope, cal.humidity, cal.offset, cal.n, cal.r2 or 0.0)
                found[param] = Correction(cal.id, fit)
        self._cache[station] = (now + self.refresh_s, found)
        return found
