"""Exports: every report as JSON (the dict itself) or as CSV tables.

A report is nested; CSV is flat, so each report offers named tables (`tables()`), the first
being its main one. Nested dicts become prefixed columns (iaqi_pm25, statistics_co, ...),
lists are joined with ";".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}_"))
        elif isinstance(v, list):
            if all(not isinstance(x, Mapping) for x in v):
                out[key] = ";".join(str(x) for x in v)
        else:
            out[key] = v
    return out


def _station_days(report: Mapping[str, Any], part: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for st in report["stations"]:
        head = {"station": st["id"], "kind": st["kind"], "district": st["district"]}
        rows.extend({**head, **r} for r in st[part])
    return rows


def _water_months(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s in report["water"]["sections"]:
        head = {"section": s["id"], "target_class": s["target_class"]}
        rows.extend({**head, **m} for m in s["months"])
    return rows


def _water_days(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s in report["water"]["sections"]:
        head = {"section": s["id"], "target_class": s["target_class"]}
        rows.extend({**head, **d} for d in s["daily"])
    return rows


def tables(report: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    kind = report["report"]
    if kind == "daily":
        air = [*report["stations"], *report["districts"], report["city"]]
        return {"air": air, "water": list(report["water"])}
    if kind == "period":
        return {
            "air": list(report["air"]),
            "water": list(report["water"]["sections"]),
            "water_months": _water_months(report),
            "water_days": _water_days(report),
        }
    if kind == "targets":
        return {
            "targets": [
                {"figure": "pm25", **report["pm25"]},
                {"figure": "good_days", **report["good_days"]},
            ],
            "water": list(report["water"]["sections"]),
        }
    if kind == "completeness":
        return {"days": _station_days(report, "days"), "months": _station_days(report, "months")}
    raise ValueError(f"unknown report {kind!r}")


def to_csv(report: Mapping[str, Any], table: str | None = None) -> str:
    all_tables = tables(report)
    name = table or next(iter(all_tables))
    if name not in all_tables:
        raise KeyError(f"table {name!r} is not in this report (have: {', '.join(all_tables)})")
    rows = [flatten(r) for r in all_tables[name]]
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
