"""`envnet gateway|server|uplink`: the long-running processes, each until SIGINT/SIGTERM."""

from __future__ import annotations

import typer

from envnet.cli.common import ConfigOpt, load_settings, setup_logging, wait_for_signal


def gateway(config: ConfigOpt = None, log_level: str = "INFO") -> None:
    """Subscribe to the stations, buffer durably, write to InfluxDB, keep station state."""
    settings = load_settings(config)
    setup_logging(log_level)
    from gateway.app import Gateway

    gw = Gateway(settings)
    gw.start()
    try:
        wait_for_signal()
    finally:
        gw.stop()


def server(config: ConfigOpt = None, log_level: str = "info") -> None:
    """Serve the REST API (OpenAPI docs at /docs)."""
    settings = load_settings(config)
    import uvicorn

    from server.app import create_app

    host, port = settings.server_host_port
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level.lower())


def uplink(config: ConfigOpt = None, log_level: str = "INFO") -> None:
    """Send stations' data to HJ 212-2017 platforms (real-time, minute, hour, day)."""
    settings = load_settings(config)
    setup_logging(log_level)
    if not settings.uplink.platforms:
        typer.echo("envnet: config error: uplink.platforms: no platform configured", err=True)
        raise typer.Exit(2)
    from gateway.uplink import Uplink

    up = Uplink(settings)
    up.start()
    try:
        wait_for_signal()
    finally:
        up.stop()
