"""`envnet cases` and `envnet case show|sign|report|verify|return ID`: the supervision loop's
API (docs/cases.md) from a terminal, with the key's role deciding what is allowed."""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from envnet.cli.api import ApiError, fetch, send
from envnet.cli.common import ConfigOpt, KeyOpt, UrlOpt, api_target

app = typer.Typer(help="One case: show, sign, report, verify, return.", no_args_is_help=True)


def _fail(cmd: str, e: Exception) -> None:
    typer.echo(f"envnet {cmd}: {e}", err=True)
    raise typer.Exit(1) from None


def cases_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title=f"envnet cases ({len(rows)})", header_style="bold")
    for col in ("id", "station", "rule/param", "severity", "state", "unit", "district", "overdue"):
        t.add_column(col, overflow="fold")
    for c in rows:
        t.add_row(
            c["id"], c.get("station") or "-", f"{c['rule']}/{c['parameter']}", c["severity"],
            c["state"], c["unit"], c.get("district") or "-",
            "[red]overdue[/]" if c.get("overdue") else "",
        )  # fmt: skip
    return t


def cases_command(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="only overdue cases")] = False,
    unit: Annotated[str | None, typer.Option(help="only this unit's cases")] = None,
    state: Annotated[str | None, typer.Option(help="assigned | signed | handling | ...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """Table of GET /cases."""
    q = "&".join(f"{k}={v}" for k, v in (("overdue", "true" if overdue else None),
                 ("unit", unit), ("state", state), ("limit", "10000")) if v)  # fmt: skip
    try:
        base, key = api_target(config, url, api_key)
        rows = fetch(base, f"/cases?{q}", key)
    except ApiError as e:
        _fail("cases", e)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
    else:
        Console().print(cases_table(rows))


@app.command("show")
def show(case_id: str, url: UrlOpt = None, api_key: KeyOpt = None, config: ConfigOpt = None):
    """The case with its slips, history, linked alerts and evidence (JSON)."""
    try:
        base, key = api_target(config, url, api_key)
        typer.echo(json.dumps(fetch(base, f"/cases/{case_id}", key), ensure_ascii=False, indent=1))
    except ApiError as e:
        _fail("case show", e)


def _act(
    action: str, case_id: str, url: str | None, api_key: str | None, config: Path | None, body: Any
) -> None:
    try:
        base, key = api_target(config, url, api_key)
        c = send(base, f"/cases/{case_id}/{action}", key, body)
    except ApiError as e:
        _fail(f"case {action}", e)
    typer.echo(f"case {c['id']}: {c['state']} (unit {c['unit']})")


@app.command("sign")
def sign(
    case_id: str, url: UrlOpt = None, api_key: KeyOpt = None, config: ConfigOpt = None,
    note: Annotated[str | None, typer.Option(help="a note")] = None,
) -> None:  # fmt: skip
    """Sign the case (the responsible unit's key)."""
    _act("sign", case_id, url, api_key, config, {"note": note})


@app.command("report")
def report(
    case_id: str,
    text: Annotated[str, typer.Option(help="what was done")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
    photo: Annotated[list[Path] | None, typer.Option(help="a JPEG or PNG; repeat for more")] = None,
    lat: float | None = None,
    lon: float | None = None,
) -> None:
    """Report the handling with text, photos and a position (the unit's key)."""
    photos = []
    for p in photo or []:
        if not p.is_file():
            _fail("case report", ApiError(f"no such photo file {p}"))
        ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        photos.append(
            {"content_type": ctype, "data_base64": base64.b64encode(p.read_bytes()).decode()}
        )
    _act("report", case_id, url, api_key, config,
         {"text": text, "lat": lat, "lon": lon, "photos": photos})  # fmt: skip


@app.command("verify")
def verify(
    case_id: str, url: UrlOpt = None, api_key: KeyOpt = None, config: ConfigOpt = None,
    note: Annotated[str | None, typer.Option(help="a note")] = None,
) -> None:  # fmt: skip
    """Verify the handling; the case closes (the duty room's key)."""
    _act("verify", case_id, url, api_key, config, {"note": note})


@app.command("return")
def return_(
    case_id: str,
    reason: Annotated[str, typer.Option(help="why it needs more work")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Return the case for more work, with a reason (the duty room's key)."""
    _act("return", case_id, url, api_key, config, {"reason": reason})
