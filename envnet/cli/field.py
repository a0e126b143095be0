"""The technicians' field tools: `envnet provision|flash|console|release` (docs/field-tools.md).

The work is done in envnet/tools/; `provision` is defined here, the others by their modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from envnet.cli.common import ConfigOpt, load_settings
from envnet.domain import station_actions
from envnet.domain.ota import manifest
from envnet.store import audit
from envnet.tools import console, flash, release
from envnet.tools.provision import DEFAULT_OUT, ProvisionError, provision

flash_command = flash.command


def provision_command(
    station_id: Annotated[str, typer.Argument(help="station id, [a-z0-9][a-z0-9-]{1,31}")],
    kind: Annotated[str, typer.Option(help="air | water")],
    site: Annotated[str, typer.Option(help="site name / address")],
    board: Annotated[str, typer.Option(help="board profile in hardware/boards/")],
    district: str | None = None,
    cell: Annotated[
        str | None, typer.Option(help="grid cell (street / township) whose unit answers for it")
    ] = None,
    river: str | None = None,
    section: str | None = None,
    target_class: Annotated[str | None, typer.Option(help="water target class I..V")] = None,
    station_class: Annotated[
        str | None, typer.Option("--class", help="micro | city | national | section")
    ] = None,
    lat: float | None = None,
    lon: float | None = None,
    name_zh: str | None = None,
    name_en: str | None = None,
    drinking_water: Annotated[bool, typer.Option(help="drinking-water source")] = False,
    out: Annotated[Path, typer.Option("--out", help="provisioned stations dir")] = DEFAULT_OUT,
    passwd_file: Annotated[Path | None, typer.Option(help="Mosquitto password file")] = None,
    acl_file: Annotated[Path | None, typer.Option(help="Mosquitto ACL file")] = None,
    config: ConfigOpt = None,
    actor: Annotated[
        str | None, typer.Option(help="who provisions, for the audit trail (default: OS user)")
    ] = None,
    fleet_key_file: Annotated[
        Path | None,
        typer.Option(help="OTA fleet key file (hex); default: the config's ota.fleet_key"),
    ] = None,
    fleet_key_id: Annotated[str, typer.Option(help="id of the OTA fleet key")] = "fleet-1",
) -> None:
    """Provision a station: config.json, MQTT credentials + ACL, registry entry."""
    from envnet.domain.ota.manifest import BundleError, read_key_file

    settings = load_settings(config)
    try:
        try:
            fleet_key = read_key_file(fleet_key_file).hex() if fleet_key_file else ""
        except BundleError as e:
            raise ProvisionError(str(e)) from None
        fleet_key = fleet_key or settings.ota.fleet_key
        cfg = provision(
            station_id,
            kind,
            site,
            board,
            out,
            settings.mqtt.url,
            settings.store.location,
            passwd_file or out / "mosquitto.passwd",
            acl_file or out / "mosquitto.acl",
            {
                "district": district,
                "cell": cell,
                "river": river,
                "section": section,
                "target_class": target_class,
                "class": station_class,
                "lat": lat,
                "lon": lon,
                "name": name_zh,
                "name_en": name_en,
                "drinking_water": drinking_water or None,
            },
            actor=actor,
            ota_key={"key": fleet_key, "key_id": fleet_key_id} if fleet_key else None,
            ca_file=Path(settings.mqtt.ca_file) if settings.mqtt.ca_file else None,
        )
    except ProvisionError as e:
        typer.echo(f"envnet provision: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"provisioned {station_id} ({kind}, board {board}): {out / station_id / 'config.json'}; "
        f"MQTT user {cfg['mqtt']['user']} -> {passwd_file or out / 'mosquitto.passwd'}; "
        f"flash with: envnet flash PORT --station {station_id} --dir {out}"
    )


def console_command(
    port: Annotated[str, typer.Argument(help="serial port, e.g. /dev/ttyUSB0")],
    words: Annotated[
        list[str] | None, typer.Argument(help="one-shot command, e.g. status, readings")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for an answer")] = 5.0,
    user: Annotated[
        str | None, typer.Option(help="who is at the console, for the audit trail (OS user)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Station serial console: interactive, or one command (status, readings, config, log...).

    Changes (config set, calibrate, maint on|off, reboot) are recorded in the audit trail of
    the state store (store.path or store.url) as --user."""
    to = None
    if not words or station_actions.command_request(words) is not None:  # reads need no state store
        to = console.AuditTo(load_settings(config).store.location, user or audit.os_user())
    try:
        if not words:
            console.interactive(port, audit_to=to)
            return
        res = console.one_shot(port, words, timeout, audit_to=to)
    except console.NotRecorded as e:
        typer.echo(json.dumps(e.answer, ensure_ascii=False) if as_json else console.human(e.answer))
        typer.echo(f"envnet console: {e}", err=True)
        raise typer.Exit(4) from None
    except console.ConsoleError as e:
        typer.echo(f"envnet console: {e}", err=True)
        raise typer.Exit(3) from None
    typer.echo(json.dumps(res, ensure_ascii=False) if as_json else console.human(res))
    if not res.get("ok"):
        raise typer.Exit(1)


def release_command(
    version: Annotated[str, typer.Option("--version", help="release version, e.g. 1.3.0")],
    fleet_key_file: Annotated[
        Path, typer.Option("--fleet-key-file", help="file holding the fleet key as hex")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="releases directory (default: the config's ota.releases_dir)"),
    ] = None,
    key_id: Annotated[
        str, typer.Option("--key-id", help="id of the fleet key")
    ] = manifest.DEFAULT_KEY_ID,
    confirm_deadline_s: Annotated[
        int, typer.Option("--confirm-deadline-s", help="seconds a new version has to confirm")
    ] = 300,
    config: ConfigOpt = None,
) -> None:
    """Build a signed OTA firmware bundle: mpy-cross the device files, manifest, signature."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    if out is None:
        out = Path(load_settings(config).ota.releases_dir)
    try:
        key = manifest.read_key_file(fleet_key_file)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()
        ) as prog:
            tasks: dict[str, Any] = {}

            def step(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = prog.add_task(name, total=total)
                prog.update(tasks[name], completed=done)

            path = release.build_bundle(
                version, key, out, key_id, confirm_deadline_s, progress=step
            )
    except manifest.BundleError as e:
        typer.echo(f"envnet release: {e}", err=True)
        raise typer.Exit(2) from None
    m = json.loads((path / "manifest.json").read_text())
    total = sum(f["size"] for f in m["files"])
    typer.echo(f"{path}: {len(m['files'])} files, {total} bytes, signed with {key_id}")
