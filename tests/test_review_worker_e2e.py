"""The review worker on the real stack (issue 18): a real InfluxDB and the real server
process, whose worker (server/review/worker.py) pairs a micro station with the national
station 70 m from it, fits the calibration, writes corrected values beside the raw ones,
withdraws the calibration when drift is injected halfway and raises the station-fault
alert; and raises a data-quality alert naming the neighbours of a station that reads far
above its district.

Synthetic data (fixed seed), one reading an hour (interval_s 3600: each makes a valid hour)
for 20 days ending at the last complete hour:
- ref-1 (national): PM2.5 40 + 20 sin(daily) + U(0, 30); PM10 1.5 x PM2.5 + N(0, 2).
- mc-1 (micro, 70 m away): PM2.5 = 1.6 x ref + 0.35 x RH - 4 + N(0, 3) for the first 10
  days, then the slope falls to 1.1 (the sensor drifts); PM10 = 1.3 x ref + 0.2 x RH + 2 +
  N(0, 3) throughout; RH U(30, 90), independent of the reference.
With a 5-day window and 1-day steps the first PM2.5 fit covers days 0-5 and must recover
slope 1.6 ± 0.05, humidity 0.35 ± 0.05, offset -4 ± 4, R² > 0.95; the step of day 10 fails
on bias ((1.1 - 1.6) / 1.6 x ~55 µg/m³ ≈ -17, limit ±5): the calibration is withdrawn, the
alert raised, and no corrected PM2.5 exists from day 10 on, while PM10 stays applied.
- nb-2..nb-5 (district 和平区, far from everything): the same background for 2 days, nb-5
  60 µg/m³ higher for its last 8 hours (sustain 6 h, k 4, spread floor 5: 60 > 20).
Then a person's way back (`envnet review refit mc-1`): the last 5 days of pairs (all after the
drift) fit slope 1.1 and are applied from now; refused with 409 for a station with no
reference pair and for one with too few pairs. /metrics counts the worker's passes,
calibrations fitted and withdrawn, and neighbour alerts.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import wait_until
from prometheus_client.parser import text_string_to_metric_families

from envnet.config import load_config
from envnet.devkit.services import component_env, free_port
from envnet.store.influx.line_protocol import line
from envnet.store.influx.reports import InfluxQL
from envnet.store.state import SqliteStateStore

HOUR, DAY = 3600, 86400
KEY = {"Authorization": "Bearer test-key"}
NOW_H = int(time.time()) // HOUR * HOUR
T0 = NOW_H - 20 * DAY  # first hour of data; the last one is NOW_H - 1 h
DRIFT = T0 + 10 * DAY


@pytest.fixture
def envnet_env(tmp_path, mosquitto, influxdb) -> dict[str, str]:
    return component_env(
        tmp_path,
        mosquitto,
        influxdb,
        f"test-{free_port()}",
        ENVNET_SERVER_API_KEY="test-key",
        ENVNET_REVIEW_CHECK_INTERVAL_S="2",
        ENVNET_REVIEW_CALIBRATION_WINDOW_DAYS="5",
        ENVNET_REVIEW_CALIBRATION_BACKFILL_DAYS="21",
    )


def _series() -> Iterator[tuple[str, int, dict[str, float]]]:
    rnd = random.Random(18)
    for h in range(T0, NOW_H, HOUR):
        ref = 40 + 20 * math.sin(2 * math.pi * h / DAY) + rnd.uniform(0, 30)
        ref10 = 1.5 * ref + rnd.gauss(0, 2)
        rh = rnd.uniform(30, 90)
        slope = 1.6 if h < DRIFT else 1.1
        micro = slope * ref + 0.35 * rh - 4 + rnd.gauss(0, 3)
        micro10 = 1.3 * ref10 + 0.2 * rh + 2 + rnd.gauss(0, 3)
        yield "ref-1", h, {"pm25": round(ref, 2), "pm10": round(ref10, 2), "rh": 50.0}
        yield "mc-1", h, {"pm25": round(micro, 2), "pm10": round(micro10, 2), "rh": round(rh, 2)}
        if h >= NOW_H - 2 * DAY:
            base = 40 + 10 * math.sin(2 * math.pi * h / DAY)
            for n in ("nb-2", "nb-3", "nb-4", "nb-5"):
                v = base + rnd.gauss(0, 2) + (60 if n == "nb-5" and h >= NOW_H - 8 * HOUR else 0)
                yield n, h, {"pm25": round(v, 2), "pm10": round(1.5 * v, 2), "rh": 50.0}


def _get(base: str, path: str, **params) -> list:
    r = httpx.get(f"{base}{path}", params=params, headers=KEY, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _metrics(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("envnet_review_")
    }


def _cli(base: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envnet.cli", "review", *args, "--url", base]
        + ["--api-key", "test-key"],
        env={**env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_calibration_drift_and_neighbour_alerts_through_the_worker(request, influxdb, envnet_env):
    store = SqliteStateStore(envnet_env["ENVNET_STORE_PATH"])
    meta = {"interval_s": 3600}
    store.register_station(
        "ref-1",
        "air",
        {**meta, "class": "national", "district": "沈河区", "lat": 41.8000, "lon": 123.4000},
    )
    store.register_station(
        "mc-1",
        "air",
        {**meta, "class": "micro", "district": "沈河区", "lat": 41.8005, "lon": 123.4005},
    )
    # paired with ref-1 by the registry, but without data: too few pairs to refit
    store.register_station("mc-2", "air", {**meta, "class": "micro", "reference": "ref-1"})
    for i, n in enumerate(("nb-2", "nb-3", "nb-4", "nb-5")):
        store.register_station(
            n,
            "air",
            {
                **meta,
                "class": "micro",
                "district": "和平区",
                "lat": 41.70 + i * 0.01,
                "lon": 123.30,
            },
        )
    db = InfluxQL(load_config(None, environ=envnet_env).influx)
    lines = [line("air", {"station": s}, v, h * 1000) for s, h, v in _series()]
    db.write(lines)
    assert influxdb.rows('SELECT count("pm25") FROM "air"')[0]["count"] == len(lines)

    base = request.getfixturevalue("server")  # its worker starts now, on the data above

    def withdrawn() -> list:
        return [
            c
            for c in _get(base, "/review/calibrations", station="mc-1", parameter="pm25")
            if c["status"] == "withdrawn"
        ]

    wait_until(lambda: withdrawn(), 120, what="the drifting PM2.5 calibration withdrawn")
    cals = _get(base, "/review/calibrations", station="mc-1", parameter="pm25")[::-1]
    first = cals[0]
    assert (first["period_start"], first["period_end"]) == (T0, T0 + 5 * DAY)
    assert first["status"] == "applied" and first["n"] == 120 and first["reference"] == "ref-1"
    assert abs(first["slope"] - 1.6) < 0.05, first
    assert abs(first["humidity"] - 0.35) < 0.05, first
    assert abs(first["offset"] + 4) < 4, first
    assert first["r2"] > 0.95 and abs(first["bias"]) < 0.5 and first["rmse"] < 3, first
    # applied day by day until the drift; the first step after it fails on bias
    assert [c["status"] for c in cals] == ["applied"] * 6 + ["withdrawn"]
    bad = cals[-1]
    assert (bad["period_start"], bad["period_end"]) == (DRIFT, DRIFT + DAY)
    assert bad["bias"] < -10 and any("bias" in p for p in bad["problems"]), bad

    # corrected values beside the raw ones, with the calibration id; none from the drift on
    rows = influxdb.rows(
        'SELECT "value", "raw", "cal_id" FROM "air_corrected"'
        " WHERE \"station\" = 'mc-1' AND \"parameter\" = 'pm25'"
    )
    hours = [r["time"] for r in rows]
    assert hours and min(hours) == T0 and max(hours) == DRIFT - HOUR
    assert {r["cal_id"] for r in rows} <= {c["id"] for c in cals if c["status"] == "applied"}
    ref = {
        r["time"]: r["pm25"]
        for r in influxdb.rows('SELECT "pm25" FROM "air" WHERE "station" = \'ref-1\'')
    }
    errs = [r["value"] - ref[r["time"]] for r in rows]
    raw_errs = [r["raw"] - ref[r["time"]] for r in rows]
    # corrected values read like the reference (noise sd 3 / slope 1.6), the raw ones do not
    assert abs(sum(errs) / len(errs)) < 1 and max(map(abs, errs)) < 10
    assert sum(raw_errs) / len(raw_errs) > 30
    # PM10 did not drift: still applied, corrected to the last hour
    wait_until(
        lambda: (
            influxdb.rows('SELECT last("value") FROM "air_corrected" WHERE "parameter" = \'pm10\'')[
                0
            ]["time"]
            == NOW_H - HOUR
        ),
        60,
        what="PM10 corrected to the last hour",
    )
    assert all(
        c["status"] == "applied"
        for c in _get(base, "/review/calibrations", station="mc-1", parameter="pm10")
    )

    # the station-fault alert, once, saying what failed
    alerts = _get(base, "/alerts", rule="calibration_degraded")
    assert [(a["station"], a["parameter"]) for a in alerts] == [("mc-1", "pm25")]
    assert "withdrawn" in alerts[0]["clause"] and "bias" in alerts[0]["clause"]
    assert alerts[0]["review_marks"] == []

    # the neighbour alert names the neighbours; the others are consistent
    wait_until(
        lambda: _get(base, "/alerts", rule="neighbour_disagreement"), 60, what="neighbour alert"
    )
    nb = _get(base, "/alerts", rule="neighbour_disagreement")
    assert {(a["station"], a["parameter"]) for a in nb} == {("nb-5", "pm25"), ("nb-5", "pm10")}
    for a in nb:
        assert "nb-2, nb-3, nb-4" in a["clause"] and "high" in a["clause"], a["clause"]
        assert "district 和平区" in a["clause"] and a["value"] > 4
    # a pass later nothing doubled
    time.sleep(4)
    assert len(_get(base, "/alerts", rule="neighbour_disagreement")) == 2
    assert len(_get(base, "/alerts", rule="calibration_degraded")) == 1

    # /metrics: the worker's passes, what it fitted and withdrew, the neighbour alerts opened
    m = _metrics(base)
    assert m["envnet_review_passes_total"] >= 2
    assert m["envnet_review_pass_failures_total"] == 0
    fitted = len(cals) - 1 + len(_get(base, "/review/calibrations", parameter="pm10"))
    assert m["envnet_review_calibrations_fitted_total"] == fitted
    assert m["envnet_review_calibrations_withdrawn_total"] == 1
    assert m["envnet_review_neighbour_alerts_total"] == 2

    # the CLI lists them, the withdrawn one with its problem
    listed = _cli(base, envnet_env, "calibrations", "--station", "mc-1", "--parameter", "pm25")
    assert listed.returncode == 0, listed.stderr
    assert "withdrawn:" in listed.stdout and "bias" in listed.stdout  # folded in its cell
    assert "calibrations (7)" in listed.stdout and "applied" in listed.stdout

    # the way back: a reviewer refits from the recent pairs (all after the drift: slope 1.1)
    r = _cli(base, envnet_env, "refit", "mc-1", "-p", "pm25", "--json")
    assert r.returncode == 0, r.stderr
    (fresh,) = json.loads(r.stdout)
    assert fresh["status"] == "applied" and fresh["reference"] == "ref-1"
    assert fresh["period_end"] == NOW_H and fresh["n"] == 120, fresh
    assert abs(fresh["slope"] - 1.1) < 0.05 and abs(fresh["humidity"] - 0.35) < 0.05, fresh
    latest = _get(base, "/review/calibrations", station="mc-1", parameter="pm25", limit=1)
    assert latest[0]["id"] == fresh["id"]
    audit = httpx.get(
        f"{base}/audit", params={"action": "review.calibration.refit"}, headers=KEY, timeout=30
    ).json()["items"]
    assert [(a["actor"], a["target"]) for a in audit] == [("admin", "mc-1")]  # the key's name
    assert audit[0]["detail"]["calibrations"] == {"pm25": fresh["id"]}
    assert _metrics(base)["envnet_review_calibrations_fitted_total"] >= fitted + 1

    # refused, nothing stored: no reference pair, too few pairs, a reference station itself
    before = len(_get(base, "/review/calibrations"))
    for station, status, says in (
        ("nb-2", 409, "no reference pair"),
        ("mc-2", 409, "0 pairs, at least 72 needed"),
        ("ref-1", 409, "no reference pair"),
        ("zz-9", 404, "not a registered air station"),
    ):
        r = httpx.post(f"{base}/review/calibrations/{station}/refit", headers=KEY, timeout=60)
        assert r.status_code == status and says in r.json()["detail"], (station, r.text)
    r = httpx.post(
        f"{base}/review/calibrations/mc-1/refit",
        json={"parameters": ["o3"]},
        headers=KEY,
        timeout=60,
    )
    assert r.status_code == 400 and "not calibrated: o3" in r.json()["detail"], r.text
    cli = _cli(base, envnet_env, "refit", "mc-2")
    assert cli.returncode == 1 and "409" in cli.stderr and "0 pairs" in cli.stderr, cli.stderr
    assert len(_get(base, "/review/calibrations")) == before
