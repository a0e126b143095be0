"""`envnet ota ...`: the server's /ota API from a technician's terminal (docs/ota.md).

Reads need no key; register, group, rollout, pause, resume and cancel need `--api-key`
(or ENVNET_API_KEY, or the config's server.api_key). The server is --url (or ENVNET_URL),
else the config's (envnet/cli/common.py). Every command prints what the server answered;
errors are one line.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from envnet.cli.api import ApiError, fetch, send
from envnet.cli.common import ConfigOpt, KeyOpt, UrlOpt, api_target

app = typer.Typer(help="Over-the-air updates: releases, rollouts, per-station state.")

STATE_STYLE = {
    "confirmed": "green",
    "failed": "red",
    "rolled_back": "red",
    "refused": "red",
    "timed_out": "red",
    "running": "cyan",
    "paused": "yellow",
    "completed": "green",
    "cancelled": "dim",
}


def _styled(state: str | None) -> str:
    if not state:
        return "-"
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def _run(name: str, call) -> Any:
    try:
        return call()
    except ApiError as e:
        typer.echo(f"envnet ota {name}: {e}", err=True)
        raise typer.Exit(1) from None


def _age(ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0.0, time.time() - ts)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago"


def rollout_table(r: dict[str, Any]) -> Table:
    t = Table(
        title=f"rollout {r['id']}: {r['version']} {_styled(r['state'])}"
        + (f"\n{r['reason']}" if r.get("reason") else ""),
        header_style="bold",
    )
    for col in ("stage", "selector", "stations", "confirmed", "failed", "in flight"):
        t.add_column(col)
    for s in r["stages"]:
        mark = " <" if s["index"] == r["stage"] and r["state"] in ("running", "paused") else ""
        t.add_row(
            f"{s['index']}{mark}",
            s["selector"],
            str(s["stations"]),
            str(s["confirmed"]),
            str(s["failed"]),
            str(s["in_flight"]),
        )
    return t


def stations_table(views: list[dict[str, Any]]) -> Table:
    t = Table(title=f"OTA state of {len(views)} stations", header_style="bold")
    for col in ("station", "group", "running", "target", "update", "reason", "changed"):
        t.add_column(col, overflow="fold")
    for v in views:
        t.add_row(
            v["id"],
            v.get("group") or "-",
            v.get("current_version") or "-",
            v.get("target_version") or "-",
            _styled(v.get("update_state")),
            v.get("reason") or "-",
            _age(v.get("updated_at")),
        )
    return t


@app.command("releases")
def releases(url: UrlOpt = None, config: ConfigOpt = None) -> None:
    """Bundles on the server and whether they are registered."""
    url, _ = api_target(config, url, None)
    rows = _run("releases", lambda: fetch(url, "/ota/releases"))
    t = Table(title="releases", header_style="bold")
    for col in ("version", "registered", "signature checked", "files", "bytes", "changed"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["version"],
            "yes" if r["registered"] else "no",
            {True: "yes", False: "no (no fleet key on the server)", None: "-"}[
                r["signature_checked"]
            ],
            str(r["files"] or "-"),
            str(r["bytes"] or "-"),
            "CHANGED ON DISK" if r["changed_since_registration"] else "",
        )
    Console().print(t)


@app.command("register")
def register(
    version: str, url: UrlOpt = None, api_key: KeyOpt = None, config: ConfigOpt = None
) -> None:
    """Verify a bundle on the server (signature, every file) and make it available."""
    url, api_key = api_target(config, url, api_key)
    r = _run("register", lambda: send(url, f"/ota/releases/{version}", api_key))
    typer.echo(f"registered {r['version']}: {r['files']} files, {r['bytes']} bytes")


@app.command("group")
def group(
    station: str,
    name: Annotated[str, typer.Argument(help="group name, or '-' for none")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Put a station into a rollout group (e.g. canary)."""
    url, api_key = api_target(config, url, api_key)
    body = {"group": None if name == "-" else name}
    r = _run("group", lambda: send(url, f"/ota/stations/{station}/group", api_key, body, True))
    typer.echo(f"{r['id']}: group {r['group'] or '(none)'}")


@app.command("start")
def start(
    version: str,
    stage: Annotated[
        list[str] | None,
        typer.Option(help="a stage selector, in order; default: --stage canary --stage all"),
    ] = None,
    failure_threshold: Annotated[float | None, typer.Option(min=0, max=1)] = None,
    stage_deadline_s: Annotated[float | None, typer.Option(min=1)] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Start a staged rollout of a registered release."""
    url, api_key = api_target(config, url, api_key)
    body: dict[str, Any] = {"version": version, "stages": stage or ["canary", "all"]}
    if failure_threshold is not None:
        body["failure_threshold"] = failure_threshold
    if stage_deadline_s is not None:
        body["stage_deadline_s"] = stage_deadline_s
    r = _run("start", lambda: send(url, "/ota/rollouts", api_key, body))
    Console().print(rollout_table(r))


@app.command("status")
def status(
    rollout_id: Annotated[str | None, typer.Argument(help="default: every rollout")] = None,
    url: UrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Rollouts and their stages."""
    url, _ = api_target(config, url, None)
    path = f"/ota/rollouts/{rollout_id}" if rollout_id else "/ota/rollouts"
    data = _run("status", lambda: fetch(url, path))
    rows = [data] if rollout_id else data
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
        return
    for r in rows:
        Console().print(rollout_table(r))


@app.command("stations")
def stations(
    state: Annotated[str | None, typer.Option(help="only this update state")] = None,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Per station: running version, target version, update state and reason."""
    url, _ = api_target(config, url, None)
    path = "/ota/stations" + (f"?state={state}" if state else "")
    Console().print(stations_table(_run("stations", lambda: fetch(url, path))))


def _action(name: str):
    def command(
        rollout_id: str,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        retry_failed: Annotated[
            bool, typer.Option(help="resume only: send the command again to failed stations")
        ] = False,
        reason: Annotated[str, typer.Option(help="pause only: why")] = "paused by hand",
        config: ConfigOpt = None,
    ) -> None:
        url, api_key = api_target(config, url, api_key)
        body: dict[str, Any] | None = None
        if name == "resume":
            body = {"retry_failed": retry_failed}
        elif name == "pause":
            body = {"reason": reason}
        r = _run(name, lambda: send(url, f"/ota/rollouts/{rollout_id}/{name}", api_key, body))
        Console().print(rollout_table(r))

    command.__doc__ = {
        "pause": "Stop sending the update (stations already updating finish).",
        "resume": "Go on after a pause (the stage's failures accepted, or --retry-failed).",
        "cancel": "End the rollout for good.",
    }[name]
    return command


for _name in ("pause", "resume", "cancel"):
    app.command(_name)(_action(_name))
