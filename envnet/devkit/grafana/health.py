"""Station health panels (battery, RSSI, buffered readings, ...), shared by the Station
dashboard (one station) and the Network health dashboard (every station, a line each)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import timeseries

from envnet.devkit.grafana.builder import series, target, timeseries_panel, with_limit_lines
from envnet.devkit.grafana.fields import battery_thresholds, rssi_thresholds


def health_panels(
    d: db.Dashboard, where: str, by: tuple[str, ...], alias: str | None, span: int
) -> db.Dashboard:
    """Add the health panels to `d`: the "health" measurement filtered by `where`, a series per
    tag in `by`. One station (no `by`) also gets free heap, uptime and sensor errors."""

    def one(field: str, title: str, unit_id: str, agg: str = "last") -> timeseries.Panel:
        return timeseries_panel(
            title,
            target(series("health", field, where, by, agg), alias=alias or field),
            unit_id=unit_id,
        ).span(span)

    d = d.with_panel(
        with_limit_lines(one("battery_v", "电池 Battery", "volt")).thresholds(battery_thresholds())
    )
    d = d.with_panel(
        with_limit_lines(one("rssi_dbm", "信号 RSSI", "dBm")).thresholds(rssi_thresholds())
    )
    d = d.with_panel(
        timeseries_panel(
            "缓存读数 Buffered / dropped readings",
            target(
                series("health", "buffered", where, by, "last"),
                alias=f"{alias or ''} buffered".strip(),
            ),
            target(
                series("health", "dropped", where, by, "last"),
                ref="B",
                alias=f"{alias or ''} dropped".strip(),
            ),
            desc=(
                "Readings held in the station's flash ring buffer while offline (buffered), and "
                "those the full buffer overwrote (dropped, since boot)."
            ),
        ).span(span)
    )
    if not by:
        d = d.with_panel(one("heap_free", "空闲内存 Free heap", "bytes", "min"))
        d = d.with_panel(one("uptime_s", "运行时间 Uptime", "s"))
        d = d.with_panel(one("errors_total", "传感器错误 Sensor errors (total)", "none"))
    return d
