"""`envnet report daily|period|targets|completeness`: the reports in the terminal.

Computed directly from InfluxDB and the state store named by the config (the same as the
server's), so an analyst needs no running server. `--format table` (default) prints rich
tables, `json` the whole report, `csv` one of its tables (`--table`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from envnet.cli.common import ConfigOpt, load_settings
from envnet.domain.reports import export
from envnet.store.influx.reports import ReportQueryError

app = typer.Typer(help="The bureau's reports (docs/reports.md).", no_args_is_help=True)

FormatOpt = Annotated[
    Literal["table", "json", "csv"], typer.Option("--format", "-f", help="table | json | csv")
]
TableOpt = Annotated[str | None, typer.Option(help="CSV table (default: the report's first)")]
CATEGORY_STYLE = {1: "green", 2: "yellow", 3: "dark_orange", 4: "red", 5: "magenta", 6: "bold red"}


def _run(config: Path | None, make: Callable[[Any], dict[str, Any]]) -> tuple[Any, dict]:
    from envnet.store.state import SqliteStateStore
    from server.reports.service import ReportRangeError, Reports

    settings = load_settings(config)
    reports = Reports(settings, SqliteStateStore(settings.store.location))
    try:
        return reports, make(reports)
    except (ReportRangeError, ReportQueryError) as e:
        typer.echo(f"envnet: {e}", err=True)
        raise typer.Exit(1) from None


def _emit(report: dict[str, Any], fmt: str, table: str | None, render: Callable) -> None:
    if fmt == "json":
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        try:
            sys.stdout.write(export.to_csv(report, table))
        except KeyError as e:
            typer.echo(f"envnet: {e.args[0]}", err=True)
            raise typer.Exit(2) from None
    else:
        console = Console()
        for t in render(report):
            console.print(t)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "-"
    return str(v)


def _aqi_cell(e: dict[str, Any]) -> str:
    if e["aqi"] is None:
        return "-"
    style = CATEGORY_STYLE.get(e["level"], "")
    return f"[{style}]{e['aqi']} {e['category_zh']}[/]"


def daily_tables(report: dict[str, Any]) -> list[Table]:
    t = Table(title=f"daily AQI {report['date']} ({report['timezone']})", header_style="bold")
    for col in ("scope", "id", "district", "AQI", "primary", "valid", "PM2.5", "PM10", "O3 8h"):
        t.add_column(col)
    for e in [report["city"], *report["districts"], *report["stations"]]:
        c = e["concentrations"]
        t.add_row(
            e["scope"],
            e["id"],
            _cell(e["district"]),
            _aqi_cell(e),
            _cell(e["primary"]),
            "yes" if e["valid"] else f"no ({_cell(e['missing'])})",
            _cell(c.get("pm25")),
            _cell(c.get("pm10")),
            _cell(c.get("o3_8h")),
        )
    return [t, _water_day_table(report["water"])] if report["water"] else [t]


def _water_day_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="river sections", header_style="bold")
    for col in ("section", "name", "class", "target", "meets", "worst"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["id"],
            _cell(r["name"]),
            _cell(r["class_label"]),
            _cell(r["target_class"]),
            _cell(r["meets_target"]),
            _cell(r["worst"]),
        )
    return t


def period_tables(report: dict[str, Any]) -> list[Table]:
    title = f"{report['group']} report {report['from']} .. {report['to']}"
    t = Table(title=title, header_style="bold")
    for col in ("rank", "id", "valid d", "good d", "good %", "PM2.5", "PM10", "NO2", "SO2"):
        t.add_column(col)
    for col in ("CO p95", "O3 p90", "composite"):
        t.add_column(col)
    for e in report["air"]:
        s = e["statistics"]
        t.add_row(
            _cell(e["rank"]),
            e["id"],
            str(e["days_valid"]),
            str(e["days_good"]),
            _cell(e["good_days_ratio"]),
            *(_cell(s[k]) for k in ("pm25", "pm10", "no2", "so2", "co", "o3_8h")),
            _cell(e["composite_index"]),
        )
    w = report["water"]
    wt = Table(
        title=f"sections: {_cell(w['share_meeting_target'])} % meet target, "
        f"worse than V: {_cell(w['worse_than_v'])}",
        header_style="bold",
    )
    for col in ("section", "class", "target", "meets", "months"):
        wt.add_column(col)
    for s in w["sections"]:
        months = " ".join(f"{m['month']}:{_cell(m['class_label'])}" for m in s["months"])
        wt.add_row(
            s["id"],
            _cell(s["class_label"]),
            _cell(s["target_label"]),
            _cell(s["meets_target"]),
            months,
        )
    return [t, wt]


def targets_tables(report: dict[str, Any]) -> list[Table]:
    t = Table(title=f"plan targets {report['year']} through {report['through']}")
    for col in ("figure", "target", "year to date", "on track", "rest of year"):
        t.add_column(col)
    p, g = report["pm25"], report["good_days"]
    t.add_row(
        "PM2.5 annual mean (ug/m3)",
        _cell(p["target"]),
        _cell(p["ytd_mean"]),
        _cell(p["on_track"]),
        f"mean <= {_cell(p['required_mean_rest_of_year'])}",
    )
    t.add_row(
        "good days (%)",
        _cell(g["target"]),
        _cell(g["ytd_ratio"]),
        _cell(g["on_track"]),
        f"{_cell(g['good_days_needed_rest_of_year'])} more good days",
    )
    w = report["water"]
    t.add_row("sections meeting target (%)", "100", _cell(w["share_meeting_target"]), "-", "-")
    return [t]


def completeness_tables(report: dict[str, Any]) -> list[Table]:
    t = Table(title=f"data completeness {report['from']} .. {report['to']}")
    for col in ("station", "month", "valid h", "expected h", "%", "days not counted"):
        t.add_column(col)
    for col in ("p50 latency s", "p95 latency s"):
        t.add_column(col)
    for st in report["stations"]:
        for m in st["months"]:
            t.add_row(
                st["id"],
                m["month"],
                str(m["valid_hours"]),
                str(m["expected_hours"]),
                _cell(m["completeness"]),
                _cell(m["days_not_counted"]),
                _cell(m["latency_p50_s"]),
                _cell(m["latency_p95_s"]),
            )
    return [t]


@app.command()
def daily(
    day: Annotated[str, typer.Option("--date", help="local day YYYY-MM-DD")],
    config: ConfigOpt = None,
    fmt: FormatOpt = "table",
    table: TableOpt = None,
    write: Annotated[bool, typer.Option(help="also write the bulletin to InfluxDB")] = False,
) -> None:
    """Daily AQI bulletin per station, district and the city."""
    d = _date(day)
    reports, report = _run(config, lambda r: r.daily(d))
    if write:
        lines = reports.bulletin_lines(report)
        reports.db.write(lines)
        typer.echo(f"wrote {len(lines)} bulletin points", err=True)
    _emit(report, fmt, table, daily_tables)


@app.command()
def period(
    first: Annotated[str, typer.Option("--from", help="first day YYYY-MM-DD")],
    last: Annotated[str, typer.Option("--to", help="last day YYYY-MM-DD")],
    group: Annotated[Literal["station", "district", "city"], typer.Option()] = "district",
    config: ConfigOpt = None,
    fmt: FormatOpt = "table",
    table: TableOpt = None,
) -> None:
    """Good-days ratio, statistics, ranking, river sections over a period."""
    a, b = _date(first), _date(last)
    _, report = _run(config, lambda r: r.period(a, b, group))
    _emit(report, fmt, table, period_tables)


@app.command()
def targets(
    year: Annotated[int, typer.Option(help="plan year")],
    config: ConfigOpt = None,
    fmt: FormatOpt = "table",
    table: TableOpt = None,
) -> None:
    """Year-to-date progress against the plan targets."""
    _, report = _run(config, lambda r: r.targets(year))
    _emit(report, fmt, table, targets_tables)


@app.command()
def completeness(
    first: Annotated[str, typer.Option("--from")],
    last: Annotated[str, typer.Option("--to")],
    config: ConfigOpt = None,
    fmt: FormatOpt = "table",
    table: TableOpt = None,
) -> None:
    """Valid / expected hours per station per day and month, and latency."""
    a, b = _date(first), _date(last)
    _, report = _run(config, lambda r: r.completeness(a, b))
    _emit(report, fmt, table, completeness_tables)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        typer.echo(f"envnet: not a date YYYY-MM-DD: {text!r}", err=True)
        raise typer.Exit(2) from None
