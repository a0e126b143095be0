"""Checks a generated dashboard three ways before it is written (and in the test):

1. a round trip through the SDK's dashboard model (generated from Grafana's own schema): a key
   the model does not know, or a value that reads back differently, is an error;
2. the JSON Schema shipped in grafana/schema/dashboard.schema.json (draft 2020-12, checked by
   the `jsonschema` library): Grafana's required fields, InfluxQL targets on the provisioned
   datasource, grid bounds;
3. the layout: unique panel ids, no panel wider than the grid or overlapping another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as dm
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.validators import validator_for

from envnet.devkit.grafana.builder import InfluxQuery

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "grafana" / "schema" / "dashboard.schema.json"

_MESSAGE_CHARS = 300  # a message quoting a whole panel is cut: the path says where it is


def validate(doc: dict[str, Any], schema: dict | None = None) -> list[str]:
    """Every problem found: SDK round trip, the JSON Schema (the shipped one unless `schema`
    is given), ids and grid layout. An empty list means the dashboard is valid."""
    if schema is None:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = [f"sdk model: {e}" for e in sdk_model_errors(doc)]
    errors += [f"schema: {e}" for e in schema_errors(doc, schema)]
    errors += layout_errors(doc)
    return errors


def _register_sdk() -> None:
    # from_json needs the panel plugins and our InfluxDB query type to decode panels and targets.
    register_default_plugins()
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig("influxdb", InfluxQuery.from_json)
    )


def sdk_model_errors(doc: dict[str, Any]) -> list[str]:
    """Where the dashboard differs from the SDK model's reading of it."""
    _register_sdk()
    back = json.loads(json.dumps(dm.Dashboard.from_json(doc), cls=JSONEncoder, ensure_ascii=False))
    return list(_diff(doc, back, "$"))


def _diff(a: Any, b: Any, path: str) -> Iterator[str]:
    """Where a (ours) and b (the SDK's reading of it) differ: keys the model does not know."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a.keys() - b.keys():
            yield f"{path}.{k}: not in the Grafana dashboard model"
        for k in b.keys() - a.keys():
            yield f"{path}.{k}: the model adds a default {b[k]!r}"
        for k in a.keys() & b.keys():
            yield from _diff(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} reads back as {b!r}"


def schema_errors(doc: dict[str, Any], schema: dict) -> list[str]:
    """The JSON Schema's complaints about `doc`, as "<JSON path>: <message>".

    Raises jsonschema.SchemaError if the schema itself is not valid for its draft."""
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: (e.json_path, e.message))
    return [_describe(e) for e in errors]


def _describe(error: ValidationError) -> str:
    if (
        error.context
    ):  # anyOf / oneOf: the alternative with the fewest complaints says what is wrong
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        closest = best_match(min(branches.values(), key=len))
        text = f"matches no alternative; closest: {closest.json_path}: {closest.message}"
    else:
        text = error.message
    if len(text) > _MESSAGE_CHARS:
        text = text[: _MESSAGE_CHARS - 1] + "…"
    return f"{error.json_path}: {text}"


def layout_errors(doc: dict[str, Any]) -> list[str]:
    """Duplicate panel ids, panels wider than the 24-column grid, panels that overlap."""
    errors = []
    ids = [p.get("id") for p in doc.get("panels", [])]
    if len(ids) != len(set(ids)):
        errors.append("layout: panel ids are not unique")
    cells: dict[tuple[int, int], str] = {}
    for p in doc.get("panels", []):
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k, 0), int) for k in "xywh"):
            continue  # the schema reports a gridPos that is not integers
        if g.get("x", 0) + g.get("w", 0) > 24:
            errors.append(f"layout: panel {p.get('title')!r} is wider than the grid")
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    errors.append(f"layout: {p.get('title')!r} overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = p.get("title", "")
            else:
                continue
            break
    return errors
