"""The clock of the supervision loop: the system clock, a file (tests inject time by writing
it), or a compressed clock (the demo's data time). Settings: `cases.clock_*`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from envnet.domain.cases import CaseSettings

Clock = Callable[[], float]


def make_clock(cfg: CaseSettings) -> Clock:
    if cfg.clock_file:
        path = Path(cfg.clock_file)

        def from_file() -> float:
            try:
                return float(path.read_text().strip())
            except (OSError, ValueError):
                return time.time()  # not written yet (or mid-write): the system clock

        return from_file
    if cfg.clock_scale != 1.0:
        t0, wall0, scale = cfg.clock_t0, cfg.clock_wall0 or time.time(), cfg.clock_scale
        t0 = t0 or wall0
        return lambda: t0 + (time.time() - wall0) * scale
    return time.time
