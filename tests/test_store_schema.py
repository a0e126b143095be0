"""The storage foundation: one Database class, the schema registry and its migrations.

Release files (tests/fixtures/*-0.1.0.db, made by tests/fixtures/make_release_fixtures.py with
the 0.1.0 code) are opened, as copies, by this code: every row must still read through the
stores, the versions must be current, and a second open must change nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from envnet.store.alerts import ALERTS, SqliteAlertStore
from envnet.store.audit import AUDIT, query_audit, record_audit
from envnet.store.database import Database
from envnet.store.ota import OTA, SqliteOtaStore
from envnet.store.schema import (
    STATE_DB,
    MigrationError,
    Registry,
    SchemaTooNewError,
    statements,
    versions,
)
from envnet.store.state import STATE, SqliteStateStore
from envnet.store.webhooks.outbox import WEBHOOKS
from envnet.store.webhooks.outbox import Outbox as WebhookOutbox
from gateway.buffer import BUFFER, Buffer
from gateway.uplink import UPLINK, Outbox

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_700_000_000.0  # as in make_release_fixtures.py
CURRENT = {o.name: o.version for o in (STATE, ALERTS, OTA, AUDIT, WEBHOOKS)}


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copyfile(FIXTURES / name, dst)
    return dst


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _schema(path: Path) -> dict[str, str]:
    """Every table, index and trigger of the file, by name, as SQLite keeps its text."""
    with sqlite3.connect(path) as c:
        rows = c.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        return {f"{t}:{n}": sql for t, n, sql in rows}


def _open_all(path: Path) -> SqliteStateStore:
    state = SqliteStateStore(path)
    SqliteAlertStore(state)
    SqliteOtaStore(state)
    query_audit(state, limit=1)  # the audit owner is ensured on first use
    WebhookOutbox(path).close()
    return state


# -- the 0.1.0 state file --------------------------------------------------------------------
def test_release_state_file_upgrades_and_every_row_reads(tmp_path):
    path = _copy("state-0.1.0.db", tmp_path)
    before = _schema(path)
    state = SqliteStateStore(path)
    alerts = SqliteAlertStore(state)
    ota = SqliteOtaStore(state)

    stations = {s["id"]: s for s in state.list_stations()}
    assert set(stations) == {"sy-air-001", "sy-air-002", "sy-water-001", "sy-air-099"}
    a1 = stations["sy-air-001"]
    assert a1["registered"] and a1["meta"]["name"] == "沈阳 站点 1" and a1["meta"]["lat"] == 41.79
    assert a1["last_values"] == {"pm25": 36.0, "pm10": 82.5}
    assert a1["last_flags"] == {"pm10": "maint"} and a1["last_seq"] == 42
    assert a1["readings_total"] == 2 and a1["last_reading_ts"] == T0 + 60
    assert a1["status"] == "online" and a1["status_body"]["interval_s"] == 60
    assert a1["health"] == {"rssi": -61, "heap": 81234, "uptime_s": 3600}
    assert stations["sy-air-002"]["status"] == "offline"
    assert stations["sy-water-001"]["meta"] == {"name": "浑河 断面", "section": "III"}
    assert not stations["sy-air-099"]["registered"]
    assert state.get_station_meta("sy-air-002") == {
        "kind": "air",
        "name": "Station 2",
        "district": "沈河区",
    }
    total, views = state.station_views_json(T0 + 30, 3.0, {"air": 60.0, "water": 300.0})
    assert total == 4 and [v[0] for v in views] == sorted(stations)
    assert state.get_kv("gateway.counters") == {"accepted": 1234, "rejected": 5}
    assert state.get_kv("episode.level") == "orange"

    events = ota.events_after(0)
    assert [(e["station"], e["sub"]) for e in events] == [
        ("sy-air-001", "ota"),
        ("sy-air-002", "cmd/ack"),
    ]
    assert events[0]["body"]["state"] == "confirmed"

    assert [a.id for a in alerts.list_open_alerts()] == ["al-1", "al-2"]
    al2 = alerts.get_alert("al-2")
    assert al2 is not None and al2.state == "acknowledged" and al2.acknowledged_by == "ops"
    assert al2.unit == "µg/m³" and al2.category_zh == "轻度污染" and al2.parameter == "pm10"
    al3 = alerts.get_alert("al-3")
    assert al3 is not None and al3.state == "resolved" and al3.resolved_at == T0 + 400
    assert [h.event for h in alerts.history("al-2")] == ["opened", "acknowledged"]
    assert [h.event for h in alerts.history("al-3")] == ["resolved"]
    assert alerts.load_state("sy-air-001|exceed|pm25") == {"since": T0, "values": [35.5, 36.0]}
    assert sorted(alerts.daily_aqis("2023-11-14")) == [
        ("sy-air-001", "city", 112),
        ("sy-air-002", "micro", 87),
    ]
    assert alerts.count_open() == 2

    rel = ota.get_release("1.2.0")
    assert rel is not None and rel["files"] == 2 and rel["bytes"] == 4600
    assert rel["signature_checked"] == 1 and rel["registered_by"] == "release-bot"
    (ro,) = ota.list_rollouts()
    assert ro["id"] == "ro-1" and ro["state"] == "paused" and ro["stage"] == 1
    assert ro["stages"] == [["sy-air-001"], ["sy-air-002", "sy-water-001"]]
    assert ota.active_rollout() is not None
    targets = {t["station"]: t for t in ota.targets("ro-1")}
    assert targets["sy-air-001"]["state"] == "confirmed"
    assert (
        targets["sy-air-002"]["waived"] == 1 and targets["sy-air-002"]["reason"] == "hash mismatch"
    )
    assert targets["sy-water-001"]["state"] == "pending"
    assert ota.target_by_cmd("cmd-1") is not None
    assert ota.report("sy-air-001")["from_version"] == "1.1.0"  # type: ignore[index]

    rows, cursor = query_audit(state)
    assert cursor is None
    assert [(r.actor, r.action, r.target) for r in rows] == [
        ("api:ops-key", "station.maint.start", "sy-air-002"),
        ("ops", "alert.ack", "al-2"),
        ("technician", "station.provision", "sy-air-001"),
    ]
    assert rows[2].detail == {"kind": "air"}  # the old code dropped the password too
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # triggers still there
        with state.tx() as c:
            c.execute("DELETE FROM audit")

    # The webhook tables, registered by envnet.store.webhooks.outbox.
    box = WebhookOutbox(path)
    subs = box.list_subscriptions()
    assert [s["url"] for s in subs] == [
        "https://hooks.example/envnet",
        "https://other.example/hook",
    ]
    assert subs[0]["description"] == "值班 on-call" and subs[0]["stations"] == ["sy-air-001"]
    (delivered,) = box.list_deliveries(subs[0]["id"])
    assert delivered["status"] == "delivered" and delivered["attempts"] == 1
    assert [a["status_code"] for a in delivered["attempt_log"]] == [200]
    (pending,) = box.list_deliveries(subs[1]["id"])
    assert pending["status"] == "pending"
    # Version 2 of the webhooks owner: release subscriptions filter by no unit (any), and a
    # new one can.
    assert [s["units"] for s in subs] == [[], []]
    new = box.create_subscription("https://x.example/h", "s" * 16, ["case.slip"], units=["u1"])
    assert box.get_subscription(new["id"])["units"] == ["u1"]  # type: ignore[index]
    box.close()

    assert versions(state.db) == CURRENT
    assert CURRENT["webhooks"] == 2
    after = _schema(path)
    assert "table:schema_versions" in after
    del after["table:schema_versions"]
    # Version 1 adopted the release's tables as they were; the webhooks owner's version 2
    # added a column to two of its tables, the alerts owner's version 2 a table of its own
    # (daily_aqi_original: a reviewer's rewrite of daily_aqi keeps the original there), and
    # nothing else changed.
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {
        "table:webhook_subscriptions",
        "table:webhook_events",
        "table:daily_aqi_original",
    }
    assert set(after) == set(before) | {"table:daily_aqi_original"}
    assert after["table:webhook_subscriptions"].endswith("units TEXT NOT NULL DEFAULT '[]')")
    assert after["table:webhook_events"].endswith("units TEXT)")
    state.close()


def test_second_open_of_an_upgraded_file_changes_nothing(tmp_path):
    path = _copy("state-0.1.0.db", tmp_path)
    _open_all(path).close()
    upgraded = _sha(path)
    stamps = sqlite3.connect(path).execute("SELECT * FROM schema_versions").fetchall()
    state = _open_all(path)
    assert versions(state.db) == CURRENT
    state.close()
    assert _sha(path) == upgraded
    assert sqlite3.connect(path).execute("SELECT * FROM schema_versions").fetchall() == stamps


def test_release_buffer_and_uplink_files_upgrade(tmp_path):
    buf = Buffer(_copy("buffer-0.1.0.db", tmp_path))
    assert versions(buf.db) == {"buffer": BUFFER.version}
    ((_, line),) = buf.pending(10)
    assert line == f"air,station=sy-air-001 pm25=35.5 {int((T0 + 60) * 1e9)}"
    assert buf.pending_count() == 1 and buf.last_eval_id() == 1
    ((_, item),) = buf.eval_backlog(0, 1, 10)
    assert item.sub == "reading" and item.body == '[{"seq": 41}]'
    (raw,) = buf.raw_messages("sy-air-001")
    assert raw["payload"] == b'{"seq":41}'
    (dead,) = buf.dead_letters()
    assert dead["reason"] == "invalid_json" and dead["payload"] == b"{not json"
    buf.close()

    box = Outbox(_copy("uplink-0.1.0.db", tmp_path))
    assert versions(box.db) == {"uplink": UPLINK.version}
    assert box.pending_count() == 1 and box.pending_count("bureau") == 1
    _, qn, packet = box.next_pending("bureau")  # type: ignore[misc]
    assert qn == "20231115061420000" and packet == b"##0000QN=20231115061420000\r\n"
    box.db.close()


# -- fresh files -----------------------------------------------------------------------------
def test_fresh_state_file_is_current_and_is_the_upgraded_release_schema(tmp_path):
    path = tmp_path / "state.db"
    state = _open_all(path)
    WebhookOutbox(path).close()
    assert versions(state.db) == CURRENT
    state.close()
    fresh = _schema(path)
    del fresh["table:schema_versions"]
    # A fresh file and the 0.1.0 file upgraded by this code have the same schema.
    released = _copy("state-0.1.0.db", tmp_path)
    _open_all(released).close()
    upgraded = _schema(released)
    del upgraded["table:schema_versions"]
    assert fresh == upgraded


def test_fresh_buffer_and_uplink_files_are_current(tmp_path):
    buf = Buffer(tmp_path / "b.db")
    assert versions(buf.db) == {"buffer": 2}
    buf.close()
    box = Outbox(tmp_path / "u.db")
    assert versions(box.db) == {"uplink": 1}
    assert box.db.query("PRAGMA synchronous")[0][0] == 2  # FULL, as before
    box.db.close()
    for name in ("b.db", "u.db"):
        fresh = _schema(tmp_path / name)
        del fresh["table:schema_versions"]
        if name == "b.db":  # version 2 adds the message log's cursor, nothing else
            assert fresh.pop("table:log_cursor")
        old = "buffer-0.1.0.db" if name == "b.db" else "uplink-0.1.0.db"
        assert fresh == _schema(FIXTURES / old)


def test_stores_opening_a_fresh_file_at_once_migrate_it_once(tmp_path):
    path = tmp_path / "state.db"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_() -> None:
        try:
            barrier.wait()
            _open_all(path).close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    db = Database(path)
    assert versions(db) == CURRENT
    db.close()


# -- refusing and rolling back ---------------------------------------------------------------
def test_a_file_newer_than_the_code_is_refused_naming_the_version(tmp_path):
    path = tmp_path / "state.db"
    SqliteAlertStore(SqliteStateStore(path))
    with sqlite3.connect(path) as c:
        c.execute("UPDATE schema_versions SET version=7 WHERE owner='alerts'")
    state = SqliteStateStore(path)  # the state owner is still current: this opens
    with pytest.raises(SchemaTooNewError) as e:
        SqliteAlertStore(state)
    msg = str(e.value)
    assert "'alerts'" in msg and "version 7" in msg and f"version {ALERTS.version}" in msg
    assert str(path) in msg
    with sqlite3.connect(path) as c:
        c.execute("UPDATE schema_versions SET version=2 WHERE owner='state'")
    with pytest.raises(SchemaTooNewError, match="'state' tables .* version 2, newer"):
        SqliteStateStore(path)


def _probe_registry() -> Registry:
    return Registry("probe", "a test file")


V1 = "CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"


def test_a_migration_failing_midway_leaves_the_previous_version(tmp_path):
    path = tmp_path / "probe.db"
    v1 = _probe_registry().register("things", module=__name__, tables=("things",), migrations=(V1,))
    db = Database(path)
    db.ensure(v1)
    db.execute("INSERT INTO things(name) VALUES ('kept')")
    db.close()

    # Version 2 works, version 3 fails on its second statement: neither may stay.
    broken = _probe_registry().register(
        "things",
        module=__name__,
        tables=("things",),
        migrations=(
            V1,
            "ALTER TABLE things ADD COLUMN colour TEXT",
            "CREATE INDEX things_by_colour ON things(colour);"
            " ALTER TABLE things ADD COLUMN name TEXT",  # duplicate column: fails
        ),
    )
    db = Database(path)
    with pytest.raises(MigrationError) as e:
        db.ensure(broken)
    assert "migration 3 of 'things'" in str(e.value) and "stays at version 1" in str(e.value)
    assert versions(db) == {"things": 1}
    assert [r[1] for r in db.query("PRAGMA table_info(things)")] == ["id", "name"]
    assert not db.query("SELECT 1 FROM sqlite_master WHERE name='things_by_colour'")
    assert not db.in_transaction
    db.close()

    fixed = _probe_registry().register(
        "things",
        module=__name__,
        tables=("things",),
        migrations=(
            V1,
            "ALTER TABLE things ADD COLUMN colour TEXT",
            "CREATE INDEX things_by_colour ON things(colour)",
        ),
    )
    db = Database(path)
    db.ensure(fixed)
    assert versions(db) == {"things": 3}
    assert [tuple(r) for r in db.query("SELECT name, colour FROM things")] == [("kept", None)]
    db.close()


def test_ensure_inside_a_rolled_back_transaction_is_redone(tmp_path):
    state = SqliteStateStore(tmp_path / "state.db")
    with pytest.raises(RuntimeError):
        with state.tx():
            record_audit(state, actor="a", action="x.y", target="t")
            raise RuntimeError("the caller's change failed")
    assert "audit" not in versions(state.db)  # rolled back with the caller's transaction
    record_audit(state, actor="a", action="x.y", target="t")
    assert versions(state.db)["audit"] == AUDIT.version
    assert len(query_audit(state)[0]) == 1


# -- the registry's rules --------------------------------------------------------------------
def test_each_table_has_exactly_one_owner():
    owned = [t for t, _, _ in STATE_DB.ownership()]
    assert len(owned) == len(set(owned))
    assert STATE_DB.owner_of("alerts") is ALERTS and STATE_DB.owner_of("ota_events") is STATE
    assert "| audit | audit | envnet.store.audit | 1 |" in STATE_DB.describe()
    reg = _probe_registry()
    reg.register("a", module="m.a", tables=("things",), migrations=(V1,))
    with pytest.raises(ValueError, match=r"\['things'\] already owned by 'a'"):
        reg.register("b", module="m.b", tables=("things",), migrations=(V1,))
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", module="m.c", tables=("other",), migrations=("CREATE TABLE other (x)",))
    with pytest.raises(ValueError, match=r"migration 2: touches \['things'\]"):
        reg.register(
            "c",
            module="m.c",
            tables=("mine",),
            migrations=("CREATE TABLE mine (x)", "ALTER TABLE things ADD COLUMN y"),
        )
    with pytest.raises(ValueError, match=r"no migration creates \['missing'\]"):
        reg.register(
            "d", module="m.d", tables=("mine2", "missing"), migrations=("CREATE TABLE mine2 (x)",)
        )
    with pytest.raises(ValueError, match="non-empty"):
        reg.register("e", module="m.e", tables=("z",), migrations=())


def test_statements_keep_trigger_bodies_whole():
    stmts = statements(
        "CREATE TABLE t (x);\n-- a comment; with a semicolon\n"
        "CREATE TRIGGER t_no BEFORE DELETE ON t BEGIN SELECT RAISE(ABORT, 'no; never'); END;\n"
    )
    assert len(stmts) == 2 and stmts[1].endswith("END;")


# -- the Database's transactions -------------------------------------------------------------
def test_a_failed_nested_transaction_undoes_only_its_own_writes(tmp_path):
    state = SqliteStateStore(tmp_path / "state.db")
    with state.tx():
        state.put_kv("outer", 1)
        with pytest.raises(ValueError):
            with state.tx():
                state.put_kv("inner", 2)
                raise ValueError("inner fails")
        state.put_kv("after", 3)
    assert (state.get_kv("outer"), state.get_kv("inner"), state.get_kv("after")) == (1, None, 3)
    with pytest.raises(ValueError):
        with state.tx():
            state.put_kv("outer", 9)
            raise ValueError("outer fails")
    assert state.get_kv("outer") == 1 and not state.db.in_transaction
