"""HJ 212 corrections after a review (issue 18): hour (2061) and day (2031) data already sent
are re-sent with the reviewed values after an invalidation and with the originals after a
restore; the correction survives a killed uplink and is queued once.

One air station publishes a reading a minute for a whole CST day D. PM2.5 is 10 + h in hour
h (so each hour's mean, min and max is 10 + h), PM10 50, temperature 20. By hand:
- the day's PM2.5 mean: (10 + ... + 33) / 24 = 516 / 24 = 21.5;
- PM2.5 of hours 10 and 11 invalidated (maintenance -> M): those hours are re-sent with their
  values and flag M; the day keeps 22 valid hours (>= 20: flag N) with the mean
  (516 - 20 - 21) / 22 = 21.5909... -> "21.591"; PM10 and temperature stay N, unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from conftest import Proc, wait_until
from mqtt_helpers import Publisher
from prometheus_client.parser import text_string_to_metric_families

from envnet.config import load_config
from envnet.core.calendar import CST, DAY, HOUR, day_start_at
from envnet.core.contract import Reading
from envnet.devkit.hj212_platform import TestPlatform
from envnet.devkit.services import component_env, free_port
from envnet.domain.hj212.codec import decode
from envnet.domain.hj212.review import Span, reviewed
from envnet.domain.review.invalidation import check_request
from envnet.store import hj212_corrections, review
from envnet.store.influx.reports import InfluxQL
from envnet.store.state import SqliteStateStore
from gateway.ingest import reading_point
from gateway.uplink import Uplink

MN = "MN-HJ-CORR-000000001"
D = day_start_at(datetime.now(CST).timestamp()) - 3 * DAY  # a past CST day
REVIEWER = {"Authorization": "Bearer rev-key"}
PM25_HOUR = 10  # the first invalidated hour (10:00 and 11:00 CST of D)


def _cst(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y%m%d%H%M%S")


def _day_readings() -> list[dict]:
    """A reading a minute over D, then one past the day's end (+ grace) that closes it."""
    out = []
    for i in range(24 * 60):
        h = i // 60
        values = {"pm25": 10.0 + h, "pm10": 50.0, "t": 20.0}
        out.append({"v": 1, "seq": i + 1, "ts": D + 30 + 60 * i, "kind": "air", "values": values})
    closing = {"pm25": 5.0, "pm10": 50.0, "t": 20.0}
    out.append({"v": 1, "seq": 9999, "ts": D + DAY + 300, "kind": "air", "values": closing})
    return out


def _by_time(packets) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for p in packets:
        out.setdefault(p.cp["DataTime"], []).append(p.cp)
    return out


# -- pure: the flag an invalidation gives ----------------------------------------------------
def test_reviewed_flags_follow_the_reason():
    samples = [
        (100.0, {"pm25": 1.0, "pm10": 2.0}, {}),
        (200.0, {"pm25": 1.0, "pm10": 2.0}, {"*": "cal", "pm10": "range"}),
        (4000.0, {"pm25": 1.0}, {}),
    ]
    spans = [Span(0, 3600, ("pm25",), "local_interference")]
    out = reviewed(samples, spans)
    assert out[0][2] == {"pm25": "fault"}  # local interference -> D (docs/hj212.md)
    # a whole-reading calibration flag is spread over the values, pm25 then overridden
    assert out[1][2] == {"pm25": "fault", "pm10": "cal"}
    assert out[2] == samples[2]  # outside the invalidated hours: untouched
    flags = {
        r: reviewed(samples[:1], [Span(0, 3600, ("*",), r)])[0][2]
        for r in ("maintenance", "calibration", "instrument_fault", "other")
    }
    assert flags == {
        "maintenance": {"pm25": "maint", "pm10": "maint"},
        "calibration": {"pm25": "cal", "pm10": "cal"},
        "instrument_fault": {"pm25": "fault", "pm10": "fault"},
        "other": {"pm25": "fault", "pm10": "fault"},
    }


# -- the real stack: gateway -> InfluxDB, server, uplink process, test platform ---------------
@pytest.fixture
def envnet_env(tmp_path: Path, mosquitto, influxdb) -> dict[str, str]:
    return component_env(
        tmp_path,
        mosquitto,
        influxdb,
        f"test-{free_port()}",
        ENVNET_SERVER_API_KEY="test-key",
        ENVNET_SERVER_API_KEYS="rev:rev-key",
        ENVNET_SERVER_KEY_ROLES="rev:reviewer",
    )


def test_invalidation_and_restore_resend_hour_and_day_data(
    tmp_path: Path, mosquitto, influxdb, envnet_env, gateway, server
):
    store = SqliteStateStore(envnet_env["ENVNET_STORE_PATH"])
    store.register_station("hj-01", "air", {"interval_s": 60})
    platform = TestPlatform().start()
    outbox_path = tmp_path / "uplink.db"
    env = dict(
        envnet_env,
        ENVNET_UPLINK_CLIENT_ID=f"uplink-{free_port()}",
        ENVNET_UPLINK_OUTBOX_PATH=str(outbox_path),
        ENVNET_UPLINK_ACK_TIMEOUT_S="2",
        ENVNET_UPLINK_BACKOFF_MAX_S="0.5",
        ENVNET_UPLINK_PLATFORMS=json.dumps(
            [{"name": "p", "host": "127.0.0.1", "port": platform.port, "stations": {"hj-01": MN}}]
        ),
    )
    log = tmp_path / "uplink.log"
    uplink = Proc(["uplink"], env, log).start()
    pub = Publisher(mosquitto.port, client_id="hj212-corr-pub")
    h10, h11 = D + PM25_HOUR * HOUR, D + (PM25_HOUR + 1) * HOUR

    def hours(t: float):
        return [p.cp for p in platform.received("2061") if p.cp["DataTime"] == _cst(t)]

    def days():
        return [p.cp for p in platform.received("2031") if p.cp["DataTime"] == _cst(D)]

    def unacked() -> int:
        with sqlite3.connect(outbox_path) as c:
            return c.execute("SELECT count(*) FROM outbox WHERE acked IS NULL").fetchone()[0]

    try:
        wait_until(lambda: "subscribed to" in uplink.output(), 20, what="uplink subscription")
        readings = _day_readings()
        for i in range(0, len(readings), 60):
            pub.send("envnet/v1/hj-01/reading", readings[i : i + 60])
        wait_until(days, 60, what="the day's 2031")
        wait_until(lambda: len(platform.received("2061")) == 24, 30, what="24 hours of 2061 data")
        (day0,) = days()
        assert (day0["a34004-Avg"], day0["a34004-Flag"]) == ("21.5", "N")
        original = {t: hours(t)[0] for t in (h10, h11)}
        assert (original[h10]["a34004-Avg"], original[h10]["a34004-Flag"]) == ("20", "N")

        def stored() -> int:
            rows = influxdb.rows('SELECT count("pm25") FROM "air" WHERE "station" = \'hj-01\'')
            return rows[0]["count"] if rows else 0

        wait_until(lambda: stored() == len(readings), 60, what="the readings in InfluxDB")

        # -- invalidate PM2.5 of 10:00-12:00 CST for maintenance -----------------------------
        r = httpx.post(
            f"{server}/review/invalidations",
            json={
                "station": "hj-01",
                "start": datetime.fromtimestamp(h10, CST).isoformat(),
                "end": datetime.fromtimestamp(h11 + HOUR, CST).isoformat(),
                "parameters": ["pm25"],
                "reason": "maintenance",
            },
            headers=REVIEWER,
            timeout=120,
        )
        assert r.status_code == 201, r.text
        inv = r.json()
        wait_until(lambda: len(hours(h10)) == 2 and len(hours(h11)) == 2, 30, what="2061 again")
        wait_until(lambda: len(days()) == 2, 30, what="the day's 2031 again")
        for t in (h10, h11):
            fixed = hours(t)[1]
            assert fixed["a34004-Flag"] == "M"  # maintenance
            assert fixed["a34004-Avg"] == original[t]["a34004-Avg"]  # the value, flagged
            assert fixed["a34002-Flag"] == "N" and fixed["a34002-Avg"] == "50"  # PM10 untouched
            assert fixed["a01001-Avg"] == "20"
        day1 = days()[1]
        assert (day1["a34004-Avg"], day1["a34004-Flag"]) == ("21.591", "N")  # 475 / 22
        assert (day1["a34004-Min"], day1["a34004-Max"]) == ("10", "33")
        assert (day1["a34002-Avg"], day1["a34002-Flag"]) == ("50", "N")
        # the other hours are not re-sent
        assert len(platform.received("2061")) == 26
        (c1,) = hj212_corrections.search(store, station="hj-01")
        assert (c1.invalidation_id, c1.action, c1.packets) == (inv["id"], "invalidate", 3)
        assert c1.done_at is not None
        assert "HJ 212 correction" in uplink.output()
        # counted on the server's /metrics too (the uplink publishes every 5 s)
        uplink_id = env["ENVNET_UPLINK_CLIENT_ID"]

        def counted(name: str) -> float | None:
            for f in text_string_to_metric_families(httpx.get(f"{server}/metrics").text):
                for sample in f.samples:
                    if sample.name == name and sample.labels == {"uplink": uplink_id}:
                        return sample.value
            return None

        wait_until(
            lambda: counted("envnet_uplink_correction_packets_queued_total") == 3,
            20,
            what="the correction's packets on /metrics",
        )
        assert counted("envnet_uplink_corrections_queued_total") == 1
        assert counted("envnet_uplink_correction_failures_total") == 0

        # -- the uplink is killed; the restore happens while it is down ----------------------
        wait_until(lambda: unacked() == 0, 20, what="every packet acknowledged")
        uplink.kill()
        r = httpx.delete(
            f"{server}/review/invalidations/{inv['id']}", headers=REVIEWER, timeout=120
        )
        assert r.status_code == 200, r.text
        (_, c2) = hj212_corrections.search(store, station="hj-01")
        assert (c2.action, c2.done_at) == ("restore", None)  # owed, not yet sent
        uplink = Proc(["uplink"], env, log).start()
        wait_until(lambda: len(hours(h10)) == 3 and len(hours(h11)) == 3, 30, what="restore")
        wait_until(lambda: len(days()) == 3, 30, what="the day's 2031 restored")
        # the originals, value for value and flag for flag
        assert hours(h10)[2] == original[h10] and hours(h11)[2] == original[h11]
        assert days()[2] == day0
        wait_until(lambda: hj212_corrections.search(store)[1].done_at, 10, what="restore done")
        assert hj212_corrections.search(store)[1].packets == 3
        # nothing twice: 24 + 2 + 2 hour packets and 3 day packets in all
        wait_until(lambda: unacked() == 0, 20, what="every packet acknowledged")
        assert len(platform.received("2061")) == 28 and len(platform.received("2031")) == 3
        assert platform.errors == []
    finally:
        pub.close()
        uplink.stop()
        platform.stop()
        store.close()


# -- in process: a kill between queueing and marking, and windows closed after a review -------
def test_correction_queued_before_a_kill_is_not_queued_again(tmp_path: Path, influxdb):
    env = {
        "ENVNET_INFLUX_URL": influxdb.url,
        "ENVNET_INFLUX_DATABASE": influxdb.database,
        "ENVNET_STORE_PATH": str(tmp_path / "envnet.db"),
        "ENVNET_UPLINK_OUTBOX_PATH": str(tmp_path / "uplink.db"),
        "ENVNET_UPLINK_PLATFORMS": json.dumps(
            [{"name": "p", "host": "127.0.0.1", "port": 1, "stations": {"hj-02": MN}}]
        ),
    }
    settings = load_config(None, environ=env)
    state = SqliteStateStore(settings.store.path)
    state.register_station("hj-02", "air", {"interval_s": 60})
    readings = [Reading.model_validate(r) for r in _day_readings()]
    lines = [reading_point("hj-02", r, None, r.ts + 1)[0].line for r in readings]
    InfluxQL(settings.influx).write(lines)
    up = Uplink(settings)
    # the morning: hours 0..10 closed (11:59 is before 12:00 + grace), hour 11 still open
    morning = [r for r in readings if r.ts < D + 12 * HOUR]
    up.ingest("hj-02", morning, D + 12 * HOUR)

    def packets(cn: str) -> dict[str, list[dict[str, str]]]:
        rows = up.outbox.db.query("SELECT packet FROM outbox WHERE cn=? ORDER BY id", (cn,))
        return _by_time(decode(r[0]) for r in rows)

    assert len(packets("2061")) == 11 and packets("2031") == {}
    h10, h11 = D + 10 * HOUR, D + 11 * HOUR
    req = check_request(
        station="hj-02",
        start=h10,
        end=h11 + HOUR,
        parameters=["pm25"],
        reason="instrument fault",
        note="",
        station_params=["pm25", "pm10", "t"],
        now=D + DAY,
    )
    inv, _ = review.add(state, req, "tester")
    (c,) = hj212_corrections.pending(state)
    assert (c.station, c.hour_start, c.hour_end) == ("hj-02", h10, h11 + HOUR)

    # queued, then "killed" before the state store's row was marked done
    assert up.corrections.queue_correction(c) == 1  # hour 10 only: 11 and the day not sent
    (_, fixed) = packets("2061")[_cst(h10)]
    assert (fixed["a34004-Avg"], fixed["a34004-Flag"]) == ("20", "D")  # instrument fault
    n_before = up.outbox.pending_count()
    up.outbox.db.close()

    up = Uplink(settings)  # the restarted uplink, same files
    assert up.corrections.run_once() == 1
    assert up.outbox.pending_count() == n_before  # nothing queued twice
    (done,) = hj212_corrections.search(state)
    assert done.done_at is not None and done.packets == 1
    assert up.corrections.run_once() == 0

    # the afternoon: hour 11 and the day close after the invalidation, already reviewed
    up.ingest("hj-02", [r for r in readings if r.ts >= D + 12 * HOUR], D + DAY + 400)
    (h11_first,) = packets("2061")[_cst(h11)]
    assert h11_first["a34004-Flag"] == "D"
    (day,) = packets("2031")[_cst(D)]
    assert (day["a34004-Avg"], day["a34004-Flag"]) == ("21.591", "N")

    # the restore re-sends hour 10, hour 11 and the day with the original values
    review.restore(state, inv.id, "tester")
    assert up.corrections.run_once() == 1
    assert [p["a34004-Flag"] for p in packets("2061")[_cst(h10)]] == ["N", "D", "N"]
    assert [p["a34004-Flag"] for p in packets("2061")[_cst(h11)]] == ["D", "N"]
    assert packets("2061")[_cst(h11)][1]["a34004-Avg"] == "21"
    assert [p["a34004-Avg"] for p in packets("2031")[_cst(D)]] == ["21.591", "21.5"]
    assert packets("2061")[_cst(h10)][2] == packets("2061")[_cst(h10)][0]
    assert up.corrections.counts == {"corrections": 1, "packets": 3}
    assert up.corrections.totals() == (2, 4)
    up.outbox.db.close()
    state.close()


def test_correction_is_recorded_in_the_review_change_transaction(tmp_path: Path):
    """A change that rolls back leaves no correction; one that commits always leaves one."""
    state = SqliteStateStore(tmp_path / "envnet.db")
    state.register_station("hj-03", "air", {})
    req = check_request(
        station="hj-03",
        start=D,
        end=D + HOUR,
        parameters=None,
        reason="calibration",
        note="",
        station_params=["pm25"],
        now=D + DAY,
    )

    def failing_hook(store, inv):
        raise RuntimeError("a marking hook failed")

    review.MARK_HOOKS["test-failing"] = failing_hook
    try:
        with pytest.raises(RuntimeError, match="hook failed"):
            review.add(state, req, "tester")
    finally:
        del review.MARK_HOOKS["test-failing"]
    assert review.search(state) == [] and hj212_corrections.search(state) == []
    inv, _ = review.add(state, req, "tester")
    review.restore(state, inv.id, "tester")
    rows = hj212_corrections.search(state)
    assert [(c.action, c.invalidation_id, c.hour_start, c.hour_end) for c in rows] == [
        ("invalidate", inv.id, D, D + HOUR),
        ("restore", inv.id, D, D + HOUR),
    ]
    assert [c.id for c in hj212_corrections.pending(state)] == [c.id for c in rows]
    state.close()
