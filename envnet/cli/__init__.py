"""The `envnet` command line: gateway, server, simulated stations and the one-machine demo."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from envnet.config import ConfigError, Settings, load_config

app = typer.Typer(
    help="envnet: environmental monitoring network (stations, gateway, server).",
    no_args_is_help=True,
    add_completion=False,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config; ENVNET_<SECTION>_<KEY> overrides"),
]


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # One line per HTTP request to InfluxDB would drown the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _settings(config: Path | None) -> Settings:
    try:
        return load_config(config)
    except ConfigError as e:
        typer.echo(f"envnet: config error: {e}", err=True)
        raise typer.Exit(2) from None


def _wait_for_signal() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass


@app.command()
def gateway(config: ConfigOpt = None, log_level: str = "INFO") -> None:
    """Subscribe to the stations, buffer durably, write to InfluxDB, keep station state."""
    settings = _settings(config)
    _setup_logging(log_level)
    from gateway.app import Gateway

    gw = Gateway(settings)
    gw.start()
    try:
        _wait_for_signal()
    finally:
        gw.stop()


@app.command()
def server(config: ConfigOpt = None, log_level: str = "info") -> None:
    """Serve the REST API (OpenAPI docs at /docs)."""
    settings = _settings(config)
    import uvicorn

    from server.app import create_app

    host, port = settings.server_host_port
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level.lower())


@app.command()
def sim(
    config: ConfigOpt = None,
    air: Annotated[int, typer.Option(help="number of air stations")] = 2,
    water: Annotated[int, typer.Option(help="number of water probes")] = 1,
    interval: Annotated[float | None, typer.Option(help="publish interval, seconds")] = None,
    workdir: Annotated[
        Path, typer.Option("--dir", help="where each station keeps its flash")
    ] = Path("var/sim"),
) -> None:
    """Run simulated stations: the real firmware on the MicroPython unix port."""
    settings = _settings(config)
    _setup_logging()
    from envnet.devkit.fleet import Fleet

    fleet = Fleet(settings, workdir, interval_s=interval)
    fleet.add_generated(air, water)
    fleet.start()
    typer.echo(f"{len(fleet.stations)} stations running; logs under {workdir}/<id>/console.log")
    try:
        _wait_for_signal()
    finally:
        fleet.stop()


@app.command()
def demo(
    var: Annotated[Path, typer.Option(help="where configs, data and logs go")] = Path("var"),
    air: Annotated[int, typer.Option(help="extra generic air stations")] = 0,
    water: Annotated[int, typer.Option(help="extra generic water probes")] = 0,
) -> None:
    """Everything on one machine: Mosquitto, InfluxDB, gateway, server, simulated stations."""
    _setup_logging()
    from envnet.devkit.demo import run_demo

    run_demo(var, air=air, water=water)


@app.command()
def grafana(
    out: Annotated[Path, typer.Option(help="where the dashboards JSON goes")] = Path(
        "grafana/dashboards"
    ),
) -> None:
    """Regenerate the Grafana dashboards from Python (needs the dev extra)."""
    from envnet.devkit.grafana import generate

    for path in generate(out):
        typer.echo(f"wrote {path}")


@app.command()
def uplink(config: ConfigOpt = None, log_level: str = "INFO") -> None:
    """Send stations' data to HJ 212-2017 platforms (real-time, minute, hour, day)."""
    settings = _settings(config)
    _setup_logging(log_level)
    if not settings.uplink.platforms:
        typer.echo("envnet: config error: uplink.platforms: no platform configured", err=True)
        raise typer.Exit(2)
    from gateway.uplink import Uplink

    up = Uplink(settings)
    up.start()
    try:
        _wait_for_signal()
    finally:
        up.stop()


from envnet.cli import raw as _raw  # noqa: E402
from envnet.cli import views as _views  # noqa: E402
from envnet.tools import console as _console  # noqa: E402
from envnet.tools import flash as _flash  # noqa: E402
from envnet.tools import provision as _provision  # noqa: E402

app.command("provision")(_provision.command)
app.command("flash")(_flash.command)
app.command("console")(_console.command)
app.command("stations")(_views.stations_command)
app.command("alerts")(_views.alerts_command)
app.command("raw")(_raw.command)

from envnet.cli import report as _reports_cli  # noqa: E402

app.add_typer(_reports_cli.app, name="report")  # envnet report daily|period|... (docs/reports.md)

from envnet.tools import release as _release  # noqa: E402

app.command("release")(_release.command)

from envnet.cli import ota as _ota_cli  # noqa: E402

app.add_typer(_ota_cli.app, name="ota")  # envnet ota start|status|stations|... (docs/ota.md)

from envnet.cli import cases as _cases_cli  # noqa: E402

app.command("cases")(_cases_cli.cases_command)  # envnet cases [--overdue] [--unit U]
app.add_typer(_cases_cli.app, name="case")  # envnet case show|sign|report|verify|return ID


@app.command("audit")
def audit_command(
    url: _views.UrlOpt = _views.DEFAULT_URL,
    api_key: _views.KeyOpt = "",
    since: Annotated[str | None, typer.Option(help="unix s or ISO 8601 (UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="unix s or ISO 8601 (UTC)")] = None,
    actor: Annotated[str | None, typer.Option(help="API key name or user")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. alert.ack, station.maint")] = None,
    target: Annotated[str | None, typer.Option(help="station, alert or webhook id")] = None,
    limit: Annotated[int, typer.Option(help="rows per page", min=1, max=5000)] = 50,
    pages: Annotated[int, typer.Option(help="pages to follow", min=1)] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Table of GET /audit: who changed what and when (docs/audit.md)."""
    from rich.console import Console

    from envnet.cli import audit

    try:
        params = {"since": audit.parse_time(since), "until": audit.parse_time(until)}
    except ValueError as e:
        typer.echo(f"envnet audit: bad time: {e}", err=True)
        raise typer.Exit(2) from None
    params |= {"actor": actor, "action": action, "target": target, "limit": limit}
    try:
        rows, more = audit.fetch_pages(url, api_key, params, pages)
    except _views.ApiError as e:
        typer.echo(f"envnet audit: {e}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
    else:
        Console().print(audit.audit_table(rows))
    if more:
        typer.echo(f"more rows: --pages {pages + 1}, or ?cursor={more}", err=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
