"""`envnet raw`: what a station sent, byte for byte, from the gateway's message log.

The gateway commits every message as received to its message log (gateway/log.py) before
acknowledging it, and keeps it for `gateway.raw_retention_days`, so any value in InfluxDB can
be traced back to the payload it came from (a rejected message is there too; its reason is in
the buffer's dead-letter table). Messages an older release kept in the buffer's raw_messages
table are shown as well. Runs on the gateway's host: it reads the files, not the API.
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
from gateway.log import MessageLog, log_path_for


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
    if buffer:
        path, log_path = buffer, log_path_for(buffer)
    else:
        g = load_settings(config).gateway
        path, log_path = Path(g.buffer_path), log_path_for(g.buffer_path, g.log_path)
    if not path.exists() and not log_path.exists():
        typer.echo(f"envnet raw: no gateway buffer at {path}", err=True)
        raise typer.Exit(1)
    try:
        lo, hi = _when(since, 0.0), _when(until, time.time() + 86400)
    except ValueError as e:
        typer.echo(f"envnet raw: bad time: {e}", err=True)
        raise typer.Exit(2) from None
    n = limit if seq is None else 1_000_000
    # What a release before the message log kept in the buffer, then the log.
    rows = Buffer(path).raw_messages(station, lo, hi, n) if path.exists() else []
    if log_path.exists():
        rows += MessageLog(log_path).raw_messages(station, lo, hi, n)
    rows = rows[:n]
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
