"""`envnet audit`: GET /audit as a terminal table (docs/audit.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import typer
from rich.console import Console
from rich.table import Table

from envnet.cli.api import ApiError, fetch
from envnet.cli.common import ConfigOpt, KeyOpt, UrlOpt, api_target


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


def command(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    since: Annotated[str | None, typer.Option(help="unix s or ISO 8601 (UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="unix s or ISO 8601 (UTC)")] = None,
    actor: Annotated[str | None, typer.Option(help="API key name or user")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. alert.ack, station.maint")] = None,
    target: Annotated[str | None, typer.Option(help="station, alert or webhook id")] = None,
    limit: Annotated[int, typer.Option(help="rows per page", min=1, max=5000)] = 50,
    pages: Annotated[int, typer.Option(help="pages to follow", min=1)] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
    config: ConfigOpt = None,
) -> None:
    """Table of GET /audit: who changed what and when (docs/audit.md)."""
    try:
        params: dict[str, Any] = {"since": parse_time(since), "until": parse_time(until)}
    except ValueError as e:
        typer.echo(f"envnet audit: bad time: {e}", err=True)
        raise typer.Exit(2) from None
    url, api_key = api_target(config, url, api_key)
    params |= {"actor": actor, "action": action, "target": target, "limit": limit}
    try:
        rows, more = fetch_pages(url, api_key, params, pages)
    except ApiError as e:
        typer.echo(f"envnet audit: {e}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
    else:
        Console().print(audit_table(rows))
    if more:
        typer.echo(f"more rows: --pages {pages + 1}, or ?cursor={more}", err=True)
