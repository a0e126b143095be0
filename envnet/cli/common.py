"""What every `envnet` command shares: the config option and its loading, logging, the wait
for Ctrl-C, and where the server is (for the commands that talk to its API).

Every command that needs settings takes `--config/-c`; with or without a file, the
ENVNET_<SECTION>_<KEY> environment overrides apply (envnet/config.py). A bad setting is one
line, `envnet: config error: <key>: <why>`, and exit code 2.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from envnet.config import ConfigError, Settings, load_config

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config; ENVNET_<SECTION>_<KEY> overrides"),
]
# The server's API: an explicit --url (or ENVNET_URL) wins over the config; so does the key.
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="ENVNET_URL",
        help="server base URL (default: the config's server.public_url, else its server.listen)",
        show_default=False,
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="ENVNET_API_KEY",
        help="API key (default: the config's server.api_key)",
        show_default=False,
    ),
]


def load_settings(config: Path | None) -> Settings:
    """The config file (if any) with ENVNET_* overrides; a bad setting exits 2 with one line."""
    try:
        return load_config(config)
    except ConfigError as e:
        typer.echo(f"envnet: config error: {e}", err=True)
        raise typer.Exit(2) from None


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # One line per HTTP request to InfluxDB would drown the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (a process command's main loop)."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass


# A server listening on every address is reached on the loopback one from its own host.
_ANY_HOST = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}


def server_url(settings: Settings) -> str:
    """The server's base URL: server.public_url, else http://<server.listen>."""
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    host, port = settings.server_host_port
    return f"http://{_ANY_HOST.get(host, host)}:{port}"


def api_target(config: Path | None, url: str | None, api_key: str | None) -> tuple[str, str]:
    """(base URL, API key) for an API command: the explicit options, else the config's."""
    settings = load_settings(config)
    key = api_key if api_key is not None else settings.server.api_key
    return (url or server_url(settings)).rstrip("/"), key
