"""The audit trail's store (envnet/store/audit.py): append-only, filters, cursor paging;
named API keys in the configuration and how a presented key is matched to its name."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from envnet.config import ConfigError, load_config
from envnet.domain import station_actions as actions
from envnet.store.audit import query_audit, record_audit
from envnet.store.state import SqliteStateStore
from server.security import match_key, named_keys


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteStateStore(tmp_path / "envnet.db")
    yield s
    s.close()


def _seed(store: SqliteStateStore) -> list[int]:
    rows = [
        ("duty-room", "alert.ack", "a1", 100.0),
        ("alice", "station.maint.start", "sy-air-01", 110.0),
        ("alice", "station.calibrate", "sy-air-01", 110.0),  # same second as the one before
        ("alice", "station.maint.end", "sy-air-01", 120.0),
        ("ops", "webhook.subscription.create", "wh_1", 130.0),
        ("bob", "station.maintenance", "sy-air-02", 140.0),  # not under station.maint.
    ]
    return [
        record_audit(store, actor=a, action=act, target=t, detail={"n": i}, at=at)
        for i, (a, act, t, at) in enumerate(rows)
    ]


def test_rows_come_back_newest_first_with_their_fields(store: SqliteStateStore) -> None:
    ids = _seed(store)
    rows, nxt = query_audit(store)
    assert nxt is None
    assert [r.id for r in rows] == list(reversed(ids))
    first = rows[-1].to_dict()
    assert first == {
        "id": ids[0],
        "at": 100.0,
        "actor": "duty-room",
        "action": "alert.ack",
        "target": "a1",
        "detail": {"n": 0},
    }


def test_filters(store: SqliteStateStore) -> None:
    _seed(store)

    def actions(**kw) -> list[str]:
        return [r.action for r in query_audit(store, **kw)[0]]

    assert actions(actor="alice") == [
        "station.maint.end",
        "station.calibrate",
        "station.maint.start",
    ]
    # a dotted prefix finds the window's both ends, not an action that merely starts alike
    assert actions(action="station.maint") == ["station.maint.end", "station.maint.start"]
    assert actions(action="station.calibrate") == ["station.calibrate"]
    assert actions(action="station.ma%") == []  # LIKE wildcards are literal
    assert actions(target="sy-air-01", since=110.0, until=119.0) == [
        "station.calibrate",
        "station.maint.start",
    ]
    assert actions(since=131.0) == ["station.maintenance"]
    assert actions(actor="nobody") == []


def test_cursor_pages_cover_every_row_once_even_with_equal_times(store: SqliteStateStore) -> None:
    ids = _seed(store)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        rows, cursor = query_audit(store, limit=2, cursor=cursor)
        seen += [r.id for r in rows]
        pages += 1
        if cursor is None:
            break
    assert seen == list(reversed(ids)) and pages == 3
    # filters hold across pages
    rows, cursor = query_audit(store, actor="alice", limit=2)
    assert [r.action for r in rows] == ["station.maint.end", "station.calibrate"]
    rows, cursor = query_audit(store, actor="alice", limit=2, cursor=cursor)
    assert [r.action for r in rows] == ["station.maint.start"] and cursor is None


@pytest.mark.parametrize("bad", ["zzz", "", "-1", "1.5", "1" * 19, "WzEsIDJd"])
def test_a_bad_cursor_is_a_value_error(store: SqliteStateStore, bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid cursor"):
        query_audit(store, cursor=bad)


def test_the_table_is_append_only(store: SqliteStateStore) -> None:
    rid = record_audit(store, actor="alice", action="station.calibrate", target="sy-air-01")
    for sql in ("UPDATE audit SET actor='mallory'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            with store.tx() as c:
                c.execute(sql)
    # another process's connection is refused just the same (the triggers live in the file)
    other = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        other.execute("DELETE FROM audit WHERE id=?", (rid,))
    other.close()
    assert [r.actor for r in query_audit(store)[0]] == ["alice"]


def test_a_row_joins_the_callers_transaction(store: SqliteStateStore) -> None:
    with pytest.raises(RuntimeError):
        with store.tx():
            record_audit(store, actor="alice", action="station.config.set", target="x")
            raise RuntimeError("the change failed")
    assert query_audit(store)[0] == []  # rolled back with the change it would have recorded


def test_secrets_never_reach_the_trail(store: SqliteStateStore) -> None:
    detail = {"url": "http://h/", "secret": "s3", "nested": {"password": "pw", "ok": 1}}
    record_audit(
        store, actor="ops", action="webhook.subscription.create", target="wh", detail=detail
    )
    raw = store.query("SELECT detail FROM audit")[0][0]
    assert "s3" not in raw and "pw" not in raw
    assert query_audit(store)[0][0].detail == {"url": "http://h/", "nested": {"ok": 1}}
    with pytest.raises(ValueError):
        record_audit(store, actor="", action="x", target="y")


def test_station_actions_from_commands() -> None:
    req = actions.command_request(["config", "set", "interval_s", "30", "--json"])
    assert req == {"op": "config", "set": {"interval_s": 30}}
    before = {"maint": False, "config": {"interval_s": 60}}
    assert actions.station_action(req, {"ok": True, "changed": ["interval_s"]}, before) == (
        "station.config.set",
        {"key": "interval_s", "old": 60, "new": 30},
    )
    assert actions.station_action(req, {"ok": True, "changed": []}, before) is None
    assert actions.station_action(req, {"ok": False, "error": "x"}, before) is None
    pw = actions.command_request(["config", "set", "wifi.password", "hunter22"])
    act = actions.station_action(pw, {"ok": True, "changed": ["wifi.password"]}, {})
    assert act == ("station.config.set", {"key": "wifi.password", "old": "***", "new": "***"})
    on = actions.command_request(["maint", "on"])
    assert actions.station_action(on, {"ok": True}, {"maint": False})[0] == "station.maint.start"
    assert actions.station_action(on, {"ok": True}, {"maint": True}) is None  # already on
    off = actions.command_request(["config", "set", "maint", "false"])
    assert actions.station_action(off, {"ok": True}, {"maint": True})[0] == "station.maint.end"
    cal = actions.command_request(["calibrate", "pm25", "ref=35.5"])
    assert actions.station_action(cal, {"ok": True, "result": {"k": 1.1}}) == (
        "station.calibrate",
        {"sensor": "pm25", "args": {"ref": 35.5}, "result": {"k": 1.1}},
    )
    assert actions.station_action({"op": "reboot"}, {"ok": True}) == ("station.reboot", {})
    # an MQTT request may set several keys at once
    many = {"op": "config", "set": {"interval_s": 30, "mqtt.password": "pw"}}
    assert actions.station_action(many, {"ok": True, "changed": ["interval_s"]}) == (
        "station.config.set",
        {"set": {"interval_s": 30, "mqtt.password": "***"}, "changed": ["interval_s"]},
    )
    for words in (["status"], ["config", "get", "x"], ["maint"], ["readings"], []):
        assert actions.command_request(words) is None


def test_named_api_keys_in_the_configuration(tmp_path: Path) -> None:
    env = {"ENVNET_SERVER_API_KEY": "k-admin", "ENVNET_SERVER_API_KEYS": "duty-room:k1, ops:k2"}
    s = load_config(None, environ=env)
    assert named_keys(s) == {"admin": "k-admin", "duty-room": "k1", "ops": "k2"}
    toml = tmp_path / "envnet.toml"
    toml.write_text('[server]\napi_keys = { "duty-room" = "k1", "field.ops" = "k3" }\n')
    assert load_config(toml, environ={}).server.api_keys == {"duty-room": "k1", "field.ops": "k3"}
    assert load_config(None, environ={"ENVNET_SERVER_API_KEYS": '{"a": "k"}'}).server.api_keys
    for bad, msg in (
        ("a:S3CRET,b:S3CRET", "two names share one key"),
        ("admin:S3CRET", "'admin' is the name of server.api_key"),
        ("S3CRET", "NAME:KEY"),
        ("a b:S3CRET", "bad key name"),
        ("a:,b:S3CRET", "empty"),
    ):
        with pytest.raises(ConfigError, match=msg) as e:
            load_config(None, environ={"ENVNET_SERVER_API_KEYS": bad})
        assert "S3CRET" not in str(e.value)  # a config error never shows a key
    with pytest.raises(ConfigError, match="equals server.api_key"):
        load_config(None, environ={"ENVNET_SERVER_API_KEY": "k", "ENVNET_SERVER_API_KEYS": "a:k"})


def test_match_key_names_the_key_or_none() -> None:
    keys = {"admin": "k-admin", "duty-room": "k1", "ops": "k22"}
    assert match_key("k1", keys) == "duty-room"
    assert match_key("k22", keys) == "ops"
    assert match_key("k-admin", keys) == "admin"
    for wrong in ("k2", "k", "", "k1 ", "K1"):
        assert match_key(wrong, keys) is None
