"""`envnet sim|demo|grafana`: the developer kit (envnet/devkit/) from the command line.

`demo` writes and uses its own config under --var, and `grafana` generates from code: neither
reads settings, so neither takes --config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envnet.cli.common import ConfigOpt, load_settings, setup_logging, wait_for_signal


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
    settings = load_settings(config)
    setup_logging()
    from envnet.devkit.fleet import Fleet

    fleet = Fleet(settings, workdir, interval_s=interval)
    fleet.add_generated(air, water)
    fleet.start()
    typer.echo(f"{len(fleet.stations)} stations running; logs under {workdir}/<id>/console.log")
    try:
        wait_for_signal()
    finally:
        fleet.stop()


def demo(
    var: Annotated[Path, typer.Option(help="where configs, data and logs go")] = Path("var"),
    air: Annotated[int, typer.Option(help="extra generic air stations")] = 0,
    water: Annotated[int, typer.Option(help="extra generic water probes")] = 0,
) -> None:
    """Everything on one machine: Mosquitto, InfluxDB, gateway, server, simulated stations."""
    setup_logging()
    from envnet.devkit.demo import run_demo

    run_demo(var, air=air, water=water)


def grafana(
    out: Annotated[Path, typer.Option(help="where the dashboards JSON goes")] = Path(
        "grafana/dashboards"
    ),
) -> None:
    """Regenerate the Grafana dashboards from Python (needs the dev extra)."""
    from envnet.devkit.grafana import generate

    for path in generate(out):
        typer.echo(f"wrote {path}")
