"""`envnet users add|list|disable`: the console's users (docs/pages.md).

Runs where the state store is reachable (it opens `store.path`, or `store.url`, from the config,
like `envnet raw` opens the gateway's buffer). Every change is an audit row with the
operating-system user as actor. The password is asked for twice on the terminal, or read from
standard input with `--password-stdin` (one line) for scripts; it is never a command-line
argument.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from envnet.cli.common import ConfigOpt, load_settings
from envnet.store.audit import os_user, record_audit
from envnet.store.state import SqliteStateStore
from envnet.store.users import ROLES, UserError, UserStore

app = typer.Typer(help="Console users: add, list, disable (docs/pages.md).", no_args_is_help=True)


def _store(config: Path | None) -> SqliteStateStore:
    return SqliteStateStore(load_settings(config).store.location)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="user name: letters, digits, _ . @ -")],
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
    unit: Annotated[str | None, typer.Option(help="the unit's id (role unit only)")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Add a console user; the password is hashed with Argon2id."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    store = _store(config)
    try:
        with store.tx():
            user = UserStore(store).add(name, password, role, unit)
            record_audit(
                store,
                actor=os_user(),
                action="user.add",
                target=name,
                detail={"role": role, "unit": unit},
            )
    except UserError as e:
        typer.echo(f"envnet users add: {e}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"added {user.name} ({user.role}{', unit ' + user.unit if user.unit else ''})")


@app.command("list")
def list_users(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """List the console users."""
    store = _store(config)
    try:
        users = UserStore(store).list()
    finally:
        store.close()
    if as_json:
        for u in users:
            typer.echo(json.dumps(u.to_dict(), ensure_ascii=False))
        return
    t = Table(title=f"console users ({len(users)})")
    for col in ("name", "role", "unit", "state", "created (UTC)"):
        t.add_column(col)
    for u in users:
        created = datetime.fromtimestamp(u.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        state = "disabled" if u.disabled else "enabled"
        t.add_row(u.name, u.role, u.unit or "-", state, created)
    Console().print(t)


@app.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="user name")],
    config: ConfigOpt = None,
) -> None:
    """Disable a user: they cannot log in, and their open sessions end now."""
    store = _store(config)
    try:
        with store.tx():
            changed = UserStore(store).disable(name)
            if changed:
                record_audit(store, actor=os_user(), action="user.disable", target=name)
    except UserError as e:
        typer.echo(f"envnet users disable: {e}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"disabled {name}" if changed else f"{name} was already disabled")
