"""Calibration against a reference station, and neighbour consistency, on synthetic data with
a known relation (issue 18).

Reference: a PM2.5 series with a daily cycle and random episodes, 60 days of hourly means;
RH between 30 % and 95 %. Micro: 1.6 x reference + 0.35 x RH - 4 + Gaussian noise (sd 3).
Tolerances (stated in docs/review.md): slope within ±0.03, humidity term within ±0.03,
offset within ±2.5 µg/m³, R² > 0.95 on 14 days of pairs. Drift: from day 30 the sensor's
slope falls to 1.1 (a clogging inlet); the rolling check must fail the calibration within
three days of the drift and never apply it again.
"""

from __future__ import annotations

import math
import random

import pytest

from envnet.domain.review import calibration as cal
from envnet.domain.review import consistency as con
from envnet.domain.review.invalidation import InvalidationError, check_request, hour_bounds
from envnet.store import review
from envnet.store.audit import query_audit
from envnet.store.state import SqliteStateStore

HOUR, DAY = 3600, 86400
T0 = 1_767_196_800  # 2026-01-01 00:00 CST
SLOPE, HUMIDITY, OFFSET = 1.6, 0.35, -4.0


def _series(days: int, drift_from_day: int | None = None, seed: int = 7):
    rng = random.Random(seed)
    ref, micro, rh = {}, {}, {}
    for i in range(days * 24):
        h = T0 + i * HOUR
        base = 35 + 20 * math.sin(2 * math.pi * (i % 24) / 24) + rng.uniform(0, 60)
        r = 30 + 65 * (0.5 + 0.5 * math.sin(2 * math.pi * i / 97)) * rng.uniform(0.6, 1.0)
        slope = SLOPE if drift_from_day is None or i < drift_from_day * 24 else 1.1
        ref[h] = round(base, 2)
        rh[h] = round(r, 1)
        micro[h] = slope * base + HUMIDITY * r + OFFSET + rng.gauss(0, 3)
    return ref, micro, rh


def test_fit_recovers_slope_offset_and_humidity_within_tolerance():
    ref, micro, rh = _series(14)
    pairs = cal.pair_hourly(ref, micro, rh)
    assert len(pairs) == 14 * 24
    f = cal.fit(pairs)
    assert abs(f.slope - SLOPE) < 0.03, f
    assert abs(f.humidity - HUMIDITY) < 0.03, f
    assert abs(f.offset - OFFSET) < 2.5, f
    assert f.r2 > 0.95
    q = cal.quality(f, pairs, cal.Limits())
    assert q.ok and abs(q.bias) < 0.5 and q.rmse < 3.0, q
    # the corrected value of one reading is the reference within the noise
    p = pairs[100]
    assert abs(f.correct(p.micro, p.rh) - p.reference) < 4 * 3 / SLOPE


def test_drift_halfway_fails_the_calibration_and_stops_it():
    ref, micro, rh = _series(60, drift_from_day=30)
    pairs = cal.pair_hourly(ref, micro, rh)
    windows = cal.rolling(pairs, 14 * DAY, DAY, cal.Limits())
    applied = [w for w in windows if w.fit is not None and w.quality is not None]
    failed = [w for w in windows if w.quality is not None and not w.quality.ok]
    assert failed, "the drift was not detected"
    first_fail = failed[0]
    drift_at = T0 + 30 * DAY
    assert drift_at < first_fail.end <= drift_at + 3 * DAY, (first_fail.end - drift_at) / DAY
    assert any("bias" in p for p in first_fail.quality.problems)
    # before the drift every window passed; after the failure nothing is applied any more
    assert all(w.quality.ok for w in applied if w.end <= drift_at)
    assert windows[-1] is first_fail  # withdrawn: the walk stops, nothing applied after it


def test_too_few_pairs_and_degenerate_pairs():
    ref, micro, rh = _series(1)
    pairs = cal.pair_hourly(ref, micro, rh)
    q = cal.quality(cal.fit(pairs), pairs, cal.Limits())
    assert not q.ok and any("too few pairs" in p for p in q.problems)
    flat = [cal.Pair(T0 + i * HOUR, 30.0, 50.0, 60.0) for i in range(100)]
    with pytest.raises(cal.CalibrationError, match="degenerate"):
        cal.fit(flat)


def test_colocation_takes_the_nearest_reference_within_the_distance():
    refs = {"nat-1": (41.80, 123.43), "nat-2": (41.90, 123.50)}
    assert cal.colocation((41.8005, 123.4305), refs, 500)[0] == "nat-1"
    assert cal.colocation((41.85, 123.46), refs, 500) is None


def test_calibration_is_stored_with_its_quality_and_audited(tmp_path):
    store = SqliteStateStore(tmp_path / "s.db")
    ref, micro, rh = _series(14)
    pairs = cal.pair_hourly(ref, micro, rh)
    f = cal.fit(pairs)
    c = review.save_calibration(
        store,
        station="mi-1",
        reference="nat-1",
        parameter="pm25",
        period=(pairs[0].hour, pairs[-1].hour + HOUR),
        fit=f,
        quality=cal.quality(f, pairs, cal.Limits()),
    )
    assert c.status == "applied" and c.n == 336 and c.r2 > 0.95
    assert review.applied_calibration(store, "mi-1", "pm25") == c
    bad = cal.quality(f, pairs[:10], cal.Limits())
    review.save_calibration(
        store,
        station="mi-1",
        reference="nat-1",
        parameter="pm25",
        period=(T0, T0 + 10 * HOUR),
        fit=f,
        quality=bad,
    )
    assert review.applied_calibration(store, "mi-1", "pm25") is None
    rows, _ = query_audit(store, action="review.calibration")
    assert [r.action for r in rows] == ["review.calibration.withdraw", "review.calibration.apply"]
    store.close()


def test_a_station_disagreeing_with_its_neighbours_for_hours_is_found():
    rng = random.Random(3)
    hours = [T0 + i * HOUR for i in range(48)]
    neighbours = {
        f"n{k}": {h: 40 + 10 * math.sin(i / 5) + rng.gauss(0, 2) for i, h in enumerate(hours)}
        for k in range(5)
    }
    neighbours["n4"] = {
        h: v + (300 if i == 10 else 0) for i, (h, v) in enumerate(neighbours["n4"].items())
    }
    station = {
        h: 40 + 10 * math.sin(i / 5) + (60 if 20 <= i < 28 else 0) for i, h in enumerate(hours)
    }
    found = con.disagreements("s", station, neighbours, con.Check(sustain_hours=6))
    assert len(found) == 1
    d = found[0]
    assert (d.first_hour, d.last_hour, d.hours, d.direction) == (hours[20], hours[27], 8, "high")
    assert d.neighbours == ("n0", "n1", "n2", "n3", "n4")
    # one neighbour's spike (n4 at hour 10) does not make n4 or anyone else an outlier run
    assert (
        con.disagreements("n4", neighbours["n4"], {**neighbours, "s": station}, con.Check()) == []
    )
    # a short disagreement (under sustain_hours) is not reported
    short = {h: v + (60 if 20 <= i < 23 else 0) for i, (h, v) in enumerate(station.items())}
    assert (
        con.disagreements(
            "s",
            {h: 40 + 10 * math.sin(i / 5) for i, h in enumerate(hours)},
            neighbours,
            con.Check(),
        )
        == []
    )
    assert len(con.disagreements("s", short, neighbours, con.Check())) == 1  # 8 h block kept


def test_drop_to_background_around_an_inspection():
    series = {T0 + i * HOUR: (80.0 if i < 30 else 12.0) for i in range(40)}
    assert con.drop_to_background(series, T0 + 33 * HOUR, background=10.0)
    steady = {T0 + i * HOUR: 80.0 for i in range(40)}
    assert not con.drop_to_background(steady, T0 + 33 * HOUR, background=10.0)


def test_request_checks():
    now = T0 + 10 * DAY
    ok = dict(
        station="s",
        start=T0 + 600,
        end=T0 + 2 * HOUR + 60,
        parameters=None,
        reason="Instrument fault",
        note="",
        station_params=["pm25", "pm10"],
        now=now,
    )
    req = check_request(**ok)
    assert (req.hour_start, req.hour_end) == (T0, T0 + 3 * HOUR) == hour_bounds(T0 + 600, T0 + 7260)
    assert req.parameters == ("*",) and req.reason == "instrument_fault"
    for change, words in [
        ({"station_params": None}, "unknown station"),
        ({"end": T0}, "inverted"),
        ({"end": now + 10}, "future"),
        ({"reason": "because"}, "unknown reason"),
        ({"parameters": ["so2"]}, "not measured"),
    ]:
        with pytest.raises(InvalidationError, match=words):
            check_request(**{**ok, **change})
