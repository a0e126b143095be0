"""The cyclic garbage collector's settings for the gateway's processes.

The gateway's processes work in batches of thousands of messages, each batch a few objects
per message (payloads, reading rows, points) that all live until the batch is committed. With
CPython's default thresholds (700, 10, 10) those survivors are promoted and, every few
thousand allocations, a full collection walks every live object again, including the tens of
thousands that the imports (pydantic models, httpx, paho) left behind. Measured on the log
processor draining the bench's 60,000 readings: 17 of its 40 µs per reading were collections
(docs/performance.md, "Per-reading CPU, third pass").

None of that is cyclic garbage: the hot paths free what they allocate by reference counting.
So: freeze what start-up built (it is never collected: it lives as long as the process) and
collect the young generation every 50,000 allocations instead of 700. Cycles are still
collected, only in larger rounds; a round of 50,000 young objects is a few milliseconds.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100


def tune_gc() -> None:
    """Call once a process has imported and opened what it needs (before its loop)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
