"""The City air dashboard (envnet-city-air): AQI (HJ 633) per station on a map and for the
city, stations over a GB 3095 limit now, PM2.5 and O3 against the Grade II limits, hourly and
daily AQI. Filter: $district (multi, All)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from envnet.core.standards import DEFAULT_EDITION, gb3095, hj633
from envnet.devkit.grafana.builder import (
    DATASOURCE,
    REVIEWED,
    envnet_dashboard,
    ident,
    override,
    query_variable,
    regex_match,
    review_variable,
    series,
    stat_panel,
    steps,
    table_panel,
    target,
    timeseries_panel,
    with_limit_lines,
)
from envnet.devkit.grafana.fields import (
    WINDOW_TEXT,
    air_limit_text,
    air_limit_thresholds,
    air_limits,
    aqi_category_mappings,
    aqi_thresholds,
    get_designation,
    label,
    unit,
)

# Shenyang city centre, the reference deployment (geomap's initial view).
MAP_CENTRE = {"lat": 41.80, "lon": 123.43, "zoom": 10}

AQI_1H = f"\"window\" = '1h' AND {REVIEWED}"


def city_air(edition: str = DEFAULT_EDITION) -> db.Dashboard:
    district = regex_match("district", "district")
    latest_aqi = (
        'SELECT last("aqi") AS "aqi" FROM "aqi" '
        f'WHERE {AQI_1H} AND {district} AND $timeFilter GROUP BY "station"'
    )
    aqi_std = get_designation("aqi", edition)
    d = (
        envnet_dashboard(
            "envnet-city-air",
            "城市空气质量 City air",
            ["air", "aqi"],
            "now-24h",
            f"AQI ({aqi_std}) per station and for the city; PM2.5 and O3 against "
            f"{get_designation('air_limits', edition)} Grade II limits.",
        )
        .with_variable(
            query_variable(
                "district",
                "区 District",
                'SHOW TAG VALUES FROM "air" WITH KEY = "district"',
                multi=True,
            )
        )
        .with_variable(review_variable())
    )

    d = d.with_row(db.Row("当前 Now"))
    d = d.with_panel(
        stat_panel(
            "全市平均AQI City mean AQI",
            target(f'SELECT mean("aqi") AS "aqi" FROM ({latest_aqi})'),
            desc="Mean of each station's latest hourly AQI (window 1h) in the last 2 hours.",
        )
        .time_from("2h")
        .decimals(0)
        .thresholds(aqi_thresholds(edition))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )
    d = d.with_panel(
        stat_panel(
            "全市空气质量类别 City category",
            target(f'SELECT mean("aqi") AS "aqi" FROM ({latest_aqi})'),
            desc=f"The category of the city mean AQI, {aqi_std} Table 2.",
        )
        .time_from("2h")
        .mappings(aqi_category_mappings(edition))
        .thresholds(aqi_thresholds(edition))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )
    d = d.with_panel(
        stat_panel(
            "AQI超100站点 Stations with AQI > 100",
            target(
                f'SELECT count("aqi") AS "stations" FROM ({latest_aqi}) '
                f'WHERE "aqi" > {hj633.EXCEEDING_IAQI}'
            ),
            desc="Stations whose latest hourly AQI is above 100: some pollutant exceeds (HJ 633).",
        )
        .time_from("2h")
        .no_value("0")
        .thresholds(steps("green", (1, "red")))
    )
    d = d.with_panel(
        stat_panel(
            "报告AQI站点 Stations reporting AQI",
            target(f'SELECT count("aqi") AS "stations" FROM ({latest_aqi})'),
            desc="Stations with an hourly AQI in the last 2 hours.",
        )
        .time_from("2h")
        .no_value("0")
        .thresholds(steps("blue"))
    )
    # GB 3095 limits per station now: one table row per station, cells red when over a limit.
    windows: dict[str, dict[str, float]] = {}
    for param in gb3095.UNITS:
        for window, lim in air_limits(param, edition):
            windows.setdefault(window, {})[param] = lim
    targets, filters, overrides = [], [], []
    for i, (window, plist) in enumerate(sorted(windows.items(), key=lambda kv: int(kv[0][:-1]))):
        cols = ", ".join(f'mean({ident(p)}) AS "{p}_{window}"' for p in plist)
        targets.append(
            target(
                f'SELECT {cols} FROM "air" WHERE time > now() - {window} AND {district} '
                'GROUP BY "station"',
                ref="ABCDEFGH"[i],
                fmt="table",
            )
        )
        for p, lim in plist.items():
            filters.append(
                {
                    "fieldName": f"{p}_{window}",
                    "config": {"id": "greater", "options": {"value": lim}},
                }
            )
            overrides.append(
                override(
                    f"{p}_{window}",
                    thresholds={
                        "mode": "absolute",
                        "steps": [
                            {"value": None, "color": "green"},
                            {"value": lim, "color": "red"},
                        ],
                    },
                    unit=unit("air", p),
                    displayName=f"{hj633.POLLUTANT_LABELS[p][1]} {WINDOW_TEXT[window]}",
                    **{"custom.cellOptions": {"type": "color-background"}},
                )
            )
    limits_table = (
        table_panel(
            "当前超标站点 Stations over a GB 3095 limit now",
            *targets,
            desc=(
                f"Running means of the last 1 h, 8 h and 24 h per station against "
                f"{get_designation('air_limits', edition)} Grade II limits; only stations "
                "over some limit are listed, the cell over it is red. Raw means: readings "
                "flagged by QC are included here, the alert engine leaves them out."
            ),
        )
        .span(24)
        .height(7)
        .decimals(1)
        .overrides(overrides)  # type: ignore[arg-type]  # the SDK types this list invariantly
        .transformations(
            [
                # Each query's time is the start of its own window: drop it, then one row
                # per station.
                dm.DataTransformerConfig(
                    id_val="organize", options={"excludeByName": {"Time": True}}
                ),
                dm.DataTransformerConfig(id_val="merge", options={}),
                dm.DataTransformerConfig(
                    id_val="filterByValue",
                    options={"filters": filters, "match": "any", "type": "include"},
                ),
            ]
        )
    )
    d = d.with_panel(aqi_map(edition, district))
    d = d.with_panel(
        table_panel(
            "AQI超100站点 Stations with AQI > 100 now",
            target(
                'SELECT "aqi", "primary", "category_zh" FROM ('
                'SELECT last("aqi") AS "aqi", last("primary") AS "primary", '
                'last("category_zh") AS "category_zh" FROM "aqi" '
                f'WHERE {AQI_1H} AND {district} AND $timeFilter GROUP BY "station", "district") '
                f'WHERE "aqi" > {hj633.EXCEEDING_IAQI} GROUP BY "station", "district"',
                fmt="table",
            ),
            desc="Latest hourly AQI above 100, with the primary pollutant(s).",
        )
        .time_from("2h")
        .height(14)
        .thresholds(aqi_thresholds(edition))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .overrides([override("aqi", **{"custom.cellOptions": {"type": "color-background"}})])
    )
    d = d.with_panel(limits_table)

    d = d.with_row(db.Row("趋势 Trends"))
    for param in ("pm25", "o3"):
        d = d.with_panel(
            with_limit_lines(
                timeseries_panel(
                    f"{label(param)} — GB 3095 Grade II",
                    target(series("air", param, district, by=("station",)), alias="$tag_station"),
                    unit_id=unit("air", param),
                    desc=air_limit_text(param, edition)
                    + " (dashed lines). The lines are 1-minute to hourly means: compare them "
                    "with the 1 h limit directly, with the longer windows as a guide.",
                )
            ).thresholds(air_limit_thresholds(param, edition))
        )
    # Hourly AQI is stamped at the hour's end; daily AQI at the (CST) day's start once the day is
    # over, so the daily panel looks back a week.
    for window, what, span in (
        ("1h", "小时AQI Hourly AQI", None),
        ("24h", "日AQI Daily AQI", "7d"),
    ):
        d = d.with_panel(
            timeseries_panel(
                f"{what}",
                target(
                    series(
                        "aqi",
                        "aqi",
                        f"\"window\" = '{window}' AND {REVIEWED} AND {district}",
                        ("station",),
                        "last",
                    ),
                    alias="$tag_station",
                ),
                desc=f"AQI (window {window}) per station; bands are the {aqi_std} categories.",
            )
            .time_from(span)  # type: ignore[arg-type]  # None: the dashboard's own range
            .decimals(0)
            .thresholds(aqi_thresholds(edition))
            .thresholds_style(
                cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.AREA)
            )
            .show_points(cm.VisibilityMode.AUTO)
        )
    return d


def aqi_map(edition: str, district: str) -> geomap.Panel:
    markers = (
        cb.MapLayerOptions()
        .type("markers")
        .name("AQI")
        .tooltip(True)
        .location(
            cb.FrameGeometrySource()
            .mode(cm.FrameGeometrySourceMode.COORDS)
            .latitude("lat")
            .longitude("lon")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "aqi", "fixed": "dark-green"},
                    "opacity": 0.9,
                    "size": {"fixed": 12, "min": 8, "max": 20},
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "text": {"field": "station", "fixed": "", "mode": "field"},
                    "textConfig": {
                        "fontSize": 11,
                        "offsetX": 0,
                        "offsetY": -14,
                        "textAlign": "center",
                        "textBaseline": "bottom",
                    },
                },
            }
        )
    )
    return (
        geomap.Panel()
        .title("各站点AQI Hourly AQI by station")
        .description(
            "Latest hourly AQI per station at its coordinates (fields lat/lon on the aqi "
            "measurement, written by the alert engine from the station registry)."
        )
        .datasource(DATASOURCE)
        .with_target(
            target(
                'SELECT last("aqi") AS "aqi", last("lat") AS "lat", last("lon") AS "lon", '
                'last("primary") AS "primary", last("category_zh") AS "category" FROM "aqi" '
                f'WHERE {AQI_1H} AND {district} AND $timeFilter GROUP BY "station"',
                fmt="table",
            )
        )
        .time_from("2h")
        .span(12)
        .height(14)
        .view(
            geomap.MapViewConfig()
            .id("coords")
            .lat(MAP_CENTRE["lat"])  # type: ignore[arg-type]  # SDK says int; Grafana takes floats
            .lon(MAP_CENTRE["lon"])  # type: ignore[arg-type]  # SDK says int; Grafana takes floats
            .zoom(MAP_CENTRE["zoom"])  # type: ignore[arg-type]  # SDK says int; Grafana takes floats
        )
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers([markers])
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .decimals(0)
        .thresholds(aqi_thresholds(edition))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )
