"""The sample bodies in docs/webhooks.md, generated from the real event code so they cannot
drift: the alert engine (envnet.domain.alerts.Evaluator) raises the alerts from readings, and
envnet.domain.webhooks (events_for, build_body) turns each change into the body a
subscriber receives.

    python -m envnet.devkit.webhook_samples          # rewrite the samples in docs/webhooks.md
    python -m envnet.devkit.webhook_samples --check  # exit 1 if the docs differ

tests/test_webhooks_samples.py fails when the docs and the code disagree. Only the part of
docs/webhooks.md between the two SAMPLES markers is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envnet.domain.alerts import AlertEvent, Evaluator
from envnet.domain.webhooks import build_body, events_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
BEGIN = "<!-- SAMPLES:BEGIN -->"  # written by: python -m envnet.devkit.webhook_samples
END = "<!-- SAMPLES:END -->"
BASE_URL = "https://envnet.example.cn"
T0 = 1_777_564_800.0  # 2026-05-01 00:00 CST: data time of the sample readings
# A uuid4 in the engine; a fixed stand-in here, so the docs stay the same between runs.
ALERT_IDS = {
    "air_limit_24h": "5f0c2a9e7d3b4e61a8f4c2d19b7e3a50",
    "water_class": "9a7d41c2e8b54f03b6d2e7a1c4f80b39",
}

AIR = {"id": "sy-hunnan-01", "kind": "air", "name": "浑南东路", "name_en": "Hunnan East Road",
       "district": "浑南区", "class": "city"}  # fmt: skip
WATER = {"id": "xi-yutai-01", "kind": "water", "name": "细河于台", "name_en": "Xi River, Yutai",
         "district": "于洪区", "river": "细河", "target_class": "V"}  # fmt: skip


def _feed(ev: Evaluator, meta: Mapping[str, Any], hours: int, values: dict[str, float]) -> list:
    interval = 60 if meta["kind"] == "air" else 300
    events: list[AlertEvent] = []
    for i in range(int(hours * 3600 / interval) + 3):
        ts = T0 + i * interval
        reading = {"ts": ts, "seq": i, "kind": meta["kind"], "values": values}
        events += ev.on_reading(meta, reading, ts + 2.0)
    return events


def _first(events: list[AlertEvent], rule: str) -> AlertEvent:
    return next(e for e in events if e.alert is not None and e.alert.rule == rule)


def _body(event: AlertEvent, meta: Mapping[str, Any]) -> dict[str, Any]:
    assert event.alert is not None
    first = events_for(event)[0]  # the event the outbox gets, as the gateway emits it
    fixed = ALERT_IDS[event.alert.rule]
    event_id = (first.id or "").replace(first.data["id"], fixed)
    data = first.data | {"id": fixed}
    return build_body(event_id, first.type, event.at, data, BASE_URL, first.station, dict(meta))


def samples() -> dict[str, dict[str, Any]]:
    """Two alert.opened bodies: a PM2.5 24-hour exceedance and a water-class exceedance."""
    ev = Evaluator()
    air = _first(_feed(ev, AIR, 21, {"pm25": 118.0, "pm10": 90.0}), "air_limit_24h")
    # DO 1.5 mg/L is worse than class V (< 2): worse than the Xi River's target V
    water = _first(_feed(ev, WATER, 1, {"ph": 7.4, "do": 1.5}), "water_class")
    return {
        "PM2.5 24-hour mean above GB 3095-2012 Grade II": _body(air, AIR),
        "dissolved oxygen worse than the section's target class": _body(water, WATER),
    }


def render(bodies: Mapping[str, Mapping[str, Any]]) -> str:
    parts = [BEGIN]
    for title, body in bodies.items():
        text = json.dumps(body, ensure_ascii=False, indent=2)
        parts += ["", f"{title}:", "", "```json", text, "```"]
    parts += ["", END]
    return "\n".join(parts)


def current(doc: str) -> str:
    try:
        start = doc.index(BEGIN)
        end = doc.index(END, start) + len(END)
    except ValueError:
        raise SystemExit(f"{DOC}: the SAMPLES markers are missing") from None
    return doc[start:end]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = p.parse_args(argv)
    doc = DOC.read_text(encoding="utf-8")
    want = render(samples())
    if args.check:
        ok = current(doc) == want
        print("docs/webhooks.md samples are " + ("current" if ok else "out of date"))
        return 0 if ok else 1
    DOC.write_text(doc.replace(current(doc), want), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
