"""The Rivers dashboard (envnet-rivers): each water section's GB 3838 class against its target
class, now and over time, and DO, NH3-N, pH and COD with the class limits. Filter: $river."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import statetimeline
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from envnet.core.standards import DEFAULT_EDITION
from envnet.devkit.grafana.builder import (
    DATASOURCE,
    envnet_dashboard,
    override,
    query_variable,
    regex_match,
    series,
    table_panel,
    target,
    timeseries_panel,
    with_limit_lines,
)
from envnet.devkit.grafana.fields import (
    class_mappings,
    class_thresholds,
    get_designation,
    label,
    unit,
    water_thresholds,
)


def rivers(edition: str = DEFAULT_EDITION) -> db.Dashboard:
    river = regex_match("river", "river")
    water_std = get_designation("water", edition)
    d = envnet_dashboard(
        "envnet-rivers",
        "河流断面水质 Rivers",
        ["water", "rivers"],
        "now-7d",
        f"Water sections: class ({water_std}) against the section's target class, DO, NH3-N, pH.",
    ).with_variable(
        query_variable(
            "river", "河流 River", 'SHOW TAG VALUES FROM "water" WITH KEY = "river"', multi=True
        )
    )
    d = d.with_row(db.Row("水质类别 Class"))
    d = d.with_panel(
        table_panel(
            "各断面当前类别 Sections now",
            target(
                # The provisional flag, not last("exceeding"): a provisional class (fewer
                # than the assessment set's parameters) writes no "exceeding", so
                # last("exceeding") would pair today's class with an older complete one's
                # verdict. Class against target reads from class_num and target_num.
                'SELECT last("class") AS "class", last("class_num") AS "class_num", '
                'last("target_num") AS "target_num", last("provisional") AS "provisional" '
                f'FROM "water_class" WHERE {river} AND $timeFilter '
                'GROUP BY "river", "section", "target_class"',
                fmt="table",
            ),
            desc=(
                "Each section's latest class and its target class; 暂定 provisional when the"
                " class rests on fewer than the assessment set's parameters (a provisional"
                " class neither meets nor misses its target)."
            ),
        )
        .span(24)
        .height(7)
        .overrides(
            [
                override(
                    "provisional",
                    mappings=[
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "完整 complete", "color": "green", "index": 0},
                                "1": {"text": "暂定 provisional", "color": "yellow", "index": 1},
                            },
                        }
                    ],
                    **{"custom.cellOptions": {"type": "color-background"}},
                ),
                override(
                    "class_num",
                    mappings=[m.to_json() for m in class_mappings()],
                    displayName="class (Ⅰ-劣Ⅴ)",
                    **{"custom.cellOptions": {"type": "color-background"}},
                ),
                override(
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
            target(
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
        timeseries_panel(
            "类别与目标 Class vs target",
            target(
                series("water_class", "class_num", river, ("river", "section"), "max"),
                alias="$tag_section class",
            ),
            target(
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
        panel = timeseries_panel(
            label(p),
            target(
                series("water", p, river, ("river", "section")), alias="$tag_river $tag_section"
            ),
            unit_id=unit("water", p),
        ).interval("5m")
        wt = water_thresholds(p, edition)
        if wt is not None:
            thresholds, text_ = wt
            panel = (
                with_limit_lines(panel).thresholds(thresholds).description(f"{water_std}: {text_}.")
            )
        d = d.with_panel(panel)
    return d
