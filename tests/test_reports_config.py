"""The [reports] and [targets] settings: defaults, environment overrides, one-line errors."""

from __future__ import annotations

import pytest

from envnet.config import ConfigError, load_config


def test_defaults_are_the_bureaus_local_day_and_all_six_pollutants():
    s = load_config(None, environ={})
    assert s.reports.timezone == "Asia/Shanghai"
    assert s.reports.required_pollutants == ["so2", "no2", "pm10", "co", "o3", "pm25"]
    assert s.targets.pm25_annual is None and s.targets.sections == {}


def test_environment_overrides_lists_and_section_targets():
    s = load_config(
        None,
        environ={
            "ENVNET_REPORTS_REQUIRED_POLLUTANTS": "pm25, pm10",
            "ENVNET_TARGETS_SECTIONS": '{"hun-city-01": "III"}',
            "ENVNET_TARGETS_GOOD_DAYS_RATIO": "82.5",
        },
    )
    assert s.reports.required_pollutants == ["pm25", "pm10"]
    assert s.targets.sections == {"hun-city-01": "III"} and s.targets.good_days_ratio == 82.5


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ENVNET_REPORTS_TIMEZONE": "Mars/Olympus"}, "reports.timezone"),
        ({"ENVNET_REPORTS_REQUIRED_POLLUTANTS": "pm1"}, "reports.required_pollutants"),
        ({"ENVNET_TARGETS_SECTIONS": '{"x": "VII"}'}, "targets.sections"),
        ({"ENVNET_TARGETS_GOOD_DAYS_RATIO": "120"}, "targets.good_days_ratio"),
    ],
)
def test_a_wrong_setting_names_its_key(env, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, environ=env)
    assert str(e.value).startswith(key)
