"""Who is responsible: districts, grid cells (街道 / 乡镇) and responsible units, in the state
store. Loaded from a grid file (`cases.grid_file`, e.g. the demo's site file keys "districts",
"units", "cells") when the server starts; stations map to cells by their registry meta `cell`
(`envnet provision --cell`), and a station without a cell falls back to its district's bureau.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from envnet.store.cases_schema import ensure_schema
from envnet.store.state import SqliteStateStore

UNIT_KINDS = ("district_bureau", "street_office", "township_office", "enterprise_liaison", "other")
CELL_KINDS = ("street", "township")


class GridError(ValueError):
    """str() names the entry that is wrong."""


def _text(d: dict[str, Any], key: str, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v.strip():
        raise GridError(f"{where}: {key} missing or not text")
    return v.strip()


def validate_grid(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Check a grid document: every district, unit and cell named, every reference known."""
    districts = data.get("districts") or []
    units = data.get("units") or []
    cells = data.get("cells") or []
    d_ids = {_text(d, "id", f"districts[{i}]") for i, d in enumerate(districts)}
    u_ids: set[str] = set()
    for i, u in enumerate(units):
        where = f"units[{i}]"
        u_ids.add(_text(u, "id", where))
        _text(u, "name_zh", where)
        if u.get("kind", "other") not in UNIT_KINDS:
            raise GridError(f"{where}: kind must be one of {', '.join(UNIT_KINDS)}")
        if u.get("district") is not None and u["district"] not in d_ids:
            raise GridError(f"{where}: unknown district {u['district']!r}")
    for i, u in enumerate(units):
        if u.get("parent") is not None and u["parent"] not in u_ids:
            raise GridError(f"units[{i}]: unknown parent unit {u['parent']!r}")
    for i, d in enumerate(districts):
        if d.get("bureau") is not None and d["bureau"] not in u_ids:
            raise GridError(f"districts[{i}]: unknown bureau unit {d['bureau']!r}")
    for i, c in enumerate(cells):
        where = f"cells[{i}]"
        _text(c, "id", where)
        if c.get("kind", "street") not in CELL_KINDS:
            raise GridError(f"{where}: kind must be one of {', '.join(CELL_KINDS)}")
        if c.get("district") not in d_ids:
            raise GridError(f"{where}: unknown district {c.get('district')!r}")
        if c.get("unit") not in u_ids:
            raise GridError(f"{where}: unknown unit {c.get('unit')!r}")
    return {"districts": districts, "units": units, "cells": cells}


class Grid:
    def __init__(self, state: SqliteStateStore) -> None:
        self.state = state
        ensure_schema(state)

    def load(self, data: dict[str, Any]) -> tuple[int, int, int]:
        """Insert or update every district, unit and cell of `data` (one transaction)."""
        g = validate_grid(data.get("grid", data))  # a site file keeps them under "grid"
        with self.state.tx() as c:
            for d in g["districts"]:
                c.execute(
                    "INSERT INTO grid_districts(id, name_en, bureau) VALUES (?,?,?)"
                    " ON CONFLICT(id) DO UPDATE SET name_en=excluded.name_en,"
                    " bureau=excluded.bureau",
                    (d["id"], d.get("name_en"), d.get("bureau")),
                )
            for u in g["units"]:
                c.execute(
                    "INSERT INTO grid_units(id, name_zh, name_en, kind, district, parent, contacts)"
                    " VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                    " name_zh=excluded.name_zh, name_en=excluded.name_en, kind=excluded.kind,"
                    " district=excluded.district, parent=excluded.parent,"
                    " contacts=excluded.contacts",
                    (
                        u["id"],
                        u["name_zh"],
                        u.get("name_en"),
                        u.get("kind", "other"),
                        u.get("district"),
                        u.get("parent"),
                        json.dumps(u.get("contacts") or [], ensure_ascii=False),
                    ),
                )
            for cell in g["cells"]:
                c.execute(
                    "INSERT INTO grid_cells(id, name_zh, name_en, kind, district, unit)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                    " name_zh=excluded.name_zh, name_en=excluded.name_en, kind=excluded.kind,"
                    " district=excluded.district, unit=excluded.unit",
                    (
                        cell["id"],
                        cell.get("name_zh"),
                        cell.get("name_en"),
                        cell.get("kind", "street"),
                        cell["district"],
                        cell["unit"],
                    ),
                )
        return len(g["districts"]), len(g["units"]), len(g["cells"])

    def load_file(self, path: str | Path) -> tuple[int, int, int]:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise GridError(f"grid file {path}: {e}") from None
        return self.load(data)

    # -- reading ------------------------------------------------------------------------------
    def units(self, district: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM grid_units"
        rows = self.state.query(
            sql + (" WHERE district=? ORDER BY id" if district else " ORDER BY id"),
            (district,) if district else (),
        )
        return [_unit(r) for r in rows]

    def unit(self, unit_id: str) -> dict[str, Any] | None:
        rows = self.state.query("SELECT * FROM grid_units WHERE id=?", (unit_id,))
        return _unit(rows[0]) if rows else None

    def cells(self, district: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM grid_cells"
        rows = self.state.query(
            sql + (" WHERE district=? ORDER BY id" if district else " ORDER BY id"),
            (district,) if district else (),
        )
        return [dict(r) for r in rows]

    def cell(self, cell_id: str) -> dict[str, Any] | None:
        rows = self.state.query("SELECT * FROM grid_cells WHERE id=?", (cell_id,))
        return dict(rows[0]) if rows else None

    def bureau_of(self, district: str) -> str | None:
        rows = self.state.query("SELECT bureau FROM grid_districts WHERE id=?", (district,))
        return rows[0][0] if rows else None

    def responsible(self, meta: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
        """(unit, cell, district) for a station's registry meta: its cell's unit, else its
        district's bureau; (None, ...) when neither is known."""
        meta = meta or {}
        cell_id = meta.get("cell")
        if cell_id:
            cell = self.cell(str(cell_id))
            if cell is not None:
                return cell["unit"], cell["id"], cell["district"]
        district = meta.get("district")
        if district:
            return self.bureau_of(str(district)), None, str(district)
        return None, None, None


def _unit(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["contacts"] = json.loads(d["contacts"] or "[]")
    return d
