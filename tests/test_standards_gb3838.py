"""GB 3838-2002 surface-water classes: every class edge, DO's >= direction, worse than V,
pH, lakes, overall class."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envnet.core.standards import gb3838

# Transcribed from standards.md; classes I..V.
UPPER = {  # value <= limit
    "codmn": (2, 4, 6, 10, 15),
    "cod": (15, 15, 20, 30, 40),
    "bod5": (3, 3, 4, 6, 10),
    "nh3n": (0.15, 0.5, 1.0, 1.5, 2.0),
    "tp": (0.02, 0.1, 0.2, 0.3, 0.4),
}
DO = (7.5, 6, 5, 3, 2)  # value >= limit
EPS = 0.001


def _upper_edges():
    for param, limits in UPPER.items():
        for i, lim in enumerate(limits):
            cls = limits.index(lim) + 1  # equal limits (COD I/II 15): the better class wins
            yield pytest.param(param, lim, cls, id=f"{param}-{lim}-at")
            yield pytest.param(param, round(lim - EPS, 4), cls, id=f"{param}-{lim}-below")
            above = i + 2 if i < 4 else 6
            if i < 4 and limits[i + 1] == lim:
                continue
            yield pytest.param(param, round(lim + EPS, 4), above, id=f"{param}-{lim}-above")


@pytest.mark.parametrize("param,value,expected", list(_upper_edges()))
def test_upper_limit_edges(param, value, expected):
    assert gb3838.water_class(param, value) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        (7.5, 1),
        (7.6, 1),
        (7.49, 2),
        (6, 2),
        (5.99, 3),
        (5, 3),
        (4.99, 4),
        (3, 4),
        (2.99, 5),
        (2, 5),
        (1.99, 6),  # below 2 mg/L: worse than V
        (0, 6),
    ],
)
def test_dissolved_oxygen_is_a_minimum(value, expected):
    assert gb3838.water_class("do", value) == expected


@pytest.mark.parametrize(
    "value,expected", [(5.99, 6), (6, 1), (7.4, 1), (9, 1), (9.01, 6), (3, 6), (11, 6)]
)
def test_ph_outside_6_to_9_is_worse_than_v(value, expected):
    assert gb3838.water_class("ph", value) == expected


def test_lakes_use_stricter_tp_and_tn_applies_only_to_lakes():
    assert gb3838.water_class("tp", 0.05) == 2  # river: <= 0.1
    assert gb3838.water_class("tp", 0.05, "lake") == 3  # lake: <= 0.05
    assert gb3838.water_class("tp", 0.21, "lake") == 6
    assert gb3838.water_class("tn", 1.0, "lake") == 3
    assert gb3838.water_class("tn", 1.0) is None  # not assessed in rivers
    assert gb3838.water_class("ec", 500) is None  # not a classified item


def test_overall_class_is_the_worst_parameter():
    a = gb3838.classify({"ph": 7.4, "do": 6.8, "nh3n": 1.2, "cod": 25, "ec": 512})
    # DO 6.8 -> II, NH3-N 1.2 -> IV, COD 25 -> IV, pH -> I
    assert a.classes == {"ph": 1, "do": 2, "nh3n": 4, "cod": 4}
    assert a.overall == 4 and a.worst == ("nh3n", "cod")
    assert a.standard == "GB 3838-2002" and a.edition == "2002"  # the standard's own edition
    assert gb3838.classify({"ec": 1}).overall is None


def test_class_from_part_of_the_assessment_set_is_provisional():
    # The default probe: pH and DO only. DO 3.5 -> IV, but CODMn, NH3-N and TP are unknown.
    a = gb3838.classify({"ph": 7.1, "do": 3.5, "ec": 400})
    assert a.overall == 4 and a.provisional and not a.complete
    assert a.basis == ("ph", "do") and a.missing == ("codmn", "nh3n", "tp")
    # a provisional class neither meets nor misses a target, however good or bad it is
    assert gb3838.meets_target(a, 3) is None and gb3838.meets_target(a, 5) is None
    full = gb3838.classify({"ph": 7.1, "do": 3.5, "codmn": 5, "nh3n": 0.8, "tp": 0.15})
    assert full.complete and full.missing == () and full.overall == 4
    assert gb3838.meets_target(full, 4) is True and gb3838.meets_target(full, 3) is False
    assert gb3838.meets_target(full, None) is None


def test_assessment_set_from_the_registry():
    assert gb3838.assessment_set(None) == gb3838.ASSESSMENT_ITEMS
    assert gb3838.assessment_set("ph, do,cod") == ("ph", "do", "cod")
    a = gb3838.classify({"ph": 7, "do": 8, "cod": 12}, required=("ph", "do", "cod"))
    assert a.complete and a.overall == 1
    with pytest.raises(ValueError):
        gb3838.assessment_set(["ph", "ec"])  # conductivity is not a GB 3838 class item


def test_worse_than_v_label():
    assert gb3838.class_label(6) == ("劣Ⅴ类", "worse than Class V")
    assert gb3838.class_label(3) == ("Ⅲ类", "Class III")


@pytest.mark.parametrize(
    "text,cls", [(3, 3), ("3", 3), ("III", 3), ("Ⅳ", 4), ("Ⅲ类", 3), ("class ii", 2)]
)
def test_parse_class(text, cls):
    assert gb3838.parse_class(text) == cls


@pytest.mark.parametrize("bad", [0, 6, "VI", "劣V", ""])
def test_parse_class_rejects(bad):
    with pytest.raises(ValueError):
        gb3838.parse_class(bad)


def test_class_limit_quotes_the_target_limit():
    assert gb3838.class_limit("nh3n", 3, 1.2) == ("<=", 1.0)
    assert gb3838.class_limit("do", 3, 4.0) == (">=", 5)
    assert gb3838.class_limit("ph", 3, 5.5) == (">=", 6)
    assert gb3838.class_limit("ph", 3, 9.5) == ("<=", 9)


@given(st.sampled_from(sorted(UPPER)), st.floats(0, 100), st.floats(0, 100))
def test_class_monotonic_for_upper_limits(param, a, b):
    lo, hi = sorted((a, b))
    assert gb3838.water_class(param, lo) <= gb3838.water_class(param, hi)


@given(st.floats(0, 20), st.floats(0, 20))
def test_class_monotonic_for_do(a, b):
    lo, hi = sorted((a, b))
    assert gb3838.water_class("do", lo) >= gb3838.water_class("do", hi)
