"""The pieces every envnet dashboard is built from: InfluxQL targets, panels with envnet's
defaults (datasource, size, legend, tooltip), template variables and the dashboard shell.

The SDK has no InfluxDB query type, so `InfluxQuery` is one written in its style; every target
is raw InfluxQL on the provisioned datasource (grafana/provisioning/datasources/envnet.yaml).
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

# The provisioned datasource (grafana/provisioning/datasources/envnet.yaml).
DATASOURCE_UID = "envnet-influxdb"
DATASOURCE = dm.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)


# --- InfluxQL targets -------------------------------------------------------------------------


class InfluxQuery(cogvariants.Dataquery):
    """A raw InfluxQL target."""

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


class InfluxTarget(cogbuilder.Builder[InfluxQuery]):
    """The builder the SDK's panels take as a target (`with_target`)."""

    def __init__(self, query: InfluxQuery) -> None:
        self._internal = query

    def build(self) -> InfluxQuery:
        return self._internal


def target(
    query: str, ref: str = "A", fmt: str = "time_series", alias: str | None = None
) -> InfluxTarget:
    """A target for the InfluxQL `query`, whitespace collapsed so the JSON holds one line."""
    return InfluxTarget(InfluxQuery(ref, " ".join(query.split()), fmt, alias))


def ident(name: str) -> str:
    """An InfluxQL quoted identifier."""
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
    group = ", ".join([f"time({interval})", *(ident(t) for t in by)])
    return (
        f"SELECT {agg}({ident(field)}) AS {ident(field)} FROM {ident(measurement)} "
        f"WHERE {cond} GROUP BY {group} fill({fill})"
    )


def regex_match(tag: str, var: str) -> str:
    """tag =~ /^$var$/: matches one value, a multi-value list, or "All" (.*)."""
    return f"{ident(tag)} =~ /^${var}$/"


# --- Field config -----------------------------------------------------------------------------


def steps(base: str, *levels: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: `base` below the first level, then each (level, colour)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(
            [dm.Threshold(value=None, color=base)]
            + [dm.Threshold(value=v, color=c) for v, c in levels]
        )
    )


def override(name: str, **props: Any) -> db.DashboardFieldConfigSourceOverrides:
    """Field config for the field called `name` (property id -> value)."""
    return (
        db.DashboardFieldConfigSourceOverrides()
        .matcher(dm.MatcherConfig(id_val="byName", options=name))
        .properties([dm.DynamicConfigValue(id_val=k, value=v) for k, v in props.items()])
    )


# --- Panels -----------------------------------------------------------------------------------


def timeseries_panel(
    title: str, *targets: InfluxTarget, unit_id: str = "none", desc: str = ""
) -> timeseries.Panel:
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


def with_limit_lines(p: timeseries.Panel) -> timeseries.Panel:
    """Draw the panel's thresholds as dashed lines (the limits), series in the classic palette."""
    return p.thresholds_style(
        cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
    ).color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))


def stat_panel(title: str, *targets: InfluxTarget, desc: str = "") -> stat.Panel:
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


def table_panel(title: str, *targets: InfluxTarget, desc: str = "") -> table.Panel:
    p = table.Panel().title(title).datasource(DATASOURCE).span(12).height(8).filterable(True)
    if desc:
        p = p.description(desc)
    for t in targets:
        p = p.with_target(t)
    return p


# --- Variables and the dashboard --------------------------------------------------------------


def query_variable(name: str, lbl: str, query: str, multi: bool = False) -> db.QueryVariable:
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


# Reviewed or raw figures (docs/review.md): the review service moves a withdrawn figure to
# the tag review=invalid and writes a recomputed one with review=recomputed. "Reviewed" hides
# the withdrawn ones, "raw" hides the recomputed ones; points never reviewed have no tag and
# show in both.
REVIEWED = "\"review\" != '$review'"


def review_variable() -> db.CustomVariable:
    return (
        db.CustomVariable("review")
        .label("数据 Data")
        .values("已审核 reviewed : invalid, 原始 raw : recomputed")
        .current(dm.VariableOption(selected=True, text="已审核 reviewed", value="invalid"))
        .options(
            [
                dm.VariableOption(selected=True, text="已审核 reviewed", value="invalid"),
                dm.VariableOption(selected=False, text="原始 raw", value="recomputed"),
            ]
        )
    )


def envnet_dashboard(
    uid: str, title: str, tags: list[str], time_from: str, desc: str
) -> db.Dashboard:
    """A read-only dashboard tagged envnet, with a dropdown of the other envnet dashboards."""
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
