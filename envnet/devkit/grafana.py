"""Grafana dashboards for envnet, generated from Python with grafana-foundation-sdk.

Four dashboards over InfluxDB (InfluxQL, see docs/grafana.md): City air, Station, Rivers and
Network health. `generate(out_dir)` writes them as JSON files for Grafana's file provisioning;
`python -m envnet.devkit.grafana` regenerates grafana/dashboards/ in the repo (`--check`
only compares).

Limits drawn as thresholds come from the standards modules, never from numbers written here:
GB 3095-2012 air limits (envnet.core.standards.gb3095), HJ 633-2012 AQI categories and colours
(envnet.core.standards.hj633), GB 3838-2002 water classes (envnet.core.standards.gb3838).
Units and the parameter lists come from the MQTT contract (envnet/core/contract/v1.json).

The module also knows how Grafana expands an InfluxQL query (`interpolate`), so the test can run
every panel's query against a real InfluxDB exactly as Grafana would send it, and it validates
the dashboards twice: a round trip through the SDK's dashboard model (generated from Grafana's
own schema; catches unknown or misspelt keys) and the JSON Schema shipped in
grafana/schema/dashboard.schema.json (required fields, InfluxQL targets, grid bounds).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    from grafana_foundation_sdk.builders import common as cb
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.builders import geomap, stat, statetimeline, table, text, timeseries
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import runtime as cogruntime
    from grafana_foundation_sdk.cog import variants as cogvariants
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import common as cm
    from grafana_foundation_sdk.models import dashboard as dm
    from grafana_foundation_sdk.models import geomap as gm
    from grafana_foundation_sdk.models import text as tm
except ImportError as e:  # a dev dependency: the gateway and server do not need it
    raise ImportError(
        "envnet.devkit.grafana needs grafana-foundation-sdk (pip install -e '.[dev]')"
    ) from e

from envnet.core import contract
from envnet.core.standards import DEFAULT_EDITION, gb3095, gb3838, hj633

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
SCHEMA_PATH = REPO / "grafana" / "schema" / "dashboard.schema.json"

# The provisioned datasource (grafana/provisioning/datasources/envnet.yaml).
DATASOURCE_UID = "envnet-influxdb"
DATASOURCE = dm.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)

GRADE = 2  # GB 3095 Grade II: residential, commercial and industrial areas (the city)

# Display levels that are not in any standard. TODO(envnet/domain/alerts/rules.py): read the battery
# levels from AlertSettings (battery_low_v, battery_critical_v; same values today) once the alert
# engine is committed; the weak-signal level is a display hint only, no rule uses RSSI.
DISPLAY_LEVELS = {"battery_v_critical": 3.2, "battery_v_low": 3.4, "rssi_dbm_weak": -85.0}

# Shenyang city centre, the reference deployment (geomap's initial view).
MAP_CENTRE = {"lat": 41.80, "lon": 123.43, "zoom": 10}

# Contract units -> Grafana unit ids ("suffix:" units render the text as written).
UNIT_IDS = {
    "ug/m3": "suffix:µg/m³",
    "mg/m3": "suffix:mg/m³",
    "degC": "celsius",
    "%": "humidity",
    "hPa": "pressurehpa",
    "index": "none",
    "dB(A)": "suffix:dB(A)",
    "pH": "none",
    "mg/L": "suffix:mg/L",
    "uS/cm": "suffix:µS/cm",
    "NTU": "suffix:NTU",
    "mV": "mvolt",
}

# Labels for parameters the standards modules do not name (Chinese first, English beside it).
_OTHER_LABELS = {
    "t": ("温度", "temperature"),
    "rh": ("相对湿度", "relative humidity"),
    "p": ("气压", "pressure"),
    "voc": ("VOC指数", "VOC index"),
    "noise": ("噪声", "noise"),
    "ec": ("电导率", "conductivity"),
    "turb": ("浊度", "turbidity"),
    "orp": ("氧化还原电位", "ORP"),
}

# Display colours for GB 3838 classes 1..6 (not from the standard; best blue, worst red).
_CLASS_COLOURS = ("#1f78c1", "#37872d", "#73bf69", "#fade2a", "#ff9830", "#c4162a")

_WINDOW_TEXT = {"1h": "1 h", "8h": "8 h", "24h": "24 h"}


def label(param: str) -> str:
    zh, en = (
        hj633.POLLUTANT_LABELS.get(param)
        or gb3838.PARAM_LABELS.get(param)
        or _OTHER_LABELS.get(param)
        or (param, param)
    )
    return f"{zh} {en}"


def unit(kind: str, param: str) -> str:
    spec = contract.param_spec(kind, param) or {}
    return UNIT_IDS.get(spec.get("unit", ""), "none")


def params(kind: str) -> list[str]:
    return list(contract.SPEC["kinds"][kind]["params"])


# --- InfluxQL queries -------------------------------------------------------------------------


class InfluxQuery(cogvariants.Dataquery):
    """A raw InfluxQL target. The SDK has no InfluxDB query type, so this is one in its style."""

    def __init__(
        self,
        ref_id: str = "A",
        query: str = "",
        result_format: str = "time_series",
        alias: str | None = None,
        datasource: dict | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.datasource = datasource or DATASOURCE.to_json()

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": self.datasource,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InfluxQuery:
        return cls(
            data.get("refId", "A"),
            data.get("query", ""),
            data.get("resultFormat", "time_series"),
            data.get("alias"),
            data.get("datasource"),
        )


class _Q(cogbuilder.Builder[InfluxQuery]):
    def __init__(self, query: InfluxQuery) -> None:
        self._internal = query

    def build(self) -> InfluxQuery:
        return self._internal


def q(query: str, ref: str = "A", fmt: str = "time_series", alias: str | None = None) -> _Q:
    return _Q(InfluxQuery(ref, " ".join(query.split()), fmt, alias))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def series(
    measurement: str,
    field: str,
    where: str = "",
    by: tuple[str, ...] = (),
    agg: str = "mean",
    fill: str = "none",
    interval: str = "$__interval",
) -> str:
    """agg(field) per interval (and per tag): the usual timeseries query."""
    cond = f"{where} AND $timeFilter" if where else "$timeFilter"
    group = ", ".join([f"time({interval})", *(_ident(t) for t in by)])
    return (
        f"SELECT {agg}({_ident(field)}) AS {_ident(field)} FROM {_ident(measurement)} "
        f"WHERE {cond} GROUP BY {group} fill({fill})"
    )


def regex_match(tag: str, var: str) -> str:
    return f"{_ident(tag)} =~ /^${var}$/"


# --- Field config helpers ---------------------------------------------------------------------


def steps(base: str, *levels: tuple[float, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(
            [dm.Threshold(value=None, color=base)]
            + [dm.Threshold(value=v, color=c) for v, c in levels]
        )
    )


def aqi_categories(edition: str) -> tuple[hj633.Category, ...]:
    return hj633.CATEGORIES[get_designation("aqi", edition)]


def aqi_thresholds(edition: str) -> db.ThresholdsConfig:
    cats = aqi_categories(edition)
    return steps(cats[0].rgb, *((c.aqi_min, c.rgb) for c in cats[1:]))


def aqi_category_mappings(edition: str) -> list[dm.ValueMapping]:
    out: list[dm.ValueMapping] = []
    for n, c in enumerate(aqi_categories(edition)):
        out.append(
            dm.RangeMap(
                options=dm.DashboardRangeMapOptions(
                    from_val=c.aqi_min,
                    to=c.aqi_max if c.aqi_max is not None else 100000,
                    result=dm.ValueMappingResult(
                        text=f"{c.name_zh} {c.name_en}", color=c.rgb, index=n
                    ),
                )
            )
        )
    return out


def air_limits(param: str, edition: str) -> list[tuple[str, float]]:
    """(window, limit) from GB 3095 for the short windows a dashboard can show, lowest first."""
    out = []
    for window in gb3095.windows_for(param, GRADE, edition):
        if window == "annual":
            continue
        lim = gb3095.limit(param, window, GRADE, edition)
        if lim is not None:
            out.append((window, float(lim)))
    return sorted(out, key=lambda wl: wl[1])


def air_limit_thresholds(param: str, edition: str) -> db.ThresholdsConfig:
    colour = {"1h": "red", "8h": "orange", "24h": "orange"}
    return steps("green", *((lim, colour[w]) for w, lim in air_limits(param, edition)))


def air_limit_text(param: str, edition: str) -> str:
    parts = [
        f"{_WINDOW_TEXT[w]} mean {lim:g} {gb3095.UNITS[param]}"
        for w, lim in air_limits(param, edition)
    ]
    return f"{get_designation('air_limits', edition)} Grade II limits: " + "; ".join(parts)


def water_thresholds(param: str, edition: str) -> tuple[db.ThresholdsConfig, str] | None:
    spec = gb3838.param_limits(param, "river", edition)
    if spec is None:
        return None
    worst = _CLASS_COLOURS[-1]
    if spec.op == "range":
        low, high = spec.limits
        return steps("red", (low, "green"), (high, "red")), f"must lie in {low:g}-{high:g}"
    if spec.op == ">=":  # dissolved oxygen: a minimum per class, class V's lowest
        levels = [(lim, _CLASS_COLOURS[4 - i]) for i, lim in enumerate(reversed(spec.limits))]
        return steps(worst, *levels), ", ".join(
            f"{gb3838.class_label(c)[0]} >= {lim:g}" for c, lim in enumerate(spec.limits, 1)
        )
    # Equal limits (COD: I and II are both 15) keep the worse class: Grafana takes the last step.
    by_value = {lim: _CLASS_COLOURS[i + 1] for i, lim in enumerate(spec.limits)}
    return steps(_CLASS_COLOURS[0], *by_value.items()), ", ".join(
        f"{gb3838.class_label(c)[0]} <= {lim:g}" for c, lim in enumerate(spec.limits, 1)
    )


def class_mappings() -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                str(c): dm.ValueMappingResult(
                    text=f"{gb3838.class_label(c)[0]}", color=_CLASS_COLOURS[c - 1], index=c - 1
                )
                for c in range(1, gb3838.WORSE_THAN_V + 1)
            }
        )
    ]


def class_thresholds() -> db.ThresholdsConfig:
    worst = gb3838.WORSE_THAN_V
    return steps(_CLASS_COLOURS[0], *((c, _CLASS_COLOURS[c - 1]) for c in range(2, worst + 1)))


def battery_thresholds() -> db.ThresholdsConfig:
    return steps(
        "red",
        (DISPLAY_LEVELS["battery_v_critical"], "orange"),
        (DISPLAY_LEVELS["battery_v_low"], "green"),
    )


def online_mappings() -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                "1": dm.ValueMappingResult(text="在线 online", color="green", index=0),
                "0": dm.ValueMappingResult(text="离线 offline", color="red", index=1),
            }
        )
    ]


def _override(name: str, **props: Any) -> db.DashboardFieldConfigSourceOverrides:
    return (
        db.DashboardFieldConfigSourceOverrides()
        .matcher(dm.MatcherConfig(id_val="byName", options=name))
        .properties([dm.DynamicConfigValue(id_val=k, value=v) for k, v in props.items()])
    )


def _ts(title: str, *targets: _Q, unit_id: str = "none", desc: str = "") -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .unit(unit_id)
        .span(12)
        .height(8)
        .line_width(1)
        .fill_opacity(0)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
    )
    if desc:
        p = p.description(desc)
    for t in targets:
        p = p.with_target(t)
    return p


def _limit_lines(p: timeseries.Panel) -> timeseries.Panel:
    return p.thresholds_style(
        cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
    ).color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))


def _stat(title: str, *targets: _Q, desc: str = "") -> stat.Panel:
    p = (
        stat.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .span(6)
        .height(5)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .text_mode(cm.BigValueTextMode.VALUE)
    )
    if desc:
        p = p.description(desc)
    for t in targets:
        p = p.with_target(t)
    return p


def _table(title: str, *targets: _Q, desc: str = "") -> table.Panel:
    p = table.Panel().title(title).datasource(DATASOURCE).span(12).height(8).filterable(True)
    if desc:
        p = p.description(desc)
    for t in targets:
        p = p.with_target(t)
    return p


def _query_var(name: str, lbl: str, query: str, multi: bool = False) -> db.QueryVariable:
    v = (
        db.QueryVariable(name)
        .label(lbl)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)  # SHOW TAG VALUES ignores time
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        # ".*" rather than the list of values: stations without the tag are kept under "All".
        v = v.all_value(".*").current(
            dm.VariableOption(selected=True, text=["All"], value=["$__all"])
        )
    return v


def _dashboard(uid: str, title: str, tags: list[str], time_from: str, desc: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(desc)
        .tags(["envnet", *tags])
        .timezone("browser")
        .time(time_from, "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .link(
            db.DashboardLink("envnet")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["envnet"])
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
    )


# --- The four dashboards ----------------------------------------------------------------------

AQI_1H = "\"window\" = '1h'"


def city_air(edition: str = DEFAULT_EDITION) -> db.Dashboard:
    district = regex_match("district", "district")
    latest_aqi = (
        'SELECT last("aqi") AS "aqi" FROM "aqi" '
        f'WHERE {AQI_1H} AND {district} AND $timeFilter GROUP BY "station"'
    )
    aqi_std = get_designation("aqi", edition)
    d = _dashboard(
        "envnet-city-air",
        "城市空气质量 City air",
        ["air", "aqi"],
        "now-24h",
        f"AQI ({aqi_std}) per station and for the city; PM2.5 and O3 against "
        f"{get_designation('air_limits', edition)} Grade II limits.",
    ).with_variable(
        _query_var(
            "district",
            "区 District",
            'SHOW TAG VALUES FROM "air" WITH KEY = "district"',
            multi=True,
        )
    )

    d = d.with_row(db.Row("当前 Now"))
    d = d.with_panel(
        _stat(
            "全市平均AQI City mean AQI",
            q(f'SELECT mean("aqi") AS "aqi" FROM ({latest_aqi})'),
            desc="Mean of each station's latest hourly AQI (window 1h) in the last 2 hours.",
        )
        .time_from("2h")
        .decimals(0)
        .thresholds(aqi_thresholds(edition))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )
    d = d.with_panel(
        _stat(
            "全市空气质量类别 City category",
            q(f'SELECT mean("aqi") AS "aqi" FROM ({latest_aqi})'),
            desc=f"The category of the city mean AQI, {aqi_std} Table 2.",
        )
        .time_from("2h")
        .mappings(aqi_category_mappings(edition))
        .thresholds(aqi_thresholds(edition))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )
    d = d.with_panel(
        _stat(
            "AQI超100站点 Stations with AQI > 100",
            q(
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
        _stat(
            "报告AQI站点 Stations reporting AQI",
            q(f'SELECT count("aqi") AS "stations" FROM ({latest_aqi})'),
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
        cols = ", ".join(f'mean({_ident(p)}) AS "{p}_{window}"' for p in plist)
        targets.append(
            q(
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
                _override(
                    f"{p}_{window}",
                    thresholds={
                        "mode": "absolute",
                        "steps": [
                            {"value": None, "color": "green"},
                            {"value": lim, "color": "red"},
                        ],
                    },
                    unit=unit("air", p),
                    displayName=f"{hj633.POLLUTANT_LABELS[p][1]} {_WINDOW_TEXT[window]}",
                    **{"custom.cellOptions": {"type": "color-background"}},
                )
            )
    limits_table = (
        _table(
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
        .overrides(overrides)
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
    d = d.with_panel(_aqi_map(edition, district))
    d = d.with_panel(
        _table(
            "AQI超100站点 Stations with AQI > 100 now",
            q(
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
        .overrides([_override("aqi", **{"custom.cellOptions": {"type": "color-background"}})])
    )
    d = d.with_panel(limits_table)

    d = d.with_row(db.Row("趋势 Trends"))
    for param in ("pm25", "o3"):
        d = d.with_panel(
            _limit_lines(
                _ts(
                    f"{label(param)} — GB 3095 Grade II",
                    q(series("air", param, district, by=("station",)), alias="$tag_station"),
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
            _ts(
                f"{what}",
                q(
                    series(
                        "aqi",
                        "aqi",
                        f"\"window\" = '{window}' AND {district}",
                        ("station",),
                        "last",
                    ),
                    alias="$tag_station",
                ),
                desc=f"AQI (window {window}) per station; bands are the {aqi_std} categories.",
            )
            .time_from(span)
            .decimals(0)
            .thresholds(aqi_thresholds(edition))
            .thresholds_style(
                cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.AREA)
            )
            .show_points(cm.VisibilityMode.AUTO)
        )
    return d


def _aqi_map(edition: str, district: str) -> geomap.Panel:
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
            q(
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
            .lat(MAP_CENTRE["lat"])
            .lon(MAP_CENTRE["lon"])
            .zoom(MAP_CENTRE["zoom"])
        )
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers([markers])
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .decimals(0)
        .thresholds(aqi_thresholds(edition))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )


def station(edition: str = DEFAULT_EDITION) -> db.Dashboard:
    st = regex_match("station", "station")
    d = _dashboard(
        "envnet-station",
        "站点 Station",
        ["air", "station"],
        "now-24h",
        "One air station: every parameter with its GB 3095 limits, QC flags and health.",
    ).with_variable(
        _query_var("station", "站点 Station", 'SHOW TAG VALUES FROM "air" WITH KEY = "station"')
    )
    d = d.with_row(db.Row("$station"))
    latest = ", ".join(f"last({_ident(p)}) AS {_ident(p)}" for p in params("air"))
    overrides = []
    for p in params("air"):
        props: dict[str, Any] = {"unit": unit("air", p), "displayName": label(p).split(" ", 1)[1]}
        if p in gb3095.UNITS:
            props["thresholds"] = air_limit_thresholds(p, edition).build()
        overrides.append(_override(p, **props))
    d = d.with_panel(
        _stat(
            "最新读数 Latest readings",
            q(f'SELECT {latest} FROM "air" WHERE {st} AND $timeFilter'),
            desc="Each parameter's latest value; pollutants coloured against GB 3095 limits.",
        )
        .span(16)
        .height(5)
        .color_mode(cm.BigValueColorMode.VALUE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/.*/"))
        .thresholds(steps("text"))
        .overrides(overrides)
    )
    d = d.with_panel(
        _stat(
            "状态 Status",
            q(f'SELECT last("online") AS "online" FROM "status" WHERE {st} AND $timeFilter'),
            desc="The station's last status message (retained birth / last will).",
        )
        .time_from("30d")
        .span(4)
        .mappings(online_mappings())
    )
    d = d.with_panel(
        _stat(
            "固件 Firmware",
            q(
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
        panel = _ts(label(p), q(series("air", p, st), alias=label(p)), unit_id=unit("air", p)).span(
            8
        )
        if p in gb3095.UNITS:
            panel = (
                _limit_lines(panel)
                .description(air_limit_text(p, edition) + " (dashed lines).")
                .thresholds(air_limit_thresholds(p, edition))
            )
        d = d.with_panel(panel)

    d = d.with_row(db.Row("质控 QC flags"))
    d = d.with_panel(
        _table(
            "质控标记 Flagged readings",
            q(
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
        _ts(
            "每小时读数 Readings per hour",
            q(series("air", "seq", st, agg="count", interval="1h"), alias="readings"),
            desc="Readings stored per hour: 60 at the default 60 s interval; dips are gaps.",
        )
        .span(8)
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(60)
    )

    d = d.with_row(db.Row("健康 Health"))
    d = _health_panels(d, st, by=(), alias=None, span=8)
    return d


def _health_panels(
    d: db.Dashboard, where: str, by: tuple[str, ...], alias: str | None, span: int
) -> db.Dashboard:
    def one(field: str, title: str, unit_id: str, agg: str = "last") -> timeseries.Panel:
        return _ts(
            title, q(series("health", field, where, by, agg), alias=alias or field), unit_id=unit_id
        ).span(span)

    d = d.with_panel(
        _limit_lines(one("battery_v", "电池 Battery", "volt")).thresholds(battery_thresholds())
    )
    d = d.with_panel(
        _limit_lines(one("rssi_dbm", "信号 RSSI", "dBm")).thresholds(
            steps("red", (DISPLAY_LEVELS["rssi_dbm_weak"], "green"))
        )
    )
    d = d.with_panel(
        _ts(
            "缓存读数 Buffered / dropped readings",
            q(
                series("health", "buffered", where, by, "last"),
                alias=f"{alias or ''} buffered".strip(),
            ),
            q(
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


def rivers(edition: str = DEFAULT_EDITION) -> db.Dashboard:
    river = regex_match("river", "river")
    water_std = get_designation("water", edition)
    d = _dashboard(
        "envnet-rivers",
        "河流断面水质 Rivers",
        ["water", "rivers"],
        "now-7d",
        f"Water sections: class ({water_std}) against the section's target class, DO, NH3-N, pH.",
    ).with_variable(
        _query_var(
            "river", "河流 River", 'SHOW TAG VALUES FROM "water" WITH KEY = "river"', multi=True
        )
    )
    d = d.with_row(db.Row("水质类别 Class"))
    d = d.with_panel(
        _table(
            "各断面当前类别 Sections now",
            q(
                'SELECT last("class") AS "class", last("class_num") AS "class_num", '
                'last("target_num") AS "target_num", last("exceeding") AS "exceeding" '
                f'FROM "water_class" WHERE {river} AND $timeFilter '
                'GROUP BY "river", "section", "target_class"',
                fmt="table",
            ),
            desc="Each section's latest class, its target class, and whether it is worse.",
        )
        .span(24)
        .height(7)
        .overrides(
            [
                _override(
                    "exceeding",
                    mappings=[
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "达标 meets target", "color": "green", "index": 0},
                                "1": {"text": "超标 worse than target", "color": "red", "index": 1},
                            },
                        }
                    ],
                    **{"custom.cellOptions": {"type": "color-background"}},
                ),
                _override(
                    "class_num",
                    mappings=[m.to_json() for m in class_mappings()],
                    displayName="class (Ⅰ-劣Ⅴ)",
                    **{"custom.cellOptions": {"type": "color-background"}},
                ),
                _override(
                    "target_num",
                    mappings=[m.to_json() for m in class_mappings()],
                    displayName="target",
                ),
            ]
        )
    )
    d = d.with_panel(
        statetimeline.Panel()
        .title("各断面类别变化 Class by section over time")
        .description(f"{water_std} class per section (worst parameter); 6 = worse than V (劣Ⅴ).")
        .datasource(DATASOURCE)
        .with_target(
            q(
                series(
                    "water_class",
                    "class_num",
                    river,
                    ("river", "section"),
                    "max",
                    interval="$__interval",
                ),
                alias="$tag_river $tag_section",
            )
        )
        .interval("5m")
        .span(12)
        .height(9)
        .mappings(class_mappings())
        .thresholds(class_thresholds())
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .merge_values(True)
        .show_value(cm.VisibilityMode.AUTO)
        .line_width(0)
        .fill_opacity(70)
    )
    d = d.with_panel(
        _ts(
            "类别与目标 Class vs target",
            q(
                series("water_class", "class_num", river, ("river", "section"), "max"),
                alias="$tag_section class",
            ),
            q(
                series("water_class", "target_num", river, ("river", "section"), "last"),
                ref="B",
                alias="$tag_section target",
            ),
            desc="Class 1-6 (higher is worse); the target is dashed. Above its target = exceeding.",
        )
        .interval("5m")
        .height(9)
        .decimals(0)
        .min(1)
        .max(6)
        .line_interpolation(cm.LineInterpolation.STEP_AFTER)
        .override_by_regexp(
            ".* target$",
            [
                dm.DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                )
            ],
        )
    )
    d = d.with_row(db.Row("参数 Parameters"))
    for p in ("do", "nh3n", "ph", "cod"):
        panel = _ts(
            label(p),
            q(series("water", p, river, ("river", "section")), alias="$tag_river $tag_section"),
            unit_id=unit("water", p),
        ).interval("5m")
        wt = water_thresholds(p, edition)
        if wt is not None:
            thresholds, text_ = wt
            panel = _limit_lines(panel).thresholds(thresholds).description(f"{water_std}: {text_}.")
        d = d.with_panel(panel)
    return d


def network(edition: str = DEFAULT_EDITION) -> db.Dashboard:
    last_status = (
        'SELECT last("online") AS "online" FROM "status" WHERE $timeFilter GROUP BY "station"'
    )
    d = _dashboard(
        "envnet-network",
        "网络健康 Network health",
        ["health", "network"],
        "now-24h",
        "Stations online and offline, battery, signal, buffered readings, last seen.",
    )
    d = d.with_row(db.Row("站点 Stations"))
    d = d.with_panel(
        _stat(
            "在线 Online",
            q(f'SELECT sum("online") AS "online" FROM ({last_status})'),
            desc="Stations whose last status (30 days) is online.",
        )
        .time_from("30d")
        .thresholds(steps("green"))
    )
    d = d.with_panel(
        _stat(
            "离线 Offline",
            q(f'SELECT count("online") - sum("online") AS "offline" FROM ({last_status})'),
            desc="Stations whose last status is offline (the broker sent their last will).",
        )
        .time_from("30d")
        .thresholds(steps("green", (1, "red")))
    )
    d = d.with_panel(
        _stat(
            "站点 Stations",
            q(f'SELECT count("online") AS "stations" FROM ({last_status})'),
            desc="Stations that sent a status in the last 30 days.",
        )
        .time_from("30d")
        .thresholds(steps("blue"))
    )
    d = d.with_panel(
        _stat(
            "站点缓存 Readings buffered on stations",
            q(
                'SELECT sum("buffered") AS "buffered" FROM (SELECT last("buffered") AS "buffered" '
                'FROM "health" WHERE $timeFilter GROUP BY "station")'
            ),
            desc="Sum of every station's last reported flash buffer: readings waiting to be sent.",
        )
        .time_from("2h")
        .thresholds(steps("green", (1, "orange")))
    )
    d = d.with_panel(
        _table(
            "最后上报 Last reading per station",
            q(
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
        _table(
            "最新健康 Latest health per station",
            q(
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
                _override(
                    "battery_v",
                    unit="volt",
                    thresholds=battery_thresholds().build().to_json(),
                    **{"custom.cellOptions": {"type": "color-text"}},
                ),
                _override(
                    "rssi_dbm",
                    unit="dBm",
                    thresholds=steps("red", (DISPLAY_LEVELS["rssi_dbm_weak"], "green"))
                    .build()
                    .to_json(),
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
            q(
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
    d = _health_panels(d, "", by=("station",), alias="$tag_station", span=8)
    d = d.with_panel(
        _ts(
            "每小时读数 Readings per hour",
            q(
                series("air", "seq", by=("station",), agg="count", interval="1h"),
                alias="$tag_station",
            ),
            q(
                series("water", "seq", by=("station",), agg="count", interval="1h"),
                ref="B",
                alias="$tag_station",
            ),
            desc="Readings stored per hour per station (air 60, water 12 at default intervals).",
        ).span(24)
    )
    return d


def get_designation(family: str, edition: str = DEFAULT_EDITION) -> str:
    from envnet.core.standards import get_edition

    return getattr(get_edition(edition), family)


DASHBOARDS = {
    "envnet-city-air": city_air,
    "envnet-station": station,
    "envnet-rivers": rivers,
    "envnet-network": network,
}


# --- Build, validate, write -------------------------------------------------------------------


def _register_sdk() -> None:
    register_default_plugins()
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig("influxdb", InfluxQuery.from_json)
    )


def to_json(d: db.Dashboard) -> dict[str, Any]:
    model = d.build()
    for i, panel in enumerate(model.panels or [], start=1):
        panel.id_val = i
    return json.loads(json.dumps(model, cls=JSONEncoder, ensure_ascii=False))


def build_all(edition: str = DEFAULT_EDITION) -> dict[str, dict[str, Any]]:
    return {uid: to_json(fn(edition)) for uid, fn in DASHBOARDS.items()}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def generate(out_dir: Path, edition: str = DEFAULT_EDITION) -> list[Path]:
    """Write every dashboard as <uid>.json into out_dir (validated first); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = build_all(edition)
    for uid, doc in docs.items():
        errors = validate(doc)
        if errors:
            raise ValueError(f"dashboard {uid} is invalid:\n  " + "\n  ".join(errors))
    paths = []
    for uid, doc in docs.items():
        path = out_dir / f"{uid}.json"
        path.write_text(dumps(doc), encoding="utf-8")
        paths.append(path)
    return paths


def validate(doc: dict[str, Any], schema: dict | None = None) -> list[str]:
    """Every problem found: SDK round trip, the shipped JSON Schema, ids and grid layout."""
    _register_sdk()
    errors: list[str] = []
    back = json.loads(json.dumps(dm.Dashboard.from_json(doc), cls=JSONEncoder, ensure_ascii=False))
    errors += [f"sdk model: {e}" for e in _diff(doc, back, "$")]
    if schema is None:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    errors += [f"schema: {e}" for e in check_schema(doc, schema)]
    errors += _check_layout(doc)
    return errors


def _diff(a: Any, b: Any, path: str) -> Iterator[str]:
    """Where a (ours) and b (the SDK's reading of it) differ: keys the model does not know."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a.keys() - b.keys():
            yield f"{path}.{k}: not in the Grafana dashboard model"
        for k in b.keys() - a.keys():
            yield f"{path}.{k}: the model adds a default {b[k]!r}"
        for k in a.keys() & b.keys():
            yield from _diff(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} reads back as {b!r}"


def _check_layout(doc: dict[str, Any]) -> list[str]:
    errors = []
    ids = [p.get("id") for p in doc.get("panels", [])]
    if len(ids) != len(set(ids)):
        errors.append("layout: panel ids are not unique")
    cells: dict[tuple[int, int], str] = {}
    for p in doc.get("panels", []):
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24:
            errors.append(f"layout: panel {p.get('title')!r} is wider than the grid")
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    errors.append(f"layout: {p.get('title')!r} overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = p.get("title", "")
            else:
                continue
            break
    return errors


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def check_schema(value: Any, schema: dict, path: str = "$", root: dict | None = None) -> list[str]:
    """A JSON Schema (draft 2020-12) check for the keywords the shipped schema uses: type, enum,
    const, pattern, minLength, minimum, maximum, minItems, required, properties,
    additionalProperties, items, $ref (#/$defs/...), anyOf, if/then. Unknown keywords fail, so
    the schema cannot use one that is silently ignored here."""
    root = root if root is not None else schema
    known = {
        "$schema", "$id", "$defs", "$comment", "title", "description", "type", "enum", "const",
        "pattern", "minLength", "minimum", "maximum", "minItems", "required", "properties",
        "additionalProperties", "items", "$ref", "anyOf", "if", "then",
    }  # fmt: skip
    unknown = set(schema) - known
    if unknown:
        return [f"{path}: schema keyword(s) not supported: {sorted(unknown)}"]
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            return [f"{path}: unsupported $ref {ref}"]
        return check_schema(value, root["$defs"][ref.removeprefix("#/$defs/")], path, root)
    errs: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: expected {'/'.join(types)}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        errs.append(f"{path}: must be {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errs.append(f"{path}: shorter than {schema['minLength']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                errs += check_schema(item, props[key], f"{path}.{key}", root)
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: unexpected key {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += check_schema(item, schema["additionalProperties"], f"{path}.{key}", root)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errs += check_schema(item, schema["items"], f"{path}[{i}]", root)
    if "anyOf" in schema:
        branches = [check_schema(value, s, path, root) for s in schema["anyOf"]]
        if all(branches):
            errs.append(f"{path}: matches no alternative: " + min(branches, key=len)[0])
    if "if" in schema and not check_schema(value, schema["if"], path, root):
        errs += check_schema(value, schema.get("then", {}), path, root)
    return errs


# --- How Grafana expands an InfluxQL query ----------------------------------------------------

_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]/])")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
            "y": 31_536_000_000}  # fmt: skip


def duration_ms(text: str) -> int:
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"not a Grafana duration: {text!r}")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def _format_interval(ms: int) -> str:
    for unit_, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit_}"
    return f"{ms}ms"


# Grafana's rangeutil.roundInterval, from 1 s up: (below this many ms, use this interval).
_ROUND = (
    (1_500, 1_000), (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000),
    (25_000, 20_000), (45_000, 30_000), (90_000, 60_000), (210_000, 120_000),
    (450_000, 300_000), (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000),
    (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000),
    (16_200_000, 10_800_000), (32_400_000, 21_600_000), (86_400_000, 43_200_000),
    (604_800_000, 86_400_000), (1_814_400_000, 604_800_000),
)  # fmt: skip


def panel_interval_ms(
    from_ms: int, to_ms: int, min_interval: str = "60s", max_points: int = 1000
) -> int:
    """Grafana's $__interval: the range over the data points, rounded, not below the minimum
    (the panel's interval, else the datasource's timeInterval, 60s in our provisioning)."""
    raw = (to_ms - from_ms) / max_points
    rounded = next((r for below, r in _ROUND if raw < below), 2_592_000_000)
    return max(rounded, duration_ms(min_interval))


def interpolate(
    query: str, variables: dict[str, list[str] | str], from_ms: int, to_ms: int, interval_ms: int
) -> str:
    """The query as Grafana's InfluxDB datasource sends it (raw InfluxQL mode).

    Template variables become their value; a multi-value inside a regex becomes (a|b) with
    each value regex-escaped, as Grafana's interpolateQueryExpr does."""
    iv = _format_interval(interval_ms)
    builtins = {
        "timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms",
        "__timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms",
        "__interval_ms": str(interval_ms),
        "__interval": iv,
        "interval": iv,
        "__from": str(from_ms),
        "__to": str(to_ms),
        "__range": _format_interval(to_ms - from_ms),
    }

    def value(name: str, in_regex: bool) -> str:
        if name in builtins:
            return builtins[name]
        if name not in variables:
            raise KeyError(f"query uses an undefined variable ${name}: {query}")
        v = variables[name]
        values = v if isinstance(v, list) else [v]
        if not in_regex:
            return ",".join(values)
        if values == [".*"]:  # an allValue is sent as written
            return ".*"
        escaped = [_REGEX_SPECIAL.sub(r"\\\1", x) for x in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    names = sorted(set(builtins) | set(variables), key=len, reverse=True)
    alt = "|".join(re.escape(n) for n in names)
    pattern = re.compile(rf"\$\{{({alt})\}}|\[\[({alt})\]\]|\$({alt})(?![A-Za-z0-9_])")
    out, pos = [], 0
    for m in pattern.finditer(query):
        name = m.group(1) or m.group(2) or m.group(3)
        # Inside a /regex/ when an odd number of unescaped slashes precede it on this clause.
        before = query[: m.start()]
        in_regex = len(re.findall(r"(?<!\\)/", before)) % 2 == 1
        out.append(query[pos : m.start()])
        out.append(value(name, in_regex))
        pos = m.end()
    out.append(query[pos:])
    text_ = "".join(out)
    leftover = re.search(r"\$(?:\{)?[A-Za-z_]\w*|\[\[\w+\]\]", text_)
    if leftover:
        raise KeyError(f"query uses an undefined variable {leftover.group(0)}: {query}")
    return text_


def iter_queries(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, panel, target) for every query target of every panel, rows included."""
    for panel in doc.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets") or []:
                yield f"{doc.get('uid')}/{inner.get('title')}/{target.get('refId')}", inner, target


# --- CLI --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m envnet.devkit.grafana", description=__doc__.splitlines()[0]
    )
    ap.add_argument("out_dir", nargs="?", type=Path, default=DASHBOARDS_DIR)
    ap.add_argument("--edition", default=DEFAULT_EDITION, help="standards edition (default 2012)")
    ap.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = ap.parse_args(argv)
    if args.check:
        stale = [
            uid
            for uid, doc in build_all(args.edition).items()
            if not (args.out_dir / f"{uid}.json").exists()
            or (args.out_dir / f"{uid}.json").read_text(encoding="utf-8") != dumps(doc)
        ]
        for uid in stale:
            print(f"out of date: {args.out_dir / (uid + '.json')}", file=sys.stderr)
        return 1 if stale else 0
    for path in generate(args.out_dir, args.edition):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
