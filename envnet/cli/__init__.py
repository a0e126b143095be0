"""The `envnet` command line: the assembly of the command modules in this package.

Shared options and the one settings loader are in common.py; each command or group has its
module: processes (gateway, server, uplink), devkit (sim, demo, grafana), field (provision,
flash, console, release), views (stations, alerts), raw, report, ota, audit, users, cases,
review.
"""

from __future__ import annotations

import typer

from envnet.cli import (
    audit,
    cases,
    devkit,
    field,
    ota,
    processes,
    raw,
    report,
    review,
    users,
    views,
)  # fmt: skip

app = typer.Typer(
    help="envnet: environmental monitoring network (stations, gateway, server).",
    no_args_is_help=True,
    add_completion=False,
)

app.command("gateway")(processes.gateway)
app.command("server")(processes.server)
app.command("sim")(devkit.sim)
app.command("demo")(devkit.demo)
app.command("grafana")(devkit.grafana)
app.command("uplink")(processes.uplink)
app.command("provision")(field.provision_command)
app.command("flash")(field.flash_command)
app.command("console")(field.console_command)
app.command("stations")(views.stations_command)
app.command("alerts")(views.alerts_command)
app.command("raw")(raw.command)
app.add_typer(report.app, name="report")  # envnet report daily|period|... (docs/reports.md)
app.command("release")(field.release_command)
app.add_typer(ota.app, name="ota")  # envnet ota start|status|stations|... (docs/ota.md)
app.command("audit")(audit.command)
app.add_typer(users.app, name="users")  # envnet users add|list|disable (docs/pages.md)
app.command("cases")(cases.cases_command)  # envnet cases [--overdue] [--unit U]
app.add_typer(cases.app, name="case")  # envnet case show|sign|report|verify|return ID
app.add_typer(review.app, name="review")  # envnet review add|list|restore (docs/review.md)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
