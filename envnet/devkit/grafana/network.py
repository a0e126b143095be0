"""The Network health dashboard (envnet-network): stations online and offline, readings
buffered on stations, last seen, latest health, and every station's health over time."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import statetimeline, text
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import text as tm

from envnet.core.standards import DEFAULT_EDITION
from envnet.devkit.grafana.builder import (
    DATASOURCE,
    envnet_dashboard,
    override,
    series,
    stat_panel,
    steps,
    table_panel,
    target,
    timeseries_panel,
)
from envnet.devkit.grafana.fields import battery_thresholds, online_mappings, rssi_thresholds
from envnet.devkit.grafana.health import health_panels


def network(edition: str = DEFAULT_EDITION) -> db.Dashboard:
    last_status = (
        'SELECT last("online") AS "online" FROM "status" WHERE $timeFilter GROUP BY "station"'
    )
    d = envnet_dashboard(
        "envnet-network",
        "网络健康 Network health",
        ["health", "network"],
        "now-24h",
        "Stations online and offline, battery, signal, buffered readings, last seen.",
    )
    d = d.with_row(db.Row("站点 Stations"))
    d = d.with_panel(
        stat_panel(
            "在线 Online",
            target(f'SELECT sum("online") AS "online" FROM ({last_status})'),
            desc="Stations whose last status (30 days) is online.",
        )
        .time_from("30d")
        .thresholds(steps("green"))
    )
    d = d.with_panel(
        stat_panel(
            "离线 Offline",
            target(f'SELECT count("online") - sum("online") AS "offline" FROM ({last_status})'),
            desc="Stations whose last status is offline (the broker sent their last will).",
        )
        .time_from("30d")
        .thresholds(steps("green", (1, "red")))
    )
    d = d.with_panel(
        stat_panel(
            "站点 Stations",
            target(f'SELECT count("online") AS "stations" FROM ({last_status})'),
            desc="Stations that sent a status in the last 30 days.",
        )
        .time_from("30d")
        .thresholds(steps("blue"))
    )
    d = d.with_panel(
        stat_panel(
            "站点缓存 Readings buffered on stations",
            target(
                'SELECT sum("buffered") AS "buffered" FROM (SELECT last("buffered") AS "buffered" '
                'FROM "health" WHERE $timeFilter GROUP BY "station")'
            ),
            desc="Sum of every station's last reported flash buffer: readings waiting to be sent.",
        )
        .time_from("2h")
        .thresholds(steps("green", (1, "orange")))
    )
    d = d.with_panel(
        table_panel(
            "最后上报 Last reading per station",
            target(
                'SELECT last("seq") AS "seq" FROM "air", "water" WHERE $timeFilter '
                'GROUP BY "station"',
                fmt="table",
            ),
            desc="Time of each station's newest stored reading (air or water) and its seq.",
        )
        .time_from("30d")
        .sort_by([cb.TableSortByFieldState().display_name("Time").desc(False)])
        .override_by_name(
            "Time",
            [
                dm.DynamicConfigValue(id_val="unit", value="dateTimeFromNow"),
                dm.DynamicConfigValue(id_val="displayName", value="last seen"),
            ],
        )
    )
    d = d.with_panel(
        table_panel(
            "最新健康 Latest health per station",
            target(
                'SELECT last("battery_v") AS "battery_v", last("rssi_dbm") AS "rssi_dbm", '
                'last("buffered") AS "buffered", last("dropped") AS "dropped", '
                'last("errors_total") AS "errors", last("fw") AS "fw" FROM "health" '
                'WHERE $timeFilter GROUP BY "station", "kind"',
                fmt="table",
            ),
            desc="Each station's latest health message.",
        )
        .time_from("30d")
        .transformations(
            [dm.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})]
        )
        .overrides(
            [
                override(
                    "battery_v",
                    unit="volt",
                    thresholds=battery_thresholds().build().to_json(),
                    **{"custom.cellOptions": {"type": "color-text"}},
                ),
                override(
                    "rssi_dbm",
                    unit="dBm",
                    thresholds=rssi_thresholds().build().to_json(),
                    **{"custom.cellOptions": {"type": "color-text"}},
                ),
            ]
        )
    )
    d = d.with_panel(
        text.Panel()
        .title("网关积压 Gateway backlog")
        .span(24)
        .height(3)
        .mode(tm.TextMode.MARKDOWN)
        .content(
            "The gateway backlog - points in the gateway's durable buffer not yet written to "
            "InfluxDB - is the Prometheus gauge **`envnet_buffer_pending`** on the server's "
            "`/metrics`, not in InfluxDB: it matters most exactly when InfluxDB is down. Scrape "
            "`/metrics` with Prometheus and add a panel over it; see docs/grafana.md."
        )
    )
    d = d.with_panel(
        statetimeline.Panel()
        .title("在线状态 Online / offline")
        .datasource(DATASOURCE)
        .with_target(
            target(
                series("status", "online", by=("station",), agg="last", fill="previous"),
                alias="$tag_station",
            )
        )
        .span(24)
        .height(8)
        .mappings(online_mappings())
        .thresholds(steps("red", (1, "green")))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .merge_values(True)
        .show_value(cm.VisibilityMode.NEVER)
        .line_width(0)
        .fill_opacity(70)
    )
    d = d.with_row(db.Row("健康 Health"))
    d = health_panels(d, "", by=("station",), alias="$tag_station", span=8)
    d = d.with_panel(
        timeseries_panel(
            "每小时读数 Readings per hour",
            target(
                series("air", "seq", by=("station",), agg="count", interval="1h"),
                alias="$tag_station",
            ),
            target(
                series("water", "seq", by=("station",), agg="count", interval="1h"),
                ref="B",
                alias="$tag_station",
            ),
            desc="Readings stored per hour per station (air 60, water 12 at default intervals).",
        ).span(24)
    )
    return d
