"""`envnet stations` / `envnet alerts`: the server's API as terminal tables for the duty room.

Air stations are coloured by HJ 633-2012 AQI category: the server's index when the view
carries one (`indices.aqi_1h`), otherwise an indicative index from the station's last
values (marked `~`: one reading, not an hourly mean).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from envnet.cli.api import ApiError, fetch
from envnet.cli.common import ConfigOpt, KeyOpt, UrlOpt, api_target
from envnet.core.standards import hj633
from envnet.domain import registry

STATE_STYLE = {"online": "green", "stale": "yellow", "offline": "red", "never_seen": "dim"}
SEVERITY_STYLE = {"critical": "bold red", "major": "red", "warning": "yellow", "minor": "yellow"}
# Rich colours near the HJ 633 appendix colours; text stays readable on dark and light.
CATEGORY_STYLE = {
    1: "black on #00e400",
    2: "black on #ffff00",
    3: "black on #ff7e00",
    4: "white on #ff0000",
    5: "white on #99004c",
    6: "white on #7e0023",
}


def aqi_of(station: dict) -> tuple[int | None, int | None, bool]:
    """(aqi, category level, indicative?) for an air station, or (None, None, False)."""
    idx = (station.get("indices") or {}).get("aqi_1h")
    if isinstance(idx, dict) and idx.get("aqi") is not None:
        cat = idx.get("category") or {}
        level = cat.get("level") if isinstance(cat, dict) else None
        return idx["aqi"], level, False
    if station.get("kind") != "air" or not station.get("last_values"):
        return None, None, False
    values = {k: v for k, v in station["last_values"].items() if k in hj633.POLLUTANTS}
    if not values:
        return None, None, False
    try:
        res = hj633.hourly_aqi(values)
    except (ValueError, KeyError):
        return None, None, False
    return res.aqi, (res.category.level if res.category else None), True


def _age(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    s = max(0, now - ts)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def stations_table(stations: list[dict], now: float | None = None) -> Table:
    now = now or time.time()
    t = Table(title=f"envnet stations ({len(stations)})", header_style="bold")
    for col in ("station", "name", "kind", "state", "last seen", "AQI", "values", "flags"):
        t.add_column(col, overflow="fold")
    for s in stations:
        meta = s.get("meta") or {}
        name = " / ".join(x for x in registry.names(meta) if x)
        aqi, level, approx = aqi_of(s)
        aqi_txt = "-" if aqi is None else f"{'~' if approx else ''}{aqi}"
        if level:
            cat = hj633.category_by_level(level)
            aqi_txt = f"[{CATEGORY_STYLE[level]}] {aqi_txt} {cat.name_zh} [/]"
        values = " ".join(f"{k}={v:g}" for k, v in sorted((s.get("last_values") or {}).items()))
        flags = " ".join(f"{k}:{v}" for k, v in (s.get("last_flags") or {}).items())
        state = s.get("state") or "-"
        t.add_row(
            s["id"] + ("" if s.get("registered", True) else " (unregistered)"),
            name or "-",
            s.get("kind") or "-",
            f"[{STATE_STYLE.get(state, '')}]{state}[/]" if state in STATE_STYLE else state,
            _age(s.get("last_seen"), now),
            aqi_txt,
            values or "-",
            flags or "-",
        )
    return t


def alerts_table(alerts: list[dict], now: float | None = None) -> Table:
    now = now or time.time()
    t = Table(title=f"envnet alerts ({len(alerts)})", header_style="bold")
    for col in ("opened", "station", "rule", "param", "severity", "value", "limit", "state"):
        t.add_column(col, overflow="fold")
    for a in alerts:
        sev = str(a.get("severity") or "-")
        style = SEVERITY_STYLE.get(sev, "")
        t.add_row(
            _age(a.get("opened_at"), now) + " ago" if a.get("opened_at") else "-",
            str(a.get("station") or "-"),
            str(a.get("rule") or "-"),
            str(a.get("parameter") or "-"),
            f"[{style}]{sev}[/]" if style else sev,
            str(a.get("value") if a.get("value") is not None else "-"),
            str(a.get("limit") if a.get("limit") is not None else "-"),
            str(a.get("state") or "-"),
        )
    return t


def stations_command(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    kind: Annotated[str | None, typer.Option(help="air | water")] = None,
    config: ConfigOpt = None,
) -> None:
    """Table of GET /stations: state, last seen, AQI category colour, values, flags."""
    url, api_key = api_target(config, url, api_key)
    try:
        # GET /stations pages by 1,000 by default; the table wants them all (server MAX_PAGE).
        data = fetch(url, "/stations?limit=100000" + (f"&kind={kind}" if kind else ""), api_key)
    except ApiError as e:
        typer.echo(f"envnet stations: {e}", err=True)
        raise typer.Exit(1) from None
    Console().print(stations_table(data))


def alerts_command(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    state: Annotated[str | None, typer.Option(help="open | acknowledged | resolved")] = None,
    config: ConfigOpt = None,
) -> None:
    """Table of GET /alerts."""
    url, api_key = api_target(config, url, api_key)
    try:
        data = fetch(url, "/alerts" + (f"?state={state}" if state else ""), api_key)
    except ApiError as e:
        typer.echo(f"envnet alerts: {e}", err=True)
        raise typer.Exit(1) from None
    Console().print(alerts_table(data))
