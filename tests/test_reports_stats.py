"""The reports' statistics against values worked out by hand (the arithmetic is in comments)."""

from __future__ import annotations

from datetime import date

import pytest

from envnet.core.standards import gb3095
from envnet.domain.reports import daily, export, rules, stats, water
from envnet.domain.reports.stations import StationInfo
from server.reports import completeness
from server.reports.service import good_days_progress, pm25_progress

V = gb3095.validity()  # 45 min / 6 h / 20 h


# -- HJ 663-2013 percentile ------------------------------------------------------------------
def test_percentile_interpolates_between_neighbours_per_hj663():
    # sorted 0.8 1.0 1.2 1.6 2.4, n = 5: k = 1 + 4 * 0.95 = 4.8, s = 4
    # m = X4 + (X5 - X4) * 0.8 = 1.6 + 0.8 * 0.8 = 2.24
    assert rules.percentile([1.6, 0.8, 2.4, 1.0, 1.2], 95) == pytest.approx(2.24)
    # 1..20, p90: k = 1 + 19 * 0.9 = 18.1 -> 18 + (19 - 18) * 0.1 = 18.1
    assert rules.percentile(list(range(20, 0, -1)), 90) == pytest.approx(18.1)
    # 100, 110 .. 200 (11 values), p90: k = 1 + 10 * 0.9 = 10 exactly -> X10 = 190
    assert rules.percentile([100 + 10 * i for i in range(11)], 90) == pytest.approx(190)


def test_percentile_edges():
    assert rules.percentile([], 95) is None
    assert rules.percentile([3.5], 95) == 3.5  # k = 1
    assert rules.percentile([1, 2, 3], 100) == 3  # k = 3 = n
    assert rules.percentile([1, 2, 3], 0) == 1
    with pytest.raises(ValueError):
        rules.percentile([1], 101)


# -- good days, categories -------------------------------------------------------------------
def _day(n: int, level: int | None, valid: bool = True, **values: float) -> stats.DayIndex:
    return stats.DayIndex(
        f"2026-01-{n:02d}", valid, None if level is None else 50 * level, level, values
    )


def test_good_days_ratio_counts_valid_days_only():
    days = [
        _day(1, 1),  # good
        _day(2, 2),  # good
        _day(3, 3),  # lightly polluted
        _day(4, 2),  # good
        _day(5, 1, valid=False),  # a "good" AQI from too few pollutants: not counted
        _day(6, None, valid=False),  # no data
    ]
    gd = stats.good_days(days)
    # 3 good of 4 valid = 75 %; counting the invalid days would give 3/6 or 4/6
    assert (gd.days, gd.valid, gd.good, gd.ratio) == (6, 4, 3, 75.0)
    assert stats.category_counts(days) == {"I": 1, "II": 2, "III": 1, "IV": 0, "V": 0, "VI": 0}


def test_good_days_ratio_without_valid_days_is_none():
    assert stats.good_days([_day(1, None, valid=False)]).ratio is None


def test_good_day_is_aqi_at_most_100():
    # HJ 633 Table 2: level II is AQI 51..100, level III starts at 101
    assert rules.is_good_day(2) and not rules.is_good_day(3)


# -- period statistics, composite index ------------------------------------------------------
def test_period_statistics_use_each_pollutants_valid_days():
    days = [
        _day(1, 2, pm25=30, co=0.8, o3_8h=100),
        _day(2, 2, pm25=50, co=1.6, o3_8h=140),
        _day(3, 3, valid=False, pm25=70, co=2.4),  # AQI invalid, its PM2.5 and CO still count
        _day(4, 2, pm25=90, co=1.2, o3_8h=120),
    ]
    s = stats.period_statistics(days)
    assert s["pm25"] == 60.0  # (30 + 50 + 70 + 90) / 4
    # CO sorted 0.8 1.2 1.6 2.4: k = 1 + 3 * 0.95 = 3.85 -> 1.6 + 0.8 * 0.85 = 2.28
    assert s["co"] == pytest.approx(2.28)
    # O3 sorted 100 120 140: k = 1 + 2 * 0.9 = 2.8 -> 120 + 20 * 0.8 = 136
    assert s["o3_8h"] == pytest.approx(136)
    assert s["so2"] is None and s["no2"] is None
    assert stats.composite_index(s) is None  # needs all six


def test_composite_index_divides_by_gb3095_grade_ii_limits():
    s = {"pm25": 52.5, "pm10": 35, "so2": 12, "no2": 20, "co": 1.2, "o3_8h": 80}
    # 52.5/35 + 35/70 + 12/60 + 20/40 + 1.2/4 + 80/160 = 1.5 + 0.5 + 0.2 + 0.5 + 0.3 + 0.5
    assert stats.composite_index(s) == pytest.approx(3.5)


# -- ranking ---------------------------------------------------------------------------------
def test_competition_ranking_ties_share_a_rank_and_skip_the_next():
    items = [("a", 1.5), ("b", 1.2), ("c", 1.5), ("d", None), ("e", 0.9), ("f", 1.2)]
    ranked = stats.competition_rank(items, lambda it: it[1])
    # lower is better: e 0.9 -> 1; b, f 1.2 -> 2, 2; a, c 1.5 -> 4, 4; d unranked, last
    assert [(r, it[0]) for r, it in ranked] == [
        (1, "e"),
        (2, "b"),
        (2, "f"),
        (4, "a"),
        (4, "c"),
        (None, "d"),
    ]


def test_ranking_higher_is_better_for_good_days():
    ranked = stats.competition_rank([("x", 80.0), ("y", 90.0), ("z", 90.0)], lambda i: i[1], True)
    assert [(r, it[0]) for r, it in ranked] == [(1, "y"), (1, "z"), (3, "x")]


# -- hours and days --------------------------------------------------------------------------
H0 = 1_767_196_800  # a CST midnight (2026-01-01 00:00+08:00)
HOURS = [H0 + 3600 * i for i in range(24)]


def test_hourly_mean_needs_45_minutes_of_unflagged_data():
    c = {
        "pm25": {
            HOURS[0]: daily.HourCounts(45, 45 * 80.0),  # 45 x 1 min = 45 min: valid, mean 80
            HOURS[1]: daily.HourCounts(44, 44 * 80.0),  # 44 min: no mean
        }
    }
    assert daily.hourly_means(c, 60, V.min_minutes_1h) == {"pm25": {HOURS[0]: 80.0}}
    # one reading every 15 min stands for 15 min: 3 -> 45 min valid, 2 -> 30 min not
    c15 = {"pm25": {HOURS[0]: daily.HourCounts(3, 3 * 10.0), HOURS[1]: daily.HourCounts(2, 20.0)}}
    assert daily.hourly_means(c15, 900, V.min_minutes_1h) == {"pm25": {HOURS[0]: 10.0}}


def test_24h_mean_needs_20_valid_hours():
    twenty = {"pm25": {h: 80.0 for h in HOURS[:20]}, "pm10": {h: 100.0 for h in HOURS[:19]}}
    dv = daily.day_values(twenty, HOURS, V, 14)
    assert dv.values == {"pm25": 80.0}  # PM10 has 19 valid hours: no daily mean
    assert dv.hours == {"pm25": 20, "pm10": 19}


def test_o3_daily_max_8h_needs_14_valid_8h_means():
    o3 = {h: 10.0 * i for i, h in enumerate(HOURS)}  # hour i has 10*i ug/m3
    dv = daily.day_values({"o3": o3}, HOURS, V, 14)
    # 17 windows end 08:00..24:00; the last covers hours 16..23: mean 10 * 19.5 = 195
    assert dv.o3_8h_count == 17 and dv.values["o3_8h"] == 195.0
    assert dv.o3_1h_max == 230.0
    # without hours 0..5 the window ending at hour k (7..23) has k - max(k-7, 6) + 1 hours:
    # 2, 3, 4, 5 for k = 7..10, then >= 6 from k = 11: 13 valid windows < 14 -> no daily max
    gap = {h: v for h, v in o3.items() if h >= HOURS[6]}
    dv = daily.day_values({"o3": gap}, HOURS, V, 14)
    assert dv.o3_8h_count == 13 and "o3_8h" not in dv.values


def test_daily_aqi_from_constant_concentrations():
    values = {"pm25": 80.0, "pm10": 100.0, "so2": 10.0, "no2": 40.0, "co": 1.0, "o3_8h": 100.0}
    idx = daily.daily_index(values, rules_required(), "2012")
    # PM2.5 80: (150 - 100) / (115 - 75) * (80 - 75) + 100 = 106.25 -> 107 (rounded up)
    # PM10 100: (100 - 50) / (150 - 50) * (100 - 50) + 50 = 75; NO2 40 -> 50; O3 8h 100 -> 50
    # SO2 10: 50 / 50 * 10 = 10; CO 1: 50 / 2 * 1 = 25
    assert idx.result.aqi == 107 and idx.valid
    assert idx.result.primary == ("pm25",)
    assert {p: i.value for p, i in idx.result.iaqi.items()} == {
        "so2": 10,
        "no2": 50,
        "pm10": 75,
        "co": 25,
        "o3_8h": 50,
        "pm25": 107,
    }
    partial = daily.daily_index({"pm25": 20.0}, rules_required(), "2012")
    assert not partial.valid and partial.result.aqi == 29  # 50/35*20 = 28.57 -> 29
    assert set(partial.missing) == {"so2", "no2", "pm10", "co", "o3"}


def test_daily_index_counts_the_o3_daily_max_1h_every_day():
    # From hourly data: O3 at 219.5 for one hour and 150 otherwise; PM10 50 all day.
    o3 = {h: 150.0 for h in HOURS}
    o3[HOURS[14]] = 219.5
    dv = daily.day_values({"o3": o3, "pm10": {h: 50.0 for h in HOURS}}, HOURS, V, 14)
    assert dv.values["o3_1h_max"] == 219.5
    idx = daily.daily_index(dv.values, ["pm10", "o3"], "2012")
    # O3 1 h max 219.5: 100 + 50/100 * 19.5 = 109.75 -> 110, above the 8 h index
    assert idx.result.iaqi["o3"].value == 110 and idx.result.aqi == 110
    assert idx.result.primary == ("o3",) and idx.valid


def rules_required() -> list[str]:
    return ["so2", "no2", "pm10", "co", "o3", "pm25"]


def test_region_averages_concentrations_then_indexes():
    a = {"pm25": 100.0, "pm10": 50.0}
    b = {"pm25": 40.0}
    mean, n = daily.mean_values([a, b])
    assert (mean, n) == ({"pm25": 70.0, "pm10": 50.0}, 2)  # PM10 from the one station with it
    idx = daily.daily_index(mean, ["pm25"], "2012")
    # PM2.5 70: 50 / 40 * (70 - 35) + 50 = 93.75 -> 94 (the mean of the stations' AQIs,
    # (132 + 57) / 2 = 94.5, is not the official method)
    assert idx.result.aqi == 94


# -- water -----------------------------------------------------------------------------------
def test_water_day_class_is_the_worst_parameter_and_monthly_mean_decides_the_month():
    # a section assessed on NH3-N alone (registry assessment_params), so its classes are complete
    st = StationInfo("hun", "water", True, target_class=3, assessment=ONLY_NH3N)
    nh3n = {h: 1.8 for h in HOURS[:6]}  # 6 valid hours: class V (1.5 < 1.8 <= 2.0)
    do = {h: 6.5 for h in HOURS[:6]}  # class II (6 <= 6.5 < 7.5)
    d1 = water.day({"nh3n": nh3n, "do": do}, HOURS, 6, "river", "2012", ONLY_NH3N)
    assert (d1.cls, d1.worst) == (5, ("nh3n",))
    d2 = water.day({"nh3n": {h: 0.4 for h in HOURS[:6]}}, HOURS, 6, "river", "2012", ONLY_NH3N)
    assert d2.cls == 2  # 0.4 <= 0.5
    d3 = water.day({"nh3n": {h: 5.0 for h in HOURS[:5]}}, HOURS, 6, "river", "2012", ONLY_NH3N)
    assert d3.cls is None  # 5 valid hours < 6: no daily value at all
    days = [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)]
    sec = water.section_period(st, dict(zip(days, [d1, d2, d3], strict=True)), days, "2012")
    # month mean NH3-N (1.8 + 0.4) / 2 = 1.1 -> class IV (1.0 < 1.1 <= 1.5), target III: missed
    assert sec["means"]["nh3n"] == 1.1 and sec["class"] == 4 and sec["meets_target"] is False
    assert [r["class"] for r in sec["daily"]] == [5, 2, None]


ONLY_NH3N = ("nh3n",)


def _full(nh3n: float) -> dict[str, dict[int, float]]:
    """A whole day of the five assessment items: pH I, DO I, CODMn I, TP I, and NH3-N."""
    base = {"ph": 7.5, "do": 8.0, "codmn": 1.5, "tp": 0.02, "nh3n": nh3n}
    return {p: {h: v for h in HOURS} for p, v in base.items()}


def test_water_summary_share_and_worse_than_v():
    st_ok = StationInfo("a", "water", True, target_class=4)
    st_bad = StationInfo("b", "water", True, target_class=3)
    st_none = StationInfo("c", "water", True, target_class=None)
    d = date(2026, 1, 1)
    good = water.day(_full(1.2), HOURS, 6, "river", "2012")  # IV
    bad = water.day(_full(2.5), HOURS, 6, "river", "2012")  # worse than V
    s = water.period_summary(
        {"a": st_ok, "b": st_bad, "c": st_none},
        {"a": {d: good}, "b": {d: bad}, "c": {d: good}},
        [d],
        "2012",
    )
    # a meets IV, b misses III; c has no target and is not judged: 1 of 2 = 50 %
    assert s["share_meeting_target"] == 50.0 and s["sections_assessed"] == 2
    assert s["worse_than_v"] == ["b"] and s["sections_left_out"] == 0


def test_provisional_sections_are_shown_but_left_out_of_the_share():
    st_full = StationInfo("a", "water", True, target_class=3)
    st_part = StationInfo("b", "water", True, target_class=3)
    d = date(2026, 1, 1)
    full = water.day(_full(0.4), HOURS, 6, "river", "2012")  # II: meets III
    # pH and DO only (the default probe): DO 2.5 -> V, pH 5 -> worse than V; still provisional
    part = water.day(
        {"ph": {h: 5.0 for h in HOURS}, "do": {h: 2.5 for h in HOURS}}, HOURS, 6, "river", "2012"
    )
    assert part.cls == 6 and part.provisional and not full.provisional
    s = water.period_summary(
        {"a": st_full, "b": st_part}, {"a": {d: full}, "b": {d: part}}, [d], "2012"
    )
    sec_b = s["sections"][1]
    assert sec_b["class"] == 6 and sec_b["provisional"] is True
    assert sec_b["basis"] == ["ph", "do"] and sec_b["missing"] == ["codmn", "nh3n", "tp"]
    assert sec_b["meets_target"] is None and sec_b["edition"] == "2002"
    assert s["share_meeting_target"] == 100.0 and s["sections_assessed"] == 1
    assert s["sections_left_out"] == 1 and s["provisional"] == ["b"]
    assert s["worse_than_v"] == []  # a provisional class is not counted worse than V either
    assert s["months"][0]["sections_left_out"] == 1


# -- targets ---------------------------------------------------------------------------------
def test_pm25_progress_and_the_mean_the_rest_of_the_year_must_keep():
    city = [_day(i, 2, pm25=v) for i, v in enumerate([40.0, 50.0, 30.0, 40.0], start=1)]
    p = pm25_progress(city, 35.0, remaining=6)
    # YTD mean (40 + 50 + 30 + 40) / 4 = 40 > 35: not on track
    # rest of year: (35 * (4 + 6) - 160) / 6 = 190 / 6 = 31.667
    assert p["ytd_mean"] == 40.0 and p["on_track"] is False
    assert p["required_mean_rest_of_year"] == pytest.approx(31.667)


def test_good_days_progress_counts_good_days_still_needed():
    city = [_day(1, 1), _day(2, 3), _day(3, 2), _day(4, 4), _day(5, None, valid=False)]
    g = good_days_progress(city, 80.0, remaining=6)
    # YTD: 2 good of 4 valid = 50 %; year: 80 % of (4 + 6) = 8 good days, 2 so far -> 6 more
    assert (g["ytd_ratio"], g["on_track"], g["good_days_needed_rest_of_year"]) == (50.0, False, 6)
    assert g["attainable"] is True
    assert good_days_progress(city, None, 6)["on_track"] is None


# -- completeness, export --------------------------------------------------------------------
def test_completeness_month_row():
    rows = [
        {"date": "2026-01-01", "expected_hours": 24, "valid_hours": 24, "counts": True},
        {"date": "2026-01-02", "expected_hours": 24, "valid_hours": 19, "counts": False},
        {"date": "2026-01-03", "expected_hours": 24, "valid_hours": 0, "counts": False},
    ]
    m = completeness.month_row("2026-01", rows, None)
    # (24 + 19 + 0) / 72 = 43 / 72 = 59.72 %
    assert (m["valid_hours"], m["expected_hours"], m["completeness"]) == (43, 72, 59.72)
    assert m["days_counted"] == 1 and m["days_not_counted"] == ["2026-01-02", "2026-01-03"]


def test_csv_flattens_nested_fields():
    report = {
        "report": "daily",
        "stations": [{"id": "s1", "iaqi": {"pm25": 107}, "primary": ["pm25", "pm10"]}],
        "districts": [],
        "city": {"id": "city", "iaqi": {}, "primary": []},
        "water": [],
    }
    text = export.to_csv(report)
    assert text.splitlines() == ["id,iaqi_pm25,primary", "s1,107,pm25;pm10", "city,,"]
    with pytest.raises(KeyError):
        export.to_csv(report, "nope")
