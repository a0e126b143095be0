"""River sections: daily, monthly and period classes by GB 3838-2002, against target classes.

A section's class is its worst parameter's class (envnet.core.standards.gb3838.classify). A daily
value of a parameter is the mean of its valid hourly means, given at least
`reports.water_min_hours_day` of them; a month's (or a period's) value is the mean of its
daily values, classified the same way: the monthly-mean assessment of the water bureaus.

Complete or provisional (GB 3838 notes in envnet.core.standards.gb3838): a class resting on
fewer parameters than the section's assessment set (default pH, DO, CODMn, NH3-N, TP) is
provisional. It is shown, with the parameters it rests on (`basis`) and those it lacks
(`missing`), but never meets or misses a target: `meets_target` is None, the share meeting
target counts complete classes only, and each summary says how many sections it left out.
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
    assessment: gb3838.WaterAssessment | None = None

    @property
    def provisional(self) -> bool:
        return self.assessment is not None and self.cls is not None and self.assessment.provisional


def _classify(
    values: Mapping[str, float],
    waterbody: gb3838.Waterbody,
    edition: str,
    required: Sequence[str] = gb3838.ASSESSMENT_ITEMS,
) -> gb3838.WaterAssessment:
    return gb3838.classify(values, waterbody, edition, required)


def day(
    hourly: Mapping[str, Mapping[int, float]],
    day_hours: Sequence[int],
    min_hours: int,
    waterbody: gb3838.Waterbody,
    edition: str,
    required: Sequence[str] = gb3838.ASSESSMENT_ITEMS,
) -> WaterDay:
    values, hours = {}, {}
    for p, series in hourly.items():
        vals = [series[h] for h in day_hours if h in series]
        if vals:
            hours[p] = len(vals)
        if len(vals) >= min_hours:
            values[p] = round(sum(vals) / len(vals), rules.DECIMALS)
    a = _classify(values, waterbody, edition, required)
    return WaterDay(values, hours, a.overall, a.worst, a)


def mean_of_days(daylist: Sequence[WaterDay]) -> dict[str, float]:
    keys = sorted({k for d in daylist for k in d.values})
    out = {}
    for k in keys:
        vals = [d.values[k] for d in daylist if k in d.values]
        out[k] = round(sum(vals) / len(vals), rules.DECIMALS)
    return out


def label(cls: int | None) -> str | None:
    return None if cls is None else gb3838.class_label(cls)[0]


def meets(a: gb3838.WaterAssessment | None, target: int | None) -> bool | None:
    """A section meets its target when its complete class is no worse (<=); None when the
    class is unknown or provisional, or there is no target."""
    return None if a is None else gb3838.meets_target(a, target)


def class_fields(a: gb3838.WaterAssessment | None, target: int | None) -> dict[str, Any]:
    """The class of a day, month or period, whether it is provisional and on what it rests."""
    cls = a.overall if a else None
    return {
        "class": cls,
        "class_label": label(cls),
        "provisional": bool(a and cls is not None and a.provisional),
        "basis": list(a.basis) if a else [],
        "missing": list(a.missing) if a else [],
        "worst": list(a.worst) if a else [],
        "meets_target": meets(a, target),
    }


def section_day_entry(st: StationInfo, wd: WaterDay, d: date) -> dict[str, Any]:
    return {
        "id": st.id,
        "name": st.name,
        "river": st.river,
        "section": st.section,
        "date": d.isoformat(),
        **class_fields(wd.assessment, st.target_class),
        "target_class": st.target_class,
        "standard": wd.assessment.standard if wd.assessment else None,
        "values": wd.values,
    }


def _assess(
    st: StationInfo, daylist: Sequence[WaterDay], edition: str
) -> tuple[dict[str, float], gb3838.WaterAssessment]:
    valid = [d for d in daylist if d.values]
    means = mean_of_days(valid)
    return means, _classify(means, st.waterbody, edition, st.assessment)


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
        _, ma = _assess(st, daylist, edition)
        month_rows.append(
            {
                "month": m,
                "days_valid": sum(1 for x in daylist if x.values),
                **class_fields(ma, st.target_class),
            }
        )
    means, a = _assess(st, [by_day[d] for d in days], edition)
    return {
        "id": st.id,
        "name": st.name,
        "river": st.river,
        "section": st.section,
        "target_class": st.target_class,
        "target_label": label(st.target_class),
        "days_valid": sum(1 for d in days if by_day[d].values),
        "daily": [
            {"date": d.isoformat(), "class": by_day[d].cls, "provisional": by_day[d].provisional}
            for d in days
        ],
        "months": month_rows,
        **class_fields(a, st.target_class),
        "standard": a.standard,
        "edition": a.edition,
        "assessment_params": list(a.required),
        "means": means,
    }


def period_summary(
    stations: Mapping[str, StationInfo],
    values: Mapping[str, Mapping[date, WaterDay]],
    days: Sequence[date],
    edition: str,
) -> dict[str, Any]:
    """Every section, the share meeting its target and those worse than V, per month too.

    Only complete classes count: `sections_assessed` are the sections with a target and a
    complete class; `sections_left_out` those with a target whose class is provisional (listed
    in `provisional`), so a share never rests on a class from part of the data."""
    sections = [section_period(stations[s], values[s], days, edition) for s in sorted(stations)]
    months = sorted({m["month"] for s in sections for m in s["months"]})
    per_month = []
    for m in months:
        rows = [(s, r) for s in sections for r in s["months"] if r["month"] == m]
        per_month.append(
            {
                "month": m,
                **_judged([(s["id"], s["target_class"], r) for s, r in rows]),
            }
        )
    return {
        "sections": sections,
        **_judged([(s["id"], s["target_class"], s) for s in sections]),
        "months": per_month,
    }


def _judged(rows: Sequence[tuple[str, int | None, Mapping[str, Any]]]) -> dict[str, Any]:
    complete = [(sid, r) for sid, _, r in rows if r["class"] is not None and not r["provisional"]]
    left_out = [sid for sid, t, r in rows if r["provisional"] and t is not None]
    return {
        "sections_assessed": sum(1 for _, r in complete if r["meets_target"] is not None),
        "sections_left_out": len(left_out),
        "provisional": [sid for sid, _, r in rows if r["provisional"]],
        "share_meeting_target": _share([r["meets_target"] for _, r in complete]),
        "worse_than_v": [sid for sid, r in complete if r["class"] == gb3838.WORSE_THAN_V],
    }
