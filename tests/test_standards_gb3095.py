"""GB 3095-2012 Table 1 limits (Grade I and II) and the sec. 8 validity minimums."""

from __future__ import annotations

import pytest

from envnet.core.standards import gb3095

# Transcribed from standards.md: (pollutant, window) -> (Grade II, Grade I)
TABLE = {
    ("so2", "annual"): (60, 20),
    ("so2", "24h"): (150, 50),
    ("so2", "1h"): (500, 150),
    ("no2", "annual"): (40, 40),
    ("no2", "24h"): (80, 80),
    ("no2", "1h"): (200, 200),
    ("co", "24h"): (4, 4),
    ("co", "1h"): (10, 10),
    ("o3", "8h"): (160, 100),
    ("o3", "1h"): (200, 160),
    ("pm10", "annual"): (70, 40),
    ("pm10", "24h"): (150, 50),
    ("pm25", "annual"): (35, 15),
    ("pm25", "24h"): (75, 35),
}


@pytest.mark.parametrize("key", sorted(TABLE))
def test_limits_match_the_standard(key):
    pollutant, window = key
    grade2, grade1 = TABLE[key]
    assert gb3095.limit(pollutant, window, 2) == grade2
    assert gb3095.limit(pollutant, window, 1) == grade1


def test_no_limit_where_table_sets_none():
    assert gb3095.limit("pm25", "1h") is None
    assert gb3095.limit("co", "annual") is None
    assert gb3095.check("pm10", "1h", 999) is None


@pytest.mark.parametrize("key", sorted(k for k in TABLE if k[1] != "annual"))
def test_exceedance_is_strictly_above_the_limit(key):
    pollutant, window = key
    lim = TABLE[key][0]
    step = 0.1 if pollutant == "co" else 1
    assert not gb3095.check(pollutant, window, lim - step).exceeded
    assert not gb3095.check(pollutant, window, lim).exceeded
    assert gb3095.check(pollutant, window, lim + step).exceeded


def test_check_cites_standard_and_clause():
    c = gb3095.check("pm25", "24h", 80)
    assert (c.standard, c.edition, c.unit) == ("GB 3095-2012", "2012", "ug/m3")
    assert c.clause == "Table 1, Grade II, PM2.5 24-hour mean"
    assert gb3095.check("o3", "8h", 120, grade=1).clause == (
        "Table 1, Grade I, O3 daily max 8-hour mean"
    )
    assert gb3095.check("o3", "8h", 120, grade=1).exceeded  # Grade I: 100


def test_validity_minimums():
    v = gb3095.validity()
    assert (v.min_minutes_1h, v.min_hours_8h, v.min_hours_24h) == (45, 6, 20)


def test_windows_for():
    assert set(gb3095.windows_for("o3")) == {"8h", "1h"}
    assert set(gb3095.windows_for("pm25")) == {"24h", "annual"}
