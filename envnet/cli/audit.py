"""`envnet audit`: GET /audit as a terminal table (docs/audit.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from rich.table import Table

from envnet.cli.views import fetch


def parse_time(text: str | None) -> float | None:
    """Unix seconds, or an ISO 8601 date/time (UTC when no offset is given)."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def fetch_pages(
    url: str, api_key: str, params: dict[str, Any], pages: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `pages` pages of GET /audit; the rows and the cursor of the page after them."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(pages):
        q = {k: v for k, v in {**params, "cursor": cursor}.items() if v is not None}
        page = fetch(url, "/audit?" + urlencode(q), api_key)
        rows += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return rows, cursor


def audit_table(rows: list[dict[str, Any]]) -> Any:
    t = Table(title=f"audit trail ({len(rows)} rows, newest first)")
    for col in ("when (UTC)", "actor", "action", "target", "detail"):
        t.add_column(col, overflow="fold")
    for r in rows:
        when = datetime.fromtimestamp(r["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        detail = json.dumps(r["detail"], ensure_ascii=False, sort_keys=True)
        t.add_row(when, r["actor"], r["action"], r["target"], detail)
    return t
