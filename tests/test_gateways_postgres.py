"""Several gateways on several machines, one answer: tests/test_gateways_partitioned.py's
recorded input through two gateways that share nothing but a PostgreSQL state store
(store.url; each its own buffer and message log, as on two machines) gives the alerts, webhook
events and computed indices of one gateway on SQLite, also when one of the two is SIGKILLed
(receiver, processor, writer and evaluator at once, as in a power cut) in the middle of the
episode and started again.

Also, without a broker: the evaluation queue's order across concurrent writers (ids of a
partition become visible in id order), the partition lock across connections, and the
dialect's translations against the real server.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conftest import Proc, wait_until
from test_gateways_partitioned import (
    AIR,
    GONE,
    WATER,
    _alert_key,
    _data_time,
    _publish,
    _register,
    _t0,
    influx_answer,
    recorded_input,
    wait_evaluating,
)

from envnet.devkit.services import PostgreSQL, component_env
from envnet.store.state import SqliteStateStore

psycopg = pytest.importorskip("psycopg", reason="psycopg (pyproject dependency) not installed")

from envnet.store.postgres import try_session_lock  # noqa: E402 (needs psycopg)
from gateway.evalqueue import EvaluationQueue  # noqa: E402


@pytest.fixture
def postgresql(tmp_path: Path):
    with PostgreSQL(tmp_path / "postgresql") as pg:
        yield pg


def _rows(location: str, sql: str) -> list:
    store = SqliteStateStore(location)
    try:
        return store.query(sql)
    finally:
        store.close()


def _drained(location: str, readings: int) -> bool:
    got = _rows(location, "SELECT coalesce(sum(readings_total), 0) FROM station_state")[0][0]
    queued = _rows(location, "SELECT count(*) FROM evaluation_queue")[0][0]
    return got >= readings and queued == 0


def _where(location: str) -> dict:
    """Where the run got stuck: readings counted, the queue by partition, the cursors."""
    return {
        "readings": _rows(location, "SELECT sum(readings_total) FROM station_state")[0][0],
        "queue": [
            tuple(r)
            for r in _rows(
                location,
                "SELECT part, count(*), min(id), max(id) FROM evaluation_queue GROUP BY part",
            )
        ],
        "kv": [
            tuple(r)
            for r in _rows(location, "SELECT key, value FROM kv WHERE key NOT LIKE '%metrics%'")
        ],
    }


def _outcome(location: str, influxdb, database: str) -> dict:
    """As test_gateways_partitioned._outcome, read through the store (either engine)."""
    alerts = sorted(
        (st, rule, param, state, sev, _data_time(opened), _data_time(opened) and last)
        for st, rule, param, state, sev, opened, last in (
            (*r[:6], json.loads(r[6]).get("last_value"))
            for r in _rows(
                location,
                "SELECT station, rule, parameter, state, severity, opened_at, data FROM alerts",
            )
        )
    )
    events = sorted(
        (t, st or "", sev or "", _alert_key(body))
        for t, st, sev, body in _rows(
            location, "SELECT type, station, severity, body FROM webhook_events"
        )
    )
    return {"alerts": alerts, "events": events, **influx_answer(influxdb, database)}


def _kill_children(p: Proc) -> int:
    """SIGKILL the gateway's processor, writer and evaluator processes (mid-transaction,
    whatever they are doing); the receiver lives on and keeps logging what arrives."""
    assert p.p is not None
    pid = p.p.pid
    kids = [
        int(k)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for k in (task / "children").read_text().split()
    ]
    for k in kids:
        os.kill(k, signal.SIGKILL)
    return len(kids)


def _logged(tmp: Path) -> int:
    """Messages in the gateways' message logs (every host's)."""
    total = 0
    for path in tmp.glob("host-*/*-log.db"):
        with sqlite3.connect(path) as db:
            total += db.execute("SELECT count(*) FROM message_log").fetchone()[0]
    return total


def _run(
    tmp: Path, mosquitto, influxdb, gateways: int, database: str, url: str = "", kill_at=None
) -> dict:
    tmp.mkdir()
    location = url or str(tmp / "envnet.db")
    _register(location)  # type: ignore[arg-type]
    influxdb.query(f'CREATE DATABASE "{database}"', method="POST")
    extra = {"ENVNET_INFLUX_DATABASE": database, "ENVNET_GATEWAY_EVAL_PARTITIONS": str(gateways)}
    if url:
        extra["ENVNET_STORE_URL"] = url
    else:
        extra["ENVNET_STORE_PATH"] = location
    if gateways > 1:
        extra["ENVNET_MQTT_SHARED_GROUP"] = "envnet"
    procs = []
    for k in range(gateways):
        # Each gateway in a directory of its own: buffer, log and locks apart, as on two hosts.
        home = tmp / f"host-{k}"
        env = component_env(home, mosquitto, influxdb, f"{database}-{k}", **extra)
        procs.append(Proc(["gateway"], env, tmp / f"gateway-{k}.log").start())
    try:
        wait_evaluating(procs)
        published = sent = 0
        for day, msgs in enumerate(recorded_input(_t0())):
            if day == kill_at:
                # Mid-day: half the day's messages in, then one gateway's processing processes
                # die while the rest arrives; its receiver logs it, and the gateway, restarted,
                # goes on from the cursors its processes committed (the state side's in
                # PostgreSQL, its evaluator's partition freed by PostgreSQL with its session).
                half = len(msgs) // 2
                _publish(mosquitto.port, msgs[:half])
                victim = procs[-1]
                rest = threading.Thread(target=_publish, args=(mosquitto.port, msgs[half:]))
                rest.start()
                time.sleep(0.5)
                killed = _kill_children(victim)
                # processor, writer, evaluator (and multiprocessing's resource tracker)
                assert killed >= 3, f"{killed} processes: expected processor, writer, evaluator"
                rest.join()
                total = sent + len(msgs)
                wait_until(lambda n=total: _logged(tmp) >= n, 30, what="the logs")
                victim.stop()
                victim.start()
                wait_until(lambda v=victim: v.output().count("subscribed to") == 2, 30)
            else:
                _publish(mosquitto.port, msgs)
            sent += len(msgs)
            published += sum(1 for _, b in msgs if "status" not in b)
            try:
                wait_until(lambda n=published: _drained(location, n), 120, what="evaluation")
            except AssertionError as e:
                where = _where(location)
                raise AssertionError(f"{e}; day {day}, {published} readings: {where}") from None
            time.sleep(5)  # two evaluator ticks: the day's episode assessment, offline
        time.sleep(6)
        return _outcome(location, influxdb, database)
    finally:
        for p in procs:
            p.stop()


def test_two_gateways_on_postgresql_give_the_alerts_of_one_on_sqlite(
    tmp_path, mosquitto, influxdb, postgresql
):
    one = _run(tmp_path / "one", mosquitto, influxdb, 1, "envnet_one")
    two = _run(
        tmp_path / "two", mosquitto, influxdb, 2, "envnet_two", url=postgresql.url, kill_at=1
    )
    rules = {(a[0], a[1]) for a in one["alerts"]}
    assert ("*", "episode") in rules, rules
    assert any(st == WATER for st, _ in rules), rules
    assert (GONE, "offline") in rules, rules
    assert one["aqi"] and one["water"]
    assert two["alerts"] == one["alerts"]
    assert two["events"] == one["events"]
    assert two["aqi"] == one["aqi"]
    assert two["water"] == one["water"]
    assert two["air"] == one["air"]
    # Both gateways took part (the stream was split), and one state store holds it all.
    ids = {r[0] for r in _rows(postgresql.url, "SELECT id FROM station_state")}
    assert set(AIR) | {WATER, GONE} <= ids


def test_queue_ids_of_a_partition_become_visible_in_order(postgresql):
    """Two writers append to one partition at once; a reader polling `id > cursor` (as the
    evaluator does) must never see an id after a higher one it has already passed."""
    writers = [SqliteStateStore(postgresql.url) for _ in range(2)]
    reader_store = SqliteStateStore(postgresql.url)
    reader = EvaluationQueue(reader_store, 1)
    stop = threading.Event()

    def write(store: SqliteStateStore, tag: str) -> None:
        q = EvaluationQueue(store, 1)
        for n in range(150):
            with store.tx():
                q.add([("reading", f"{tag}-{n}", "[]", float(n))])
                time.sleep(0.002)  # a commit that takes a while, as a batch's does

    threads = [threading.Thread(target=write, args=(w, f"w{k}")) for k, w in enumerate(writers)]
    for t in threads:
        t.start()
    seen: list[int] = []
    cursor = 0
    while True:
        done = not any(t.is_alive() for t in threads)
        for item in reader.read(0, cursor, 1000):
            seen.append(item.id)
            cursor = item.id
        if done:
            break
    stop.set()
    all_ids = [r[0] for r in reader_store.query("SELECT id FROM evaluation_queue ORDER BY id")]
    assert len(all_ids) == 300
    assert seen == all_ids  # nothing skipped, nothing out of order


def test_a_partition_has_one_owner_across_connections(postgresql):
    first = try_session_lock(postgresql.url, "eval-partition", 0)
    assert first is not None
    assert try_session_lock(postgresql.url, "eval-partition", 0) is None  # another "machine"
    other = try_session_lock(postgresql.url, "eval-partition", 1)
    assert other is not None
    other.close()
    first.close()  # the owner goes away: the partition is free again
    again = try_session_lock(postgresql.url, "eval-partition", 0)
    assert again is not None
    again.close()


def test_the_dialect_runs_on_the_real_server(postgresql):
    store = SqliteStateStore(postgresql.url)
    assert store.register_station("a", "air", {"interval_s": 60}) is True
    assert store.register_station("a", "air", {}) is False  # INSERT OR IGNORE
    assert store.get_station_metas(["a", "zz"]) == {"a": {"kind": "air", "interval_s": 60}}
    row = {"ts": 100.25, "seq": 2, "received_at": 1.7e9 + 0.123456, "values": {}, "flags": {}}
    store.record_readings("a", "air", [row])
    older = {**row, "ts": 50.0, "seq": 1, "received_at": 1.0}
    store.record_readings("a", "air", [older])  # a replayed backlog: last stays the newest
    st = store.get_station("a")
    assert st is not None
    assert (st["last_seq"], st["last_reading_ts"], st["readings_total"]) == (2, 100.25, 2)
    assert st["last_seen"] == 1.7e9 + 0.123456  # DOUBLE PRECISION (REAL would round it)
    assert store.query("SELECT coalesce(sum(readings_total), 0) FROM station_state")[0][0] == 2
