"""`envnet cases` and `envnet case show|sign|report|verify|return ID`: the supervision loop's
API (docs/cases.md) from a terminal, with the key's role deciding what is allowed."""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from envnet.cli.views import DEFAULT_URL, ApiError, KeyOpt, UrlOpt, fetch

app = typer.Typer(help="One case: show, sign, report, verify, return.", no_args_is_help=True)
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config: the server URL and API key")
]


def _target(url: str, api_key: str, config: Path | None) -> tuple[str, str]:
    """--url/--api-key, or the server and admin key of --config when those are not given."""
    if config is not None and (url == DEFAULT_URL or not api_key):
        from envnet.config import ConfigError, load_config

        try:
            s = load_config(config)
        except ConfigError as e:
            raise ApiError(f"config error: {e}") from None
        if url == DEFAULT_URL:
            url = s.server.public_url or f"http://{s.server.listen}"
        api_key = api_key or s.server.api_key
    return url, api_key


def _post(url: str, path: str, api_key: str, body: dict[str, Any] | None) -> Any:
    try:
        r = httpx.post(url.rstrip("/") + path, json=body,
                       headers={"Authorization": f"Bearer {api_key}"}, timeout=30)  # fmt: skip
    except httpx.HTTPError as e:
        raise ApiError(f"cannot reach the envnet server at {url}: {e}") from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise ApiError(f"HTTP {r.status_code}: {str(detail)[:300]}")
    return r.json()


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
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = "",
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
        url, api_key = _target(url, api_key, config)
        rows = fetch(url, f"/cases?{q}", api_key)
    except ApiError as e:
        _fail("cases", e)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
    else:
        Console().print(cases_table(rows))


@app.command("show")
def show(case_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = "", config: ConfigOpt = None):
    """The case with its slips, history, linked alerts and evidence (JSON)."""
    try:
        url, api_key = _target(url, api_key, config)
        typer.echo(
            json.dumps(fetch(url, f"/cases/{case_id}", api_key), ensure_ascii=False, indent=1)
        )
    except ApiError as e:
        _fail("case show", e)


def _act(action: str, case_id: str, url: str, api_key: str, config: Path | None, body: Any) -> None:
    try:
        url, api_key = _target(url, api_key, config)
        c = _post(url, f"/cases/{case_id}/{action}", api_key, body)
    except ApiError as e:
        _fail(f"case {action}", e)
    typer.echo(f"case {c['id']}: {c['state']} (unit {c['unit']})")


@app.command("sign")
def sign(
    case_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = "", config: ConfigOpt = None,
    note: Annotated[str | None, typer.Option(help="a note")] = None,
) -> None:  # fmt: skip
    """Sign the case (the responsible unit's key)."""
    _act("sign", case_id, url, api_key, config, {"note": note})


@app.command("report")
def report(
    case_id: str,
    text: Annotated[str, typer.Option(help="what was done")],
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = "",
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
    case_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = "", config: ConfigOpt = None,
    note: Annotated[str | None, typer.Option(help="a note")] = None,
) -> None:  # fmt: skip
    """Verify the handling; the case closes (the duty room's key)."""
    _act("verify", case_id, url, api_key, config, {"note": note})


@app.command("return")
def return_(
    case_id: str,
    reason: Annotated[str, typer.Option(help="why it needs more work")],
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = "",
    config: ConfigOpt = None,
) -> None:
    """Return the case for more work, with a reason (the duty room's key)."""
    _act("return", case_id, url, api_key, config, {"reason": reason})
