"""Observed heavy-pollution episode levels from city mean daily AQI (oldest first)."""

from __future__ import annotations

import pytest

from envnet.core.standards.episodes import assess, episode_level


@pytest.mark.parametrize(
    "series,level",
    [
        ([], None),
        ([250], None),  # one day above 200: not yet an episode
        ([200, 200, 200], None),  # 200 is not above 200
        ([150, 201, 201], "yellow"),  # 2 days
        ([201, 201, 201], "orange"),  # 3 days
        ([250, 250, 250, 250], "orange"),  # 4 days but none above 300
        ([250, 301, 250, 250], "orange"),  # 4 days, only 1 above 300
        ([250, 301, 301, 250], "red"),  # 4 days, 2 above 300
        ([301, 301, 301], "orange"),  # 3 days above 300 is still only 3 days
        ([501], "red"),  # any day above 500
        ([500], None),  # 500 is not above 500
        ([300, 501, 210], "red"),  # a day above 500 within the current run
        ([501, 150, 210], None),  # ... but not once the run has broken
        ([250, 250, 180], None),  # the latest day ended the run
        ([250, None, 250], None),  # a missing day breaks the run
        ([90, 230, 260, 280], "orange"),
    ],
)
def test_levels(series, level):
    assert episode_level(series) == level


def test_assessment_is_observed_and_cited():
    a = assess([250, 310, 320, 210])
    assert a.level.name == "red" and a.level.warning_level == "I"
    assert a.run_days == 4 and a.severe_days == 2 and a.latest_aqi == 210
    assert a.observed and a.edition == "2012" and "observed" in a.standard
    assert a.level.name_zh == "红色预警(Ⅰ级)"
