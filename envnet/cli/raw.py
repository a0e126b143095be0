"""`envnet raw`: what a station sent, byte for byte, from the gateway's buffer.

The gateway keeps every accepted message as received for `gateway.raw_retention_days`, in the
same transaction that makes it durable, so any value in InfluxDB can be traced back to the
payload it came from (rejected messages are in the dead-letter table with their reason).
Runs on the gateway's host: it reads the buffer file, not the API.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from envnet.cli.common import ConfigOpt, load_settings
from gateway.buffer import Buffer


def _when(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        dt = datetime.fromisoformat(text)
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _matches_seq(payload: bytes, seq: int) -> bool:
    try:
        doc = json.loads(payload)
    except ValueError:
        return False
    items = doc if isinstance(doc, list) else [doc]
    return any(isinstance(r, dict) and r.get("seq") == seq for r in items)


def command(
    station: Annotated[str, typer.Argument(help="station id")],
    config: ConfigOpt = None,
    buffer: Annotated[
        Path | None, typer.Option(help="the gateway's buffer file (default: from the config)")
    ] = None,
    since: Annotated[str | None, typer.Option(help="received from: unix s or ISO")] = None,
    until: Annotated[str | None, typer.Option(help="received until: unix s or ISO")] = None,
    seq: Annotated[int | None, typer.Option(help="only messages holding this reading seq")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many messages")] = 100,
) -> None:
    """Print a station's messages as the gateway received them, one JSON line each."""
    path = buffer or Path(load_settings(config).gateway.buffer_path)
    if not path.exists():
        typer.echo(f"envnet raw: no gateway buffer at {path}", err=True)
        raise typer.Exit(1)
    try:
        lo, hi = _when(since, 0.0), _when(until, time.time() + 86400)
    except ValueError as e:
        typer.echo(f"envnet raw: bad time: {e}", err=True)
        raise typer.Exit(2) from None
    rows = Buffer(path).raw_messages(station, lo, hi, limit if seq is None else 1_000_000)
    if seq is not None:
        rows = [r for r in rows if _matches_seq(r["payload"], seq)][:limit]
    for r in rows:
        payload = bytes(r["payload"])
        try:
            text, encoding = payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = payload.hex(), "hex"
        out = {"received_at": r["received_at"], "topic": r["topic"], encoding: text}
        typer.echo(json.dumps(out, ensure_ascii=False))
    if not rows:
        typer.echo(f"envnet raw: nothing from {station} in that window", err=True)
