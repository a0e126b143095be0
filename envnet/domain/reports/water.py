"""River sections: daily, monthly and period classes by GB 3838-2002, against target classes.

A section's class is its worst parameter's class (envnet.core.standards.gb3838.classify). A daily
value of a parameter is the mean of its valid hourly means, given at least
`reports.water_min_hours_day` of them; a month's (or a period's) value is the mean of its
daily values, classified the same way: the monthly-mean assessment of the water bureaus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from envnet.core import calendar as cal
from envnet.core.standards import gb3838
from envnet.domain.reports import rules
from envnet.domain.reports.stations import StationInfo


@dataclass(frozen=True, slots=True)
class WaterDay:
    values: dict[str, float]  # valid daily means
    hours: dict[str, int]  # valid hourly means per parameter
    cls: int | None  # 1..5, 6 = worse than V; None without any valid daily value
    worst: tuple[str, ...]


def _classify(
    values: Mapping[str, float], waterbody: gb3838.Waterbody, edition: str
) -> tuple[int | None, tuple[str, ...]]:
    a = gb3838.classify(values, waterbody, edition)
    return a.overall, a.worst


def day(
    hourly: Mapping[str, Mapping[int, float]],
    day_hours: Sequence[int],
    min_hours: int,
    waterbody: gb3838.Waterbody,
    edition: str,
) -> WaterDay:
    values, hours = {}, {}
    for p, series in hourly.items():
        vals = [series[h] for h in day_hours if h in series]
        if vals:
            hours[p] = len(vals)
        if len(vals) >= min_hours:
            values[p] = round(sum(vals) / len(vals), rules.DECIMALS)
    cls, worst = _classify(values, waterbody, edition)
    return WaterDay(values, hours, cls, worst)


def mean_of_days(daylist: Sequence[WaterDay]) -> dict[str, float]:
    keys = sorted({k for d in daylist for k in d.values})
    out = {}
    for k in keys:
        vals = [d.values[k] for d in daylist if k in d.values]
        out[k] = round(sum(vals) / len(vals), rules.DECIMALS)
    return out


def label(cls: int | None) -> str | None:
    return None if cls is None else gb3838.class_label(cls)[0]


def meets(cls: int | None, target: int | None) -> bool | None:
    """A section meets its target when its class is no worse (<=); None if either is unknown."""
    if cls is None or target is None:
        return None
    return cls <= target


def section_day_entry(st: StationInfo, wd: WaterDay, d: date) -> dict[str, Any]:
    return {
        "id": st.id,
        "name": st.name,
        "river": st.river,
        "section": st.section,
        "date": d.isoformat(),
        "class": wd.cls,
        "class_label": label(wd.cls),
        "worst": list(wd.worst),
        "target_class": st.target_class,
        "meets_target": meets(wd.cls, st.target_class),
        "values": wd.values,
    }


def _assess(
    st: StationInfo, daylist: Sequence[WaterDay], edition: str
) -> tuple[dict[str, float], int | None, tuple[str, ...]]:
    valid = [d for d in daylist if d.values]
    means = mean_of_days(valid)
    cls, worst = _classify(means, st.waterbody, edition)
    return means, cls, worst


def _share(flags: Sequence[bool | None]) -> float | None:
    judged = [f for f in flags if f is not None]
    if not judged:
        return None
    return round(100 * sum(1 for f in judged if f) / len(judged), rules.RATIO_DECIMALS)


def section_period(
    st: StationInfo, by_day: Mapping[date, WaterDay], days: Sequence[date], edition: str
) -> dict[str, Any]:
    months: dict[str, list[WaterDay]] = {}
    for d in days:
        months.setdefault(cal.month_of(d), []).append(by_day[d])
    month_rows = []
    for m, daylist in months.items():
        _, cls, worst = _assess(st, daylist, edition)
        month_rows.append(
            {
                "month": m,
                "days_valid": sum(1 for x in daylist if x.values),
                "class": cls,
                "class_label": label(cls),
                "worst": list(worst),
                "meets_target": meets(cls, st.target_class),
            }
        )
    means, cls, worst = _assess(st, [by_day[d] for d in days], edition)
    return {
        "id": st.id,
        "name": st.name,
        "river": st.river,
        "section": st.section,
        "target_class": st.target_class,
        "target_label": label(st.target_class),
        "days_valid": sum(1 for d in days if by_day[d].values),
        "daily": [{"date": d.isoformat(), "class": by_day[d].cls} for d in days],
        "months": month_rows,
        "class": cls,
        "class_label": label(cls),
        "worst": list(worst),
        "means": means,
        "meets_target": meets(cls, st.target_class),
    }


def period_summary(
    stations: Mapping[str, StationInfo],
    values: Mapping[str, Mapping[date, WaterDay]],
    days: Sequence[date],
    edition: str,
) -> dict[str, Any]:
    """Every section, the share meeting its target and those worse than V, per month too."""
    sections = [section_period(stations[s], values[s], days, edition) for s in sorted(stations)]
    months = sorted({m["month"] for s in sections for m in s["months"]})
    per_month = []
    for m in months:
        rows = [(s["id"], r) for s in sections for r in s["months"] if r["month"] == m]
        per_month.append(
            {
                "month": m,
                "share_meeting_target": _share([r["meets_target"] for _, r in rows]),
                "worse_than_v": [sid for sid, r in rows if r["class"] == gb3838.WORSE_THAN_V],
            }
        )
    return {
        "sections": sections,
        "sections_assessed": sum(1 for s in sections if s["meets_target"] is not None),
        "share_meeting_target": _share([s["meets_target"] for s in sections]),
        "worse_than_v": [s["id"] for s in sections if s["class"] == gb3838.WORSE_THAN_V],
        "months": per_month,
    }
