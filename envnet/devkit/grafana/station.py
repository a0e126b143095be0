"""The Station dashboard (envnet-station): one air station ($station), every contract parameter
with its GB 3095 limits, calibrated PM beside the raw, QC flags, readings per hour and
health."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm

from envnet.core.standards import DEFAULT_EDITION, gb3095
from envnet.devkit.grafana.builder import (
    envnet_dashboard,
    ident,
    override,
    query_variable,
    regex_match,
    series,
    stat_panel,
    steps,
    table_panel,
    target,
    timeseries_panel,
    with_limit_lines,
)
from envnet.devkit.grafana.fields import (
    air_limit_text,
    air_limit_thresholds,
    label,
    online_mappings,
    params,
    unit,
)
from envnet.devkit.grafana.health import health_panels
from envnet.store.influx.corrected import CORRECTED

CALIBRATED = ("pm25", "pm10")  # review.calibration_parameters' default (docs/review.md)


def station(edition: str = DEFAULT_EDITION) -> db.Dashboard:
    st = regex_match("station", "station")
    d = envnet_dashboard(
        "envnet-station",
        "站点 Station",
        ["air", "station"],
        "now-24h",
        "One air station: every parameter with its GB 3095 limits, QC flags and health.",
    ).with_variable(
        query_variable("station", "站点 Station", 'SHOW TAG VALUES FROM "air" WITH KEY = "station"')
    )
    d = d.with_row(db.Row("$station"))
    latest = ", ".join(f"last({ident(p)}) AS {ident(p)}" for p in params("air"))
    overrides = []
    for p in params("air"):
        props: dict[str, Any] = {"unit": unit("air", p), "displayName": label(p).split(" ", 1)[1]}
        if p in gb3095.UNITS:
            props["thresholds"] = air_limit_thresholds(p, edition).build()
        overrides.append(override(p, **props))
    d = d.with_panel(
        stat_panel(
            "最新读数 Latest readings",
            target(f'SELECT {latest} FROM "air" WHERE {st} AND $timeFilter'),
            desc="Each parameter's latest value; pollutants coloured against GB 3095 limits.",
        )
        .span(16)
        .height(5)
        .color_mode(cm.BigValueColorMode.VALUE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/.*/"))
        .thresholds(steps("text"))
        .overrides(overrides)  # type: ignore[arg-type]  # the SDK types this list invariantly
    )
    d = d.with_panel(
        stat_panel(
            "状态 Status",
            target(f'SELECT last("online") AS "online" FROM "status" WHERE {st} AND $timeFilter'),
            desc="The station's last status message (retained birth / last will).",
        )
        .time_from("30d")
        .span(4)
        .mappings(online_mappings())
    )
    d = d.with_panel(
        stat_panel(
            "固件 Firmware",
            target(
                'SELECT last("fw") AS "fw", last("reset_cause") AS "reset cause" FROM "health" '
                f"WHERE {st} AND $timeFilter"
            ),
        )
        .time_from("30d")
        .span(4)
        .thresholds(steps("text"))
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/.*/"))
    )

    d = d.with_row(db.Row("参数 Parameters"))
    for p in params("air"):
        panel = timeseries_panel(
            label(p), target(series("air", p, st), alias=label(p)), unit_id=unit("air", p)
        ).span(8)
        if p in gb3095.UNITS:
            panel = (
                with_limit_lines(panel)
                .description(air_limit_text(p, edition) + " (dashed lines).")
                .thresholds(air_limit_thresholds(p, edition))
            )
        d = d.with_panel(panel)

    d = d.with_row(db.Row("校准 Calibrated PM"))
    for p in CALIBRATED:
        corrected = (
            f'SELECT mean("value") FROM {ident(CORRECTED)} WHERE {st} AND "parameter" = \'{p}\''
            " AND $timeFilter GROUP BY time(1h) fill(none)"
        )
        d = d.with_panel(
            timeseries_panel(
                f"{label(p)}: raw and corrected",
                target(series("air", p, st, interval="1h"), alias="raw 原始"),
                target(corrected, ref="B", alias="corrected 校准后"),
                unit_id=unit("air", p),
                desc=(
                    "Hourly means: the raw readings, and the values corrected by the station's"
                    " calibration against its reference station (air_corrected, written by the"
                    " server's review worker; none while no calibration is applied)."
                ),
            ).span(12)
        )

    d = d.with_row(db.Row("质控 QC flags"))
    d = d.with_panel(
        table_panel(
            "质控标记 Flagged readings",
            target(
                f'SELECT /^flag_/ FROM "air" WHERE {st} AND $timeFilter '
                "ORDER BY time DESC LIMIT 500",
                fmt="table",
            ),
            desc=(
                "Readings with a QC flag (flag_<param>: warmup, fault, range, cal, maint; "
                "flag_all: clock), newest first. Unflagged readings are not listed."
            ),
        ).span(16)
    )
    d = d.with_panel(
        timeseries_panel(
            "每小时读数 Readings per hour",
            target(series("air", "seq", st, agg="count", interval="1h"), alias="readings"),
            desc="Readings stored per hour: 60 at the default 60 s interval; dips are gaps.",
        )
        .span(8)
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(60)
    )

    d = d.with_row(db.Row("健康 Health"))
    d = health_panels(d, st, by=(), alias=None, span=8)
    return d
