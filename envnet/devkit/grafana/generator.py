"""Builds the four dashboards, validates them and writes them as JSON for Grafana's file
provisioning; `main` is the command line (`python -m envnet.devkit.grafana [--check]`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from envnet.core.standards import DEFAULT_EDITION
from envnet.devkit.grafana.city_air import city_air
from envnet.devkit.grafana.network import network
from envnet.devkit.grafana.rivers import rivers
from envnet.devkit.grafana.station import station
from envnet.devkit.grafana.validation import validate

DASHBOARDS_DIR = Path(__file__).resolve().parents[3] / "grafana" / "dashboards"

# uid -> the function building that dashboard for a standards edition; files are <uid>.json.
DASHBOARDS: dict[str, Callable[[str], db.Dashboard]] = {
    "envnet-city-air": city_air,
    "envnet-station": station,
    "envnet-rivers": rivers,
    "envnet-network": network,
}


def to_json(d: db.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, panels numbered 1.. in order."""
    model = d.build()
    for i, panel in enumerate(model.panels or [], start=1):
        panel.id_val = i
    return json.loads(json.dumps(model, cls=JSONEncoder, ensure_ascii=False))


def build_all(edition: str = DEFAULT_EDITION) -> dict[str, dict[str, Any]]:
    return {uid: to_json(fn(edition)) for uid, fn in DASHBOARDS.items()}


def dumps(doc: dict[str, Any]) -> str:
    """The file text of a dashboard (the committed files are exactly this)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def generate(out_dir: Path, edition: str = DEFAULT_EDITION) -> list[Path]:
    """Write every dashboard as <uid>.json into out_dir (validated first); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = build_all(edition)
    for uid, doc in docs.items():
        errors = validate(doc)
        if errors:
            raise ValueError(f"dashboard {uid} is invalid:\n  " + "\n  ".join(errors))
    paths = []
    for uid, doc in docs.items():
        path = out_dir / f"{uid}.json"
        path.write_text(dumps(doc), encoding="utf-8")
        paths.append(path)
    return paths


def stale_files(out_dir: Path, edition: str = DEFAULT_EDITION) -> list[Path]:
    """The dashboard files in out_dir that are missing or differ from what generate writes."""
    return [
        path
        for uid, doc in build_all(edition).items()
        if not (path := out_dir / f"{uid}.json").exists()
        or path.read_text(encoding="utf-8") != dumps(doc)
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m envnet.devkit.grafana",
        description="Grafana dashboards for envnet, generated from Python with "
        "grafana-foundation-sdk.",
    )
    ap.add_argument("out_dir", nargs="?", type=Path, default=DASHBOARDS_DIR)
    ap.add_argument("--edition", default=DEFAULT_EDITION, help="standards edition (default 2012)")
    ap.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_files(args.out_dir, args.edition)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in generate(args.out_dir, args.edition):
        print(path)
    return 0
