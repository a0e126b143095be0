"""Helpers for the alert tests: a station that feeds an Evaluator readings in data time."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envnet.domain.alerts import AlertEvent, AlertSettings, Evaluator, InMemoryAlertStore
from envnet.store.alerts import SqliteAlertStore
from envnet.store.state import SqliteStateStore

T0 = 1767196800  # 2026-01-01 00:00 China Standard Time (2025-12-31 16:00 UTC)
HOUR = 3600


def new_evaluator(**settings: Any) -> Evaluator:
    """An evaluator on the real SQLite alert store, unless ALERT_TESTS_STORE=memory."""
    if os.environ.get("ALERT_TESTS_STORE") == "memory":
        return Evaluator(AlertSettings(**settings), InMemoryAlertStore())
    path = Path(tempfile.mkdtemp(prefix="envnet-alerts-")) / "state.db"
    return Evaluator(AlertSettings(**settings), SqliteAlertStore(SqliteStateStore(path)))


@dataclass
class Feed:
    """Readings every `interval_s` from T0 on; each one received 1 s after its ts."""

    ev: Evaluator
    meta: dict[str, Any]
    t: float = T0
    seq: int = 0
    events: list[AlertEvent] = field(default_factory=list)

    @property
    def interval(self) -> float:
        return float(self.meta["interval_s"])

    def reading(
        self,
        values: Mapping[str, float],
        flags: Mapping[str, str] | None = None,
        ts: float | None = None,
    ) -> list[AlertEvent]:
        self.seq += 1
        r = {
            "v": 1,
            "seq": self.seq,
            "ts": self.t if ts is None else ts,
            "kind": self.meta["kind"],
            "values": dict(values),
            "flags": dict(flags or {}),
        }
        out = self.ev.on_reading(self.meta, r, r["ts"] + 1)
        self.events += out
        return out

    def run(
        self,
        hours: float,
        values: Mapping[str, float] | Callable[[float], Mapping[str, float]],
        flags: Mapping[str, str] | None = None,
        per_hour: int | None = None,
    ) -> list[AlertEvent]:
        """`hours` of readings; `per_hour` readings in each hour (default: all), so fewer
        make the hour invalid. A callable gets the reading's ts."""
        out: list[AlertEvent] = []
        n = int(round(HOUR / self.interval))
        for _ in range(int(round(hours * n))):
            slot = int((self.t - T0) % HOUR // self.interval)
            if per_hour is None or slot < per_hour:
                v = values(self.t) if callable(values) else values
                out += self.reading(v, flags)
            self.t += self.interval
        return out


def air_feed(ev: Evaluator, sid: str = "sy-air-001", interval_s: float = 600, **meta: Any) -> Feed:
    """Interval 600 s: each reading stands for 10 min, so 5 readings make a valid hour."""
    return Feed(
        ev, {"id": sid, "kind": "air", "class": "national", "interval_s": interval_s} | meta
    )


def water_feed(ev: Evaluator, sid: str = "hun-river-01", target: Any = "III", **meta: Any) -> Feed:
    return Feed(
        ev,
        {"id": sid, "kind": "water", "class": "section", "interval_s": 300, "target_class": target}
        | meta,
    )


def kinds(events: list[AlertEvent], rule: str | None = None) -> list[str]:
    return [e.type for e in events if rule is None or (e.alert and e.alert.rule == rule)]


def wiggle(base: float, amp: float = 0.5) -> Callable[[float], dict[str, float]]:
    """Values that are never identical from one reading to the next (no flat-line)."""
    return lambda ts: {"pm25": base + amp * ((int(ts) // 600) % 3 - 1)}
