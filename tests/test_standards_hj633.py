"""HJ 633-2012: IAQI at every breakpoint edge, the other-column rules, rounding, primary
pollutants, categories. Expected values come from the standard's table transcribed below
(from shared/standards.md), not from the code's own table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envnet.core.standards import UnknownEdition, get_edition, hj633

STEPS = (0, 50, 100, 150, 200, 300, 400, 500)
# Transcribed independently from standards.md (HJ 633-2012 Table 1).
TABLE = {
    ("so2", "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
    ("so2", "1h"): (0, 150, 500, 650, 800),
    ("no2", "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
    ("no2", "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    ("pm10", "24h"): (0, 50, 150, 250, 350, 420, 500, 600),
    ("co", "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
    ("co", "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
    ("o3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
    ("o3", "8h"): (0, 100, 160, 215, 265, 800),
    ("pm25", "24h"): (0, 35, 75, 115, 150, 250, 350, 500),
}


def _delta(pollutant: str) -> float:
    # Small enough that the steepest segment (CO 1 h: 10 IAQI per mg/m3; ug/m3 columns at most
    # 1.43 per ug/m3) moves the index by less than 1: just below a breakpoint rounds up to the
    # breakpoint's IAQI, just above rounds up to one more.
    return 0.01 if pollutant == "co" else 0.1


def _edges():
    for (p, col), bps in TABLE.items():
        d = _delta(p)
        for i, bp in enumerate(bps):
            full = len(bps) == len(STEPS)
            if i > 0:
                yield pytest.param(p, col, round(bp - d, 3), STEPS[i], id=f"{p}-{col}-{bp}-below")
            yield pytest.param(p, col, bp, STEPS[i], id=f"{p}-{col}-{bp}-at")
            if i < len(bps) - 1:
                above = STEPS[i] + 1
            elif full:
                above = 500  # past the top of the scale: capped at 500
            else:
                above = None  # SO2 1 h / O3 8 h above 800: not indexed by this column
            yield pytest.param(p, col, round(bp + d, 3), above, id=f"{p}-{col}-{bp}-above")


def test_code_table_matches_the_standard():
    assert hj633.BREAKPOINTS["HJ 633-2012"] == TABLE
    assert hj633.IAQI_STEPS["HJ 633-2012"] == STEPS


@pytest.mark.parametrize("pollutant,column,conc,expected", list(_edges()))
def test_iaqi_at_every_breakpoint_edge(pollutant, column, conc, expected):
    assert hj633.iaqi(pollutant, column, conc) == expected


@pytest.mark.parametrize(
    "pollutant,column,conc,expected",
    [
        # PM2.5 80: 100 + (150-100)/(115-75) * (80-75) = 100 + 1.25*5 = 106.25 -> 107
        ("pm25", "24h", 80, 107),
        # PM2.5 35.1: 50 + 50/40 * 0.1 = 50.125 -> 51 (rounded up, never down)
        ("pm25", "24h", 35.1, 51),
        # CO 4.1 mg/m3 (binary 4.0999...): 100 + 50/10 * 0.1 = 100.5 -> 101, taken as decimal
        ("co", "24h", 4.1, 101),
        # SO2 24h 300: 100 + 50/325 * 150 = 123.08 -> 124
        ("so2", "24h", 300, 124),
        # NO2 1h 1500: 200 + 100/1140 * 300 = 226.32 -> 227
        ("no2", "1h", 1500, 227),
        # O3 8h 180: 100 + 50/55 * 20 = 118.18 -> 119
        ("o3", "8h", 180, 119),
        # PM10 0.5: 50/50 * 0.5 = 0.5 -> 1
        ("pm10", "24h", 0.5, 1),
        ("pm10", "24h", 0, 0),
        # PM2.5 600, beyond the 500 breakpoint: capped at 500
        ("pm25", "24h", 600, 500),
    ],
)
def test_iaqi_hand_computed(pollutant, column, conc, expected):
    assert hj633.iaqi(pollutant, column, conc) == expected


def test_iaqi_rejects_negative():
    with pytest.raises(ValueError):
        hj633.iaqi("pm25", "24h", -1)


# --- hourly AQI -------------------------------------------------------------------------


def test_hourly_uses_1h_columns_and_pm_24h_columns():
    r = hj633.hourly_aqi({"co": 10, "pm25": 75, "t": 20.0})
    assert r.iaqi["co"].column == "1h" and r.iaqi["co"].value == 100  # 1 h column: 10 -> 100
    assert r.iaqi["pm25"].column == "24h" and r.iaqi["pm25"].value == 100
    assert "t" not in r.iaqi
    assert r.window == "1h" and r.edition == "2012" and r.standard == "HJ 633-2012"


def test_hourly_so2_above_800_uses_24h_mean():
    # 24 h mean 100: 50 + (100-50)/(150-50) * 50 = 75
    r = hj633.hourly_aqi({"so2": 900}, so2_24h=100)
    assert r.aqi == 75
    assert r.iaqi["so2"].column == "24h" and r.iaqi["so2"].concentration == 100
    assert r.iaqi["so2"].note == hj633.CLAUSE_SO2_NOTE and hj633.CLAUSE_SO2_NOTE in r.clauses


def test_hourly_so2_at_800_stays_on_1h_column():
    r = hj633.hourly_aqi({"so2": 800}, so2_24h=100)
    assert r.aqi == 200 and r.iaqi["so2"].column == "1h" and r.iaqi["so2"].note is None


def test_hourly_so2_above_800_without_24h_mean_continues_on_24h_column():
    # 801 on the 24 h column: 200 + (300-200)/(1600-800) * 1 = 200.125 -> 201
    assert hj633.hourly_aqi({"so2": 801}).aqi == 201


# --- daily AQI --------------------------------------------------------------------------


def test_daily_uses_24h_columns():
    # CO 24 h 4 -> 100 (the 1 h column would give 4/5*50 = 40)
    r = hj633.daily_aqi({"co": 4, "no2": 80})
    assert r.iaqi["co"].value == 100 and r.iaqi["no2"].value == 100 and r.window == "24h"


def test_daily_o3_has_both_indices():
    # 8 h 160 -> 100 on the 8 h column; 1 h max 300 -> 150 on the 1 h column: both count
    r = hj633.daily_aqi({}, o3_8h_max=160, o3_1h_max=300)
    assert r.iaqi["o3_8h"].column == "8h" and r.iaqi["o3_8h"].value == 100
    assert r.iaqi["o3"].column == "1h" and r.iaqi["o3"].value == 150
    assert r.aqi == 150 and r.primary == ("o3",) and r.exceeding == ("o3",)
    assert r.concentrations == {"o3_1h_max": 300, "o3_8h": 160}


def test_daily_o3_1h_counts_below_800():
    # The day: PM10 50 -> 50, O3 8 h 155 -> 95.8 -> 96, O3 1 h 219.5 -> 109.75 -> 110
    r = hj633.daily_aqi({"pm10": 50}, o3_8h_max=155, o3_1h_max=219.5)
    assert r.aqi == 110 and r.primary == ("o3",) and r.category.level == 3


def test_daily_o3_8h_at_800_is_indexed():
    r = hj633.daily_aqi({}, o3_8h_max=800, o3_1h_max=1200)
    assert r.iaqi["o3_8h"].value == 300 and r.iaqi["o3"].value == 500 and r.aqi == 500


def test_daily_o3_8h_above_800_uses_1h():
    # 1 h 850: 300 + (400-300)/(1000-800) * 50 = 325; the 8 h value is not indexed
    r = hj633.daily_aqi({}, o3_8h_max=801, o3_1h_max=850)
    assert r.aqi == 325 and r.iaqi["o3"].column == "1h" and "o3_8h" not in r.iaqi
    assert hj633.CLAUSE_O3_NOTE in r.clauses
    assert r.concentrations["o3_8h"] == 801


def test_daily_o3_8h_above_800_without_1h_continues_on_1h_column():
    # 801 on the 1 h column: 300 + 100/200 * 1 = 300.5 -> 301
    r = hj633.daily_aqi({}, o3_8h_max=801)
    assert r.aqi == 301 and r.iaqi["o3"].note == hj633.CLAUSE_O3_NOTE


# --- real-time report -------------------------------------------------------------------


def test_realtime_has_nine_indicators_and_o3_8h_index():
    conc = {"so2": 10, "no2": 20, "o3": 100, "co": 1, "pm10": 40, "pm25": 20}
    r = hj633.hourly_aqi(conc, o3_8h=170, means_24h={"pm10": 60, "pm25": 30, "so2": 9})
    assert set(r.concentrations) == {*conc, "o3_8h", "pm10_24h", "pm25_24h"}
    # O3 8 h 170: 100 + 50/55 * 10 = 109.09 -> 110, the largest
    assert r.iaqi["o3_8h"].value == 110 and r.aqi == 110 and r.primary == ("o3_8h",)
    assert r.pm_basis == "1h" and r.iaqi["pm25"].concentration == 20


def test_realtime_pm_basis_24h_reads_the_moving_mean():
    # PM2.5 1 h 115.1 -> 150.14 -> 151; its 24 h moving mean 75 -> 100
    one = hj633.hourly_aqi({"pm25": 115.1}, means_24h={"pm25": 75})
    day = hj633.hourly_aqi({"pm25": 115.1}, means_24h={"pm25": 75}, pm_basis="24h")
    assert one.aqi == 151 and day.aqi == 100
    assert day.iaqi["pm25"].concentration == 75 and day.pm_basis == "24h"
    assert day.concentrations == one.concentrations == {"pm25": 115.1, "pm25_24h": 75}
    # without a 24 h moving mean there is no real-time PM IAQI on that basis
    assert hj633.hourly_aqi({"pm25": 115.1}, pm_basis="24h").aqi is None
    with pytest.raises(ValueError):
        hj633.hourly_aqi({"pm25": 1}, pm_basis="8h")  # type: ignore[arg-type]


def test_realtime_o3_8h_above_800_is_not_indexed():
    r = hj633.hourly_aqi({"o3": 900}, o3_8h=801)
    assert "o3_8h" not in r.iaqi and r.iaqi["o3"].value == 350
    assert hj633.CLAUSE_O3_NOTE in r.clauses


def test_daily_rejects_o3_as_24h_mean():
    with pytest.raises(ValueError):
        hj633.daily_aqi({"o3": 100})


def test_no_data_no_aqi():
    r = hj633.hourly_aqi({"t": 3})
    assert r.aqi is None and r.category is None and r.primary == ()


# --- primary and exceeding pollutants ---------------------------------------------------


def test_primary_tie_lists_both_in_table_order():
    # PM2.5 75 -> 100 and PM10 150 -> 100: a tie at AQI 100 > 50
    r = hj633.daily_aqi({"pm25": 75, "pm10": 150, "no2": 40})
    assert r.aqi == 100 and r.primary == ("pm10", "pm25") and r.exceeding == ()


def test_no_primary_at_aqi_50():
    r = hj633.daily_aqi({"pm25": 35, "pm10": 50})
    assert r.aqi == 50 and r.primary == ()


def test_primary_at_aqi_51():
    r = hj633.daily_aqi({"pm25": 35.1, "pm10": 50})  # 51 vs 50
    assert r.aqi == 51 and r.primary == ("pm25",)


def test_exceeding_is_iaqi_above_100():
    # PM2.5 75.1 -> 101 exceeding; NO2 80 -> 100 not exceeding; PM10 151 -> 101 exceeding
    r = hj633.daily_aqi({"pm25": 75.1, "no2": 80, "pm10": 151})
    assert r.exceeding == ("pm10", "pm25") and r.primary == ("pm10", "pm25")


# --- categories -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aqi,level,zh,en,colour",
    [
        (0, 1, "优", "excellent", "green"),
        (50, 1, "优", "excellent", "green"),
        (51, 2, "良", "good", "yellow"),
        (100, 2, "良", "good", "yellow"),
        (101, 3, "轻度污染", "lightly polluted", "orange"),
        (150, 3, "轻度污染", "lightly polluted", "orange"),
        (151, 4, "中度污染", "moderately polluted", "red"),
        (200, 4, "中度污染", "moderately polluted", "red"),
        (201, 5, "重度污染", "heavily polluted", "purple"),
        (300, 5, "重度污染", "heavily polluted", "purple"),
        (301, 6, "严重污染", "severely polluted", "maroon"),
        (500, 6, "严重污染", "severely polluted", "maroon"),
    ],
)
def test_category_edges(aqi, level, zh, en, colour):
    c = hj633.category(aqi)
    assert (c.level, c.name_zh, c.name_en, c.colour_en) == (level, zh, en, colour)
    assert c.roman == ("I", "II", "III", "IV", "V", "VI")[level - 1]


def test_result_records_category_and_clauses():
    r = hj633.hourly_aqi({"pm25": 120})  # 150 + 50/35 * 5 = 157.14 -> 158
    assert r.aqi == 158 and r.category.name_en == "moderately polluted"
    assert r.clauses == ("Table 1", "Table 2")
    assert r.to_dict()["category"]["name_zh"] == "中度污染"


# --- editions ---------------------------------------------------------------------------


def test_only_2012_edition_ships():
    assert get_edition("2012").aqi == "HJ 633-2012"
    with pytest.raises(UnknownEdition):
        get_edition("2024")
    with pytest.raises(UnknownEdition):
        hj633.hourly_aqi({"pm25": 10}, edition="2024")


# --- properties -------------------------------------------------------------------------

_columns = st.sampled_from(sorted(TABLE))


@given(_columns, st.floats(0, 1), st.floats(0, 1))
def test_iaqi_monotonic_in_concentration(col, a, b):
    pollutant, column = col
    top = TABLE[col][-1]
    lo, hi = sorted((a * top, b * top))
    assert hj633.iaqi(pollutant, column, lo) <= hj633.iaqi(pollutant, column, hi)


@given(
    st.sampled_from(hj633.POLLUTANTS),
    st.floats(0, 3000, allow_nan=False),
    st.floats(0, 3000, allow_nan=False),
)
def test_hourly_aqi_monotonic_in_each_pollutant(pollutant, a, b):
    if pollutant == "co":
        a, b = a / 20, b / 20
    lo, hi = sorted((a, b))
    base = {"pm25": 40.0, "no2": 50.0}
    r_lo = hj633.hourly_aqi(base | {pollutant: lo})
    r_hi = hj633.hourly_aqi(base | {pollutant: hi})
    assert r_lo.aqi <= r_hi.aqi
