"""The server and the CLI on the PostgreSQL state store (store.url), as gateways on several
machines share it (docs/operations.md, "Gateways on several machines").

The same stations are registered with `envnet provision` and given the same state in a SQLite
store and in PostgreSQL; a real server process on each answers `GET /stations` with the same
bytes (whole list, pages, filters). On the PostgreSQL server: alerts listed and acknowledged,
a console user added with `envnet users add` logs in, cases opened (a duplicate refused through
the engine-neutral IntegrityError), a review invalidation marks an alert, a webhook
subscription receives the acknowledgement from the outbox, and every change has its audit row;
`/metrics` reads the store. Then PostgreSQL is restarted under a running server and a store
connection: both go on without a restart of their own.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import REPO, Proc, wait_until
from typer.testing import CliRunner

from envnet.cli import app as cli
from envnet.devkit.services import PostgreSQL, free_port
from envnet.domain.alerts.repository import Alert
from envnet.store.alerts import SqliteAlertStore
from envnet.store.database import IntegrityError, open_database
from envnet.store.state import SqliteStateStore
from envnet.tools import provision as pv

psycopg = pytest.importorskip("psycopg", reason="psycopg (pyproject dependency) not installed")
pytestmark = pytest.mark.skipif(
    not Path(pv.MOSQUITTO_PASSWD).exists(), reason="mosquitto_passwd not installed"
)

from envnet.store.postgres import PgDatabase  # noqa: E402 (needs psycopg)

SITE = REPO / "envnet" / "devkit" / "sites" / "shenyang.json"
KEYS = {"admin": "test-key", "duty": "duty-key", "rev": "rev-key"}
CST = timezone(timedelta(hours=8))


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@pytest.fixture(scope="module")
def postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    with PostgreSQL(tmp_path_factory.mktemp("postgresql")) as pg:
        yield pg


def _database(pg: PostgreSQL, name: str) -> str:
    """A fresh database on the server; its URL."""
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg.url.replace(f"/{pg.database}?", f"/{name}?")


def _env(tmp: Path, location: str) -> dict[str, str]:
    env = {
        "ENVNET_STORE_PATH": str(tmp / "envnet.db"),
        "ENVNET_MQTT_URL": "mqtt://127.0.0.1:1883",
        "ENVNET_INFLUX_URL": f"http://127.0.0.1:{free_port()}",  # none: reviews say so
        "ENVNET_SERVER_API_KEY": KEYS["admin"],
        "ENVNET_SERVER_API_KEYS": f"duty:{KEYS['duty']},rev:{KEYS['rev']}",
        "ENVNET_SERVER_KEY_ROLES": "duty:duty_room,rev:reviewer",
        "ENVNET_CASES_GRID_FILE": str(SITE),
        "ENVNET_CASES_PHOTOS_DIR": str(tmp / "photos"),
        "ENVNET_WEBHOOKS_POLL_INTERVAL_S": "0.05",
        "ENVNET_WEBHOOKS_TIMEOUT_S": "2",
        "ENVNET_REVIEW_CHECK_INTERVAL_S": "0",
        "ENVNET_PAGES_COOKIE_SECURE": "false",  # plain http in the test
    }
    if location.startswith("postgresql://"):
        env["ENVNET_STORE_URL"] = location
    return env


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    r = CliRunner().invoke(cli, list(args), env=env, input=stdin)
    assert r.exit_code == 0, r.output
    return r.output


def _populate(tmp: Path, env: dict[str, str], now: float) -> None:
    """The same stations and state in either engine: provisioned with the CLI, then the
    gateway's own store calls with fixed times (so that both stores hold the same values)."""
    out, passwd, acl = tmp / "stations", tmp / "mosquitto.passwd", tmp / "mosquitto.acl"
    common = ["--out", str(out), "--passwd-file", str(passwd), "--acl-file", str(acl)]
    for sid, kind, board, extra in (
        ("sy-air-001", "air", "esp32-air-v1", ["--district", "和平区", "--cell", "heping-nanhu"]),
        ("sy-air-002", "air", "esp32-air-v1", ["--district", "铁西区", "--lat", "41.8"]),
        ("sy-air-003", "air", "esp32-air-v1", ["--name-zh", '站点 "三"']),
        ("sy-water-01", "water", "esp32-water-v1", ["--river", "浑河", "--target-class", "III"]),
    ):
        _cli(env, "provision", sid, "--kind", kind, "--site", f"site {sid}", "--board", board,
             *extra, *common, "--actor", "installer")  # fmt: skip
    store = SqliteStateStore(env.get("ENVNET_STORE_URL") or env["ENVNET_STORE_PATH"])
    try:
        air = {"pm25": 35.125, "pm10": 61.0, "co": 0.7000000000000001, "o3": 1e-7}
        store.record_readings(
            "sy-air-001",
            "air",
            [
                {"ts": now - 70.25, "seq": 41, "received_at": now - 69.5, "values": air,
                 "flags": {}},
                {"ts": now - 10.5, "seq": 42, "received_at": now - 9.123456789012345,
                 "values": {**air, "pm25": 36.5}, "flags": {"pm10": "range"}},
            ],
        )  # fmt: skip
        store.record_status("sy-air-001", "online", {"interval_s": 60, "fw": "1.2"}, now - 100)
        store.record_health("sy-air-001", {"rssi": -61, "heap": 81234.5, "vbat": None}, now - 8)
        # heard long ago: stale
        store.record_readings(
            "sy-air-002", "air",
            [{"ts": now - 9000, "seq": 7, "received_at": now - 8999.75,
              "values": {"pm25": 12.0}, "flags": {}}],
        )  # fmt: skip
        store.record_status("sy-air-002", "online", {"interval_s": 60}, now - 9100)
        store.record_status("sy-water-01", "offline", {"reason": "last will"}, now - 30)
        # heard, never provisioned: registered false
        store.record_readings(
            "sy-air-099", "air",
            [{"ts": now - 5, "seq": 1, "received_at": now - 4.5,
              "values": {"pm25": float("nan")}, "flags": {}}],
        )  # fmt: skip
        store.record_status("sy-air-099", "online", {"interval_s": 300}, now - 5)
        alerts = SqliteAlertStore(store)
        for n, (station, param) in enumerate((("sy-air-001", "pm25"), ("sy-air-002", "pm10"))):
            alerts.insert_alert(
                Alert(
                    id=f"al-{n}", station=station, rule="air_limit_1h", parameter=param,
                    severity="high", window="1h", value=80.0 + n, limit=75.0,
                    standard="GB 3095-2012", opened_at=now - 3600 - n, state="open",
                    last_value=80.0 + n, last_at=now - 60, created_at=now - 3600,
                    updated_at=now - 60,
                )
            )  # fmt: skip
    finally:
        store.close()


def _server(tmp: Path, env: dict[str, str], name: str) -> tuple[Proc, str]:
    port = free_port()
    full = {**_process_env(), **env, "ENVNET_SERVER_LISTEN": f"127.0.0.1:{port}"}
    proc = Proc(["server"], full, tmp / f"server-{name}.log").start()
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 30,
               what=f"server on {name}")  # fmt: skip
    return proc, base


def _process_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ENVNET_")} | {
        "PYTHONPATH": str(REPO)
    }


STATION_QUERIES = (
    "",
    "?limit=2",
    "?limit=2&offset=2",
    "?limit=1&offset=4",
    "?kind=air",
    "?state=stale",
    "?state=online&kind=air",
    "?kind=water&state=offline",
    "?limit=1&offset=1&state=online",
)


def _stations(base: str) -> list[tuple[int, str, str | None, bytes]]:
    out = []
    for q in STATION_QUERIES:
        r = httpx.get(f"{base}/stations{q}", timeout=10)
        link = r.headers.get("link")
        out.append(
            (r.status_code, r.headers["x-total-count"], link and link.replace(base, ""), r.content)
        )
    return out


class _Receiver(BaseHTTPRequestHandler):
    got: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.got.append({"event": self.headers.get("X-Envnet-Event"), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_server_and_cli_on_postgresql(tmp_path: Path, postgresql: PostgreSQL) -> None:
    # -- the same data in both engines; GET /stations byte for byte -----------------------
    now = float(int(time.time()))  # the stations' times, relative to it: the same in both
    answers = {}
    procs = []
    try:
        for name, location in (
            ("sqlite", str(tmp_path / "sqlite" / "envnet.db")),
            ("postgresql", _database(postgresql, "server_api")),
        ):
            tmp = tmp_path / name
            tmp.mkdir(exist_ok=True)
            env = _env(tmp, location)
            _populate(tmp, env, now)
            proc, base = _server(tmp, env, name)
            procs.append(proc)
            answers[name] = _stations(base)
        assert answers["postgresql"] == answers["sqlite"]
        listed = json.loads(answers["postgresql"][0][3])
        assert [(s["id"], s["state"], s["registered"]) for s in listed] == [
            ("sy-air-001", "online", True),
            ("sy-air-002", "stale", True),
            ("sy-air-003", "unknown", True),
            ("sy-air-099", "online", False),
            ("sy-water-01", "offline", True),
        ]
        assert listed[3]["last_values"] == {"pm25": None}  # NaN: the re-encoded (slow) path
        assert listed[0]["last_seen"] == now - 8 and listed[0]["meta"]["district"] == "和平区"

        # -- the rest of the API on PostgreSQL --------------------------------------------
        pg_env = _env(tmp_path / "postgresql", location)
        receiver = HTTPServer(("127.0.0.1", 0), _Receiver)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        try:
            _exercise_api(base, pg_env, location, receiver.server_address[1], now)
        finally:
            receiver.shutdown()
    finally:
        for p in procs:
            p.stop()


def _exercise_api(base: str, env: dict[str, str], url: str, receiver_port: int, now: float) -> None:
    admin, duty, rev = auth("admin"), auth("duty"), auth("rev")
    # a webhook subscription, then an alert acknowledged: the outbox delivers the event
    r = httpx.post(
        f"{base}/webhooks",
        json={"url": f"http://127.0.0.1:{receiver_port}/hook", "events": ["alert.acknowledged"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    hook = r.json()["id"]
    alerts = httpx.get(f"{base}/alerts", params={"state": "open"}, headers=admin).json()
    assert sorted(a["id"] for a in alerts) == ["al-0", "al-1"]
    r = httpx.post(f"{base}/alerts/al-0/ack", json={"note": "seen"}, headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "acknowledged", r.text
    assert httpx.post(f"{base}/alerts/nope/ack", headers=admin).status_code == 404
    wait_until(lambda: _Receiver.got, 20, what="the webhook delivery")
    assert _Receiver.got[0]["event"] == "alert.acknowledged"
    assert b'"al-0"' in _Receiver.got[0]["body"]
    wait_until(
        lambda: (
            [
                d["status"]
                for d in httpx.get(f"{base}/webhooks/{hook}/deliveries", headers=admin).json()
            ]
            == ["delivered"]
        ),
        10,
        what="the delivery marked delivered",
    )

    # a console user from the CLI logs in
    _cli(env, "users", "add", "wang", "--role", "duty_room", "--password-stdin",
         stdin="correct horse battery\n")  # fmt: skip
    assert "wang" in _cli(env, "users", "list")
    with httpx.Client(base_url=base) as browser:
        browser.get("/console/login")
        csrf = browser.cookies["envnet_login_csrf"]
        r = browser.post(
            "/console/login",
            data={"name": "wang", "password": "correct horse battery", "csrf": csrf},
        )
        assert r.status_code == 303 and "envnet_session" in r.cookies, r.text
        assert browser.get("/console", follow_redirects=True).status_code == 200

    # cases: the server's scheduler opens one for the open high alert (alert intake); a second
    # open case for that station, rule and parameter is refused by the unique index
    # (IntegrityError on either engine -> 409); another parameter opens and is reassigned
    def intake() -> list[dict]:
        return [
            c
            for c in httpx.get(f"{base}/cases", headers=duty).json()
            if (c["station"], c["parameter"]) == ("sy-air-001", "pm25")
        ]

    wait_until(intake, 20, what="the case opened from alert al-0")
    assert intake()[0]["unit"] == "heping-nanhu-office"
    body = {"station": "sy-air-001", "rule": "air_limit_1h", "parameter": "pm25",
            "severity": "high"}  # fmt: skip
    r = httpx.post(f"{base}/cases", json=body, headers=duty)
    assert r.status_code == 409 and "already has an open case" in r.text, r.text
    r = httpx.post(f"{base}/cases", json={**body, "parameter": "co"}, headers=duty)
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["unit"] == "heping-nanhu-office" and case["state"] == "assigned"
    r = httpx.post(
        f"{base}/cases/{case['id']}/reassign", json={"unit": "tiexi-yanfen-office"}, headers=duty
    )
    assert r.status_code == 200 and r.json()["unit"] == "tiexi-yanfen-office", r.text
    assert httpx.get(f"{base}/reports/supervision", headers=duty).status_code == 200

    # a review invalidation over the hour alert al-1 opened in marks it
    hour = int((now - 3601) // 3600) * 3600
    inv = {
        "station": "sy-air-002",
        "start": datetime.fromtimestamp(hour, CST).isoformat(),
        "end": datetime.fromtimestamp(hour + 1800, CST).isoformat(),
        "reason": "maintenance",
    }
    r = httpx.post(f"{base}/review/invalidations", json=inv, headers=rev, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()["alerts_marked"] == ["al-1"], r.text
    r = httpx.post(f"{base}/review/invalidations", json=inv, headers=rev, timeout=60)
    assert r.status_code == 409, r.text  # overlaps the first
    listed = httpx.get(f"{base}/review/invalidations", headers=rev).json()
    assert [i["station"] for i in listed] == ["sy-air-002"]

    # the audit trail has every change, and stays append-only on PostgreSQL too
    actions = {
        (a["actor"], a["action"])
        for a in httpx.get(f"{base}/audit", params={"limit": 500}, headers=admin).json()["items"]
    }
    for wanted in (
        ("installer", "station.provision"),
        ("admin", "webhook.subscription.create"),
        ("admin", "alert.ack"),
        ("duty", "case.open"),
        ("duty", "case.reassign"),
        ("rev", "review.invalidate"),
    ):
        assert wanted in actions, (wanted, sorted(actions))
    assert any(action == "user.add" for _, action in actions), sorted(actions)
    db = PgDatabase(url)
    try:
        with pytest.raises(IntegrityError, match="append-only"):
            db.execute("DELETE FROM audit")
        with pytest.raises(IntegrityError, match="append-only"):
            with db.transaction() as c:
                c.execute("UPDATE audit SET actor='someone else'")
        assert db.query("SELECT count(*) FROM audit")[0][0] == len(
            httpx.get(f"{base}/audit", params={"limit": 500}, headers=admin).json()["items"]
        )
    finally:
        db.close()

    metrics = httpx.get(f"{base}/metrics").text
    assert re.search(r'^envnet_alerts\{state="acknowledged"\} 1\.0$', metrics, re.M), metrics
    assert re.search(r'^envnet_webhook_deliveries\{status="delivered"\} 1\.0$', metrics, re.M)


def test_a_restarted_postgresql_is_reconnected(tmp_path: Path, postgresql: PostgreSQL) -> None:
    """A database restart (SIGTERM fast shutdown: every session ended) under a running server
    and an open store: both go on with new connections; no restart of theirs is needed."""
    url = _database(postgresql, "reconnect")
    env = _env(tmp_path, url)
    store = SqliteStateStore(url)
    proc, base = _server(tmp_path, env, "reconnect")
    try:
        store.register_station("sy-air-001", "air", {"interval_s": 60})
        before = httpx.get(f"{base}/stations").content
        postgresql.stop()
        # while it is down: a clear error, not a hang, and nothing that needs a restart
        with pytest.raises(Exception, match="connect|terminat|closed"):
            store.get_kv("x")
        r = httpx.get(f"{base}/stations", timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        postgresql.start()
        # the next unit of work reconnects: a read, a write transaction, a snapshot
        assert store.get_station_meta("sy-air-001")["interval_s"] == 60
        store.put_kv("after-restart", 1)
        assert store.get_kv("after-restart") == 1
        assert store.db.reconnects >= 1
        assert httpx.get(f"{base}/stations", timeout=10).content == before
        r = httpx.post(
            f"{base}/cases",
            json={"cell": "heping-nanhu", "rule": "aqi_category", "parameter": "aqi",
                  "severity": "high"},
            headers=auth("duty"),
        )  # fmt: skip
        assert r.status_code == 201, r.text
        # a restart while idle, then the first statement is a write outside a transaction
        postgresql.stop()
        postgresql.start()
        assert store.db.execute("DELETE FROM kv WHERE key='after-restart'").rowcount == 1
        assert store.get_kv("after-restart") is None
        assert "PostgreSQL connection" in proc.output() and "reconnecting" in proc.output()
    finally:
        store.close()
        proc.stop()
        if not postgresql.running:  # failed while it was down: the next test needs it
            postgresql.start()


def test_evaluators_give_up_partitions_whose_lock_a_restart_ended(
    tmp_path: Path, postgresql: PostgreSQL
) -> None:
    """Two gateways' evaluators (PartitionWorkers, as on two machines) hold one partition each
    through session advisory locks. A PostgreSQL restart ends those sessions: each evaluator
    stops the worker whose lock is gone, and the partitions are claimed again, one evaluator
    each, instead of both evaluators reconnecting and then each taking over the other's."""
    from envnet.config import load_config
    from gateway.evaluation import PartitionWorkers

    url = _database(postgresql, "partitions")

    def settings(name: str):
        return load_config(
            None,
            environ={
                "ENVNET_STORE_URL": url,
                "ENVNET_STORE_PATH": str(tmp_path / "unused.db"),
                "ENVNET_GATEWAY_BUFFER_PATH": str(tmp_path / f"buffer-{name}.db"),
                "ENVNET_GATEWAY_EVAL_PARTITIONS": "2",
            },
        )

    gateways = [PartitionWorkers(settings(n)) for n in ("a", "b")]
    threads = [threading.Thread(target=g.run, daemon=True) for g in gateways]

    def held() -> list[list[int]]:
        return [sorted(g.workers) for g in gateways]

    def advisory_locks() -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype='advisory'")
            return row.fetchone()[0]  # type: ignore[index]

    try:
        for n, t in enumerate(threads, 1):
            t.start()
            wait_until(lambda n=n: sum(map(len, held())) == n, 20, what="a claim")
        assert sorted(sum(held(), [])) == [0, 1] and advisory_locks() == 2
        postgresql.stop()
        postgresql.start()
        wait_until(lambda: held() == [[], []], 10, what="both evaluators stopping")
        # claimed again after PARTITION_TAKEOVER_S, each partition by exactly one of them
        wait_until(lambda: sorted(sum(held(), [])) == [0, 1], 30, what="partitions reclaimed")
        time.sleep(2)
        assert sorted(sum(held(), [])) == [0, 1] and advisory_locks() == 2
        assert all(t.is_alive() for t in threads)  # still looking for orphans
    finally:
        for g in gateways:
            g.stop()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_nested_transaction_undoes_only_its_own_part(
    tmp_path: Path, postgresql: PostgreSQL, engine: str
) -> None:
    """transaction() inside an open one is a savepoint (envnet/store/nesting.py): a failing
    inner part is undone, the outer work and a later inner part commit; the same on both."""
    location = str(tmp_path / "n.db") if engine == "sqlite" else _database(postgresql, "nest")
    db = open_database(location)
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    with db.transaction() as c:
        c.execute("INSERT INTO t(k, v) VALUES (?, ?)", (1, "outer"))
        with pytest.raises(RuntimeError), db.transaction() as inner:
            inner.execute("INSERT INTO t(k, v) VALUES (?, ?)", (2, "undone"))
            raise RuntimeError("one bad message")
        with db.transaction() as inner:
            inner.execute("INSERT INTO t(k, v) VALUES (?, ?)", (3, "kept"))
        assert db.in_transaction
    assert not db.in_transaction
    assert [tuple(r) for r in db.query("SELECT k, v FROM t ORDER BY k")] == [
        (1, "outer"),
        (3, "kept"),
    ]
    db.close()
