"""The network-wide observed episode, from the stations' daily AQI through the engine."""

from __future__ import annotations

from alerts_helpers import air_feed, new_evaluator

from envnet.domain.alerts.model import NETWORK


def _days(ev, stations):
    """stations: (id, class, PM2.5 per day); days are CST days from 2026-01-01."""
    feeds = [(air_feed(ev, sid, **{"class": cls}), days) for sid, cls, days in stations]
    for day in range(len(stations[0][2])):
        for _hour in range(24):
            for f, days in feeds:
                pm = days[day]
                # a small wiggle keeps the flat-line rule quiet; the hourly mean is exactly pm
                f.run(1, lambda ts, pm=pm: {"pm25": pm + ((int(ts) // 600) % 2 - 0.5)})
    return [e for f, _ in feeds for e in f.events]


def test_episode_levels_follow_the_city_mean_daily_aqi():
    ev = new_evaluator()
    # PM2.5 200 -> IAQI 200 + 100/100 * 50 = 250 (heavily polluted); 20 -> 20/35*50 -> 29
    events = _days(
        ev,
        [
            ("sy-nat-01", "national", [200, 200, 200, 20, 20]),
            ("sy-nat-02", "national", [200, 200, 200, 20, 20]),
            ("sy-mic-01", "micro", [20] * 5),  # micro stations do not count by default
        ],
    )
    changes = [e.episode for e in events if e.type == "episode.changed"]
    assert [(c["day"], c["level"], c["city_aqi"]) for c in changes] == [
        ("2026-01-02", "yellow", 250),  # two days > 200
        ("2026-01-03", "orange", 250),  # three days
        ("2026-01-04", None, 29),  # the run is over
    ]
    assert all(c["observed"] for c in changes)
    episode = [e for e in events if e.alert and e.alert.station == NETWORK]
    assert [(e.type, e.alert.severity) for e in episode] == [
        ("alert.opened", "medium"),
        ("alert.escalated", "high"),
        ("alert.resolved", "high"),
    ]
    assert episode[0].alert.category_en == "yellow warning (level III)"
    assert sorted(r.aqi for r in ev.store.daily_aqis("2026-01-01")) == [29, 250, 250]


def test_city_mean_rounds_up_and_falls_back_to_all_stations():
    ev = new_evaluator()
    # 200 -> 250 and 201 -> 251: mean 250.5 -> 251
    events = _days(
        ev,
        [
            ("sy-mic-01", "micro", [200, 200, 20, 20]),
            ("sy-mic-02", "micro", [201, 201, 20, 20]),
        ],
    )
    changes = [
        (c.episode["level"], c.episode["city_aqi"]) for c in events if c.type == "episode.changed"
    ]
    assert changes == [("yellow", 251), (None, 29)]
