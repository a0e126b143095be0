"""`envnet review add|list|restore|calibrations|refit`: data review from the terminal
(docs/review.md).

Talks to the server's /review API with `--url`/`--api-key` (or the config's), like
`envnet stations`; the key needs the `reviewer` role (server.key_roles).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from envnet.cli.api import ApiError, fetch, send
from envnet.cli.common import ConfigOpt, KeyOpt, UrlOpt, api_target

app = typer.Typer(
    help="Data review: invalidate and restore a station's data; calibrations.",
    no_args_is_help=True,
)

REASONS = "maintenance | calibration | local interference | instrument fault | other"


def _fail(e: ApiError) -> NoReturn:
    typer.echo(f"envnet review: {e}", err=True)
    raise typer.Exit(1)


def _show(
    url: str, path: str, key: str, as_json: bool, table: Callable[[list[dict]], Table]
) -> None:
    """GET a list and print it: JSON for scripts, else a table."""
    try:
        rows = fetch(url, path, key)
    except ApiError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        Console().print(table(rows))


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="minutes") if ts else "-"


def _table(rows: list[dict]) -> Table:
    t = Table(title=f"invalidations ({len(rows)})", header_style="bold")
    for col in ("id", "station", "hours from", "hours to", "parameters", "reason", "by", "state"):
        t.add_column(col, overflow="fold")
    for r in rows:
        state = "active" if r["active"] else f"restored by {r['restored_by']}"
        t.add_row(
            str(r["id"]),
            r["station"],
            _when(r["hour_start"]),
            _when(r["hour_end"]),
            ",".join(r["parameters"]),
            r["reason"].replace("_", " "),
            r["created_by"],
            state,
        )
    return t


@app.command("add")
def add(
    station: Annotated[str, typer.Argument(help="station id")],
    start: Annotated[
        str, typer.Option("--from", help="ISO 8601 with offset, e.g. 2026-03-01T08:00+08:00")
    ],
    end: Annotated[str, typer.Option("--to", help="exclusive end, ISO 8601 with offset")],
    reason: Annotated[str, typer.Option(help=REASONS)],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="parameter (repeat); default all")
    ] = None,
    note: Annotated[str, typer.Option(help="free text for the record")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the server's answer")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Invalidate a station's data over [from, to); every figure over it is recomputed."""
    url, key = api_target(config, url, api_key)
    body = {
        "station": station,
        "start": start,
        "end": end,
        "parameters": param or ["*"],
        "reason": reason,
        "note": note,
    }
    try:
        r = send(url, "/review/invalidations", key, body, timeout=600)
    except ApiError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(r, ensure_ascii=False, indent=2))
        return
    Console().print(_table([r]))
    typer.echo(f"recompute: {json.dumps(r.get('recompute'), ensure_ascii=False)}")


@app.command("list")
def list_(
    station: Annotated[str | None, typer.Option(help="one station")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--restored", help="only active / only restored")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Invalidations, newest first (restored ones included unless --active)."""
    url, key = api_target(config, url, api_key)
    q = [f"station={station}"] if station else []
    if active is not None:
        q.append(f"active={'true' if active else 'false'}")
    _show(url, "/review/invalidations" + ("?" + "&".join(q) if q else ""), key, as_json, _table)


@app.command("restore")
def restore(
    inv_id: Annotated[int, typer.Argument(help="invalidation id (envnet review list)")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Restore an invalidation: its data counts again, figures are recomputed."""
    url, key = api_target(config, url, api_key)
    try:
        r = send(url, f"/review/invalidations/{inv_id}", key, method="DELETE", timeout=600)
    except ApiError as e:
        _fail(e)
    typer.echo(f"restored {r['id']} ({r['station']}); recompute: {json.dumps(r.get('recompute'))}")


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _calibrations_table(rows: list[dict]) -> Table:
    t = Table(title=f"calibrations ({len(rows)})", header_style="bold")
    cols = ("id", "station", "reference", "parameter", "period from", "period to", "n")
    for col in (*cols, "slope", "humidity", "offset", "R²", "RMSE", "bias", "status"):
        t.add_column(col, overflow="fold")
    for r in rows:
        status = r["status"]
        if r.get("problems"):
            status += ": " + "; ".join(r["problems"])
        t.add_row(
            str(r["id"]),
            r["station"],
            r["reference"],
            r["parameter"],
            _when(r["period_start"]),
            _when(r["period_end"]),
            str(r["n"]),
            _num(r["slope"]),
            _num(r["humidity"]),
            _num(r["offset"], 2),
            _num(r["r2"]),
            _num(r["rmse"], 2),
            _num(r["bias"], 2),
            status,
        )
    return t


@app.command("calibrations")
def calibrations(
    station: Annotated[str | None, typer.Option(help="one station")] = None,
    parameter: Annotated[str | None, typer.Option(help="one parameter, e.g. pm25")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fitted calibrations, newest first: period, n, coefficients, R², RMSE, bias, and
    applied or withdrawn (with the problems that withdrew it)."""
    url, key = api_target(config, url, api_key)
    q = [f"limit={limit}"]
    q += [f"station={station}"] if station else []
    q += [f"parameter={parameter}"] if parameter else []
    _show(url, "/review/calibrations?" + "&".join(q), key, as_json, _calibrations_table)


@app.command("refit")
def refit(
    station: Annotated[str, typer.Argument(help="the micro station")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="parameter (repeat); default every calibrated one"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the server's answer")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fit the station's calibration afresh on the recent pairs with its reference and apply
    it from now: the way back after a withdrawal, once a person has looked at the station."""
    url, key = api_target(config, url, api_key)
    body = {"parameters": param} if param else {}
    try:
        rows = send(url, f"/review/calibrations/{station}/refit", key, body, timeout=600)
    except ApiError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        Console().print(_calibrations_table(rows))
