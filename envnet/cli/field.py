"""The technicians' field tools: `envnet provision|flash|console|release` (docs/field-tools.md).

The work is done in envnet/tools/; `provision` is defined here, the others by their modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envnet.cli.common import ConfigOpt, load_settings
from envnet.tools import console, flash, release
from envnet.tools.provision import DEFAULT_OUT, ProvisionError, provision

flash_command = flash.command
console_command = console.command
release_command = release.command


def provision_command(
    station_id: Annotated[str, typer.Argument(help="station id, [a-z0-9][a-z0-9-]{1,31}")],
    kind: Annotated[str, typer.Option(help="air | water")],
    site: Annotated[str, typer.Option(help="site name / address")],
    board: Annotated[str, typer.Option(help="board profile in hardware/boards/")],
    district: str | None = None,
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
            Path(settings.store.path),
            passwd_file or out / "mosquitto.passwd",
            acl_file or out / "mosquitto.acl",
            {
                "district": district,
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
