"""The webhook outbox without HTTP: signature, retry policy, fan-out filters, ordering, leases,
event bodies, settings, and the gateway counters re-exported on /metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from envnet.config import ConfigError, WebhookSettings, load_config
from envnet.domain import webhooks as wh
from envnet.domain.webhooks import Event, events_for
from envnet.store.state import SqliteStateStore
from envnet.store.webhooks import Conflict, Outbox, emit, prepare

REPO = Path(__file__).resolve().parent.parent


def test_signature_is_hmac_sha256_over_the_raw_body() -> None:
    body = b'{"id":"e1","type":"alert.opened","data":{"station":"sy-001","value":120.5}}'
    sig = wh.sign("s3cret-s3cret-s3cret", body)
    expected = hmac.new(b"s3cret-s3cret-s3cret", body, hashlib.sha256).hexdigest()
    assert sig == f"sha256={expected}"
    assert wh.verify("s3cret-s3cret-s3cret", body, sig)
    assert not wh.verify("s3cret-s3cret-s3cret", body.replace(b"120.5", b"12.5"), sig)
    assert not wh.verify("another-secret-xyz", body, sig)
    assert not wh.verify("s3cret-s3cret-s3cret", body, None)
    assert not wh.verify("s3cret-s3cret-s3cret", body, "sha256=" + "0" * 64)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (204, "delivered"),
        (None, "retry"),  # refused, reset, timed out
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (301, "failed"),  # redirects are not followed
        (400, "failed"),
        (401, "failed"),
        (404, "failed"),
        (410, "failed"),
        (422, "failed"),
    ],
)
def test_which_answers_are_retried(code: int | None, outcome: str) -> None:
    assert wh.classify(code) == outcome


def test_backoff_is_exponential_capped_and_jittered_downwards() -> None:
    cfg = WebhookSettings(backoff_base_s=5, backoff_factor=2, backoff_cap_s=3600, jitter=0.25)
    full = [wh.backoff_s(n, cfg, rnd=lambda: 0.0) for n in range(1, 13)]
    assert full == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    shortest = [wh.backoff_s(n, cfg, rnd=lambda: 1.0) for n in range(1, 13)]
    assert shortest == [0.75 * d for d in full]
    # the defaults keep retrying for most of a night before dead-lettering
    d = WebhookSettings()
    total = sum(wh.backoff_s(n, d, rnd=lambda: 0.0) for n in range(1, d.max_attempts))
    assert 8 * 3600 < total < 12 * 3600


def test_retry_after_header() -> None:
    now = time.time()
    assert wh.retry_after_s("7", now) == 7
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert 28 <= wh.retry_after_s(http_date, now) <= 31
    assert wh.retry_after_s("soon", now) is None
    assert wh.retry_after_s(None, now) is None


def test_webhook_settings_follow_the_env_override_rule() -> None:
    s = load_config(
        None,
        environ={"ENVNET_WEBHOOKS_MAX_ATTEMPTS": "3", "ENVNET_WEBHOOKS_BACKOFF_BASE_S": "0.5"},
    )
    assert s.webhooks.max_attempts == 3 and s.webhooks.backoff_base_s == 0.5
    with pytest.raises(ConfigError, match="webhooks.max_attempts"):
        load_config(None, environ={"ENVNET_WEBHOOKS_MAX_ATTEMPTS": "0"})
    with pytest.raises(ConfigError, match="webhooks.jitter"):
        load_config(None, environ={"ENVNET_WEBHOOKS_JITTER": "2"})


@pytest.fixture
def box(tmp_path: Path) -> Outbox:
    SqliteStateStore(tmp_path / "envnet.db").close()  # the state store's own tables first
    o = Outbox(tmp_path / "envnet.db", base_url="https://envnet.example.cn")
    yield o
    o.close()


def _sub(box: Outbox, **kw) -> str:
    kw.setdefault("events", list(wh.EVENT_TYPES))
    return box.create_subscription("http://127.0.0.1:9/x", "secret-secret-secret", **kw)["id"]


def _deliveries(box: Outbox, sub: str) -> list[str]:
    return [d["event_type"] for d in reversed(box.list_deliveries(sub, limit=500))]


def test_fan_out_follows_types_and_filters(box: Outbox) -> None:
    everything = _sub(box)
    alerts_only = _sub(box, events=["alert.opened", "alert.resolved"])
    one_station = _sub(box, stations=["sy-001"])
    hunnan = _sub(box, districts=["浑南区"])
    severe = _sub(box, severities=["severe"])

    emit(box, Event("alert.opened", {"id": "a1", "station": "sy-001", "severity": "severe"}))
    emit(box, Event("alert.opened", {"id": "a2", "station": "sy-002", "severity": "minor"}))
    emit(box, Event("station.offline", {"station": "sy-001"}, district="浑南区"))
    emit(box, Event("episode.changed", {"level": "orange"}))  # no station, district, severity

    assert len(_deliveries(box, everything)) == 4
    assert _deliveries(box, alerts_only) == ["alert.opened", "alert.opened"]
    assert _deliveries(box, one_station) == ["alert.opened", "station.offline", "episode.changed"]
    assert _deliveries(box, hunnan) == [
        "alert.opened",  # a1 and a2 carry no district: the filter does not apply to them
        "alert.opened",
        "station.offline",
        "episode.changed",
    ]
    assert _deliveries(box, severe) == ["alert.opened", "station.offline", "episode.changed"]


def test_units_filter_sees_the_case_unit_and_an_escalated_slip_parent(box: Outbox) -> None:
    nanhu = _sub(box, units=["heping-nanhu-office"])
    bureau = _sub(box, units=["heping-bureau"])
    tiexi = _sub(box, units=["tiexi-yanfen-office"], events=["case.opened", "case.slip"])
    assert box.get_subscription(nanhu)["units"] == ["heping-nanhu-office"]

    case = {"id": "c1", "unit": "heping-nanhu-office", "district": "和平区"}
    nanhu_only = ("heping-nanhu-office",)
    emit(box, Event("case.opened", case, units=nanhu_only, id="o"))
    emit(box, Event("case.slip", {**case, "slip_type": "notice"}, units=nanhu_only, id="n"))
    urging = {**case, "slip_type": "urging"}  # escalated: concerns the parent unit too
    emit(box, Event("case.slip", urging, units=("heping-nanhu-office", "heping-bureau"), id="u"))
    # About no responsible unit: an alert's `unit` is its measurement unit, not a filter value.
    emit(box, Event("alert.opened", {"id": "a1", "station": "sy-001", "unit": "ug/m3"}))

    assert _deliveries(box, nanhu) == ["case.opened", "case.slip", "case.slip", "alert.opened"]
    assert _deliveries(box, bureau) == ["case.slip", "alert.opened"]
    assert _deliveries(box, tiexi) == []
    stored = box._query("SELECT id, units FROM webhook_events ORDER BY created_at, id")
    assert {r["id"]: r["units"] for r in stored if r["id"] in ("o", "u")} == {
        "o": '["heping-nanhu-office"]',
        "u": '["heping-nanhu-office", "heping-bureau"]',
    }


def test_district_comes_from_the_registry(box: Outbox, tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "envnet.db")
    store.register_station(
        "sy-007", "air", {"district": "铁西区", "name": "铁西站", "name_en": "Tiexi"}
    )
    store.close()
    tiexi = _sub(box, districts=["铁西区"])
    other = _sub(box, districts=["和平区"])
    emit(box, Event("alert.opened", {"id": "a9", "station": "sy-007", "parameter": "pm25"}))
    [d] = box.list_deliveries(tiexi)
    assert box.list_deliveries(other) == []
    body = box.get_delivery(tiexi, d["id"])["body"]
    assert body["data"]["station_name"] == {"zh": "铁西站", "en": "Tiexi"}
    assert body["data"]["parameter_label"] == {"zh": "细颗粒物(PM2.5)", "en": "PM2.5"}


def test_event_body_shape(box: Outbox) -> None:
    sub = _sub(box)
    alert = {
        "id": "al-42",
        "station": "sy-001",
        "rule": "gb3095.24h",
        "parameter": "pm25",
        "severity": "warning",
        "window": "24h",
        "value": 118.0,
        "limit": 75.0,
        "standard": "GB 3095-2012",
        "opened_at": 1714550400.0,
        "state": "open",
        "last_value": 121.0,
        "category": ["轻度污染", "lightly polluted"],
    }
    eid = emit(box, Event("alert.opened", alert, id="evt-1", created_at=1714550400.5))
    [d] = box.list_deliveries(sub)
    body = box.get_delivery(sub, d["id"])["body"]
    assert body["id"] == eid == "evt-1"
    assert body["type"] == "alert.opened"
    assert body["created_at"] == "2024-05-01T08:00:00.500Z"
    assert body["label"] == {"zh": "告警(预警)", "en": "alert opened"}
    assert body["links"] == {
        "self": "https://envnet.example.cn/alerts/al-42",
        "station": "https://envnet.example.cn/stations/sy-001",
    }
    data = body["data"]
    for key in ("id", "station", "rule", "parameter", "severity", "window", "value", "limit"):
        assert data[key] == alert[key]
    assert data["category"] == {"zh": "轻度污染", "en": "lightly polluted"}


def test_same_event_id_is_enqueued_once(box: Outbox) -> None:
    sub = _sub(box)
    for _ in range(3):
        emit(box, Event("station.online", {"station": "sy-001"}, id="online:sy-001:7"))
    assert len(box.list_deliveries(sub)) == 1


def test_bad_events_are_refused(box: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        emit(box, Event("alert.exploded", {}))
    with pytest.raises(ValueError, match="plain JSON"):
        emit(box, Event("alert.opened", {"value": float("nan")}))


def test_heads_go_in_order_and_leases_exclude(box: Outbox) -> None:
    cfg = WebhookSettings(max_attempts=2, backoff_base_s=60, jitter=0)
    a, b = _sub(box), _sub(box)
    for i in range(3):
        emit(box, Event("station.online", {"station": "sy-001", "n": i}))
    now = time.time()
    claims = box.claim_due("me:1:x", now, 10, lease_s=30)
    assert sorted(c.subscription_id for c in claims) == sorted([a, b])  # one head each
    assert all(json.loads(c.body)["data"]["n"] == 0 for c in claims)
    assert box.claim_due("other:2:y", now, 10, lease_s=30) == []  # leased
    ca = next(c for c in claims if c.subscription_id == a)
    cb = next(c for c in claims if c.subscription_id == b)
    # a's head fails retryably: it waits (60 s) and holds back a's later deliveries
    assert box.record_attempt(ca, "me:1:x", cfg, now, 5.0, 500, "HTTP 500") == "retry"
    # b's head is delivered: b's next event is due at once
    assert box.record_attempt(cb, "me:1:x", cfg, now, 5.0, 200, None) == "delivered"
    [nxt] = box.claim_due("me:1:x", time.time(), 10, lease_s=30)
    assert nxt.subscription_id == b and json.loads(nxt.body)["data"]["n"] == 1
    due = box.next_due_at(exclude={b})
    assert due is not None and 55 < due - time.time() <= 60
    # a's head is retried when due; failing again it is the last attempt: dead letter
    [ca2] = box.claim_due("me:1:x", time.time() + 61, 10, lease_s=30, exclude={b})
    assert ca2.delivery_id == ca.delivery_id and ca2.round_attempts == 1
    assert box.record_attempt(ca2, "me:1:x", cfg, now, 5.0, None, "refused") == "dead"
    # ... and a's next delivery goes
    [ca3] = box.claim_due("me:1:x", time.time(), 10, lease_s=30, exclude={b})
    assert json.loads(ca3.body)["data"]["n"] == 1
    dead = box.get_delivery(a, ca.delivery_id)
    assert dead["status"] == "dead" and [x["outcome"] for x in dead["attempt_log"]] == [
        "retry",
        "dead",
    ]
    # redelivery: same id, fresh round, first in line again
    box.record_attempt(ca3, "me:1:x", cfg, now, 5.0, 200, None)
    assert box.redeliver(a, ca.delivery_id)["status"] == "pending"
    with pytest.raises(Conflict):
        box.redeliver(a, ca.delivery_id)
    [again] = box.claim_due("me:1:x", time.time(), 10, lease_s=30, exclude={b})
    assert again.delivery_id == ca.delivery_id and again.round_attempts == 0


def test_a_dead_owner_lease_is_released_on_restart(box: Outbox) -> None:
    _sub(box)
    emit(box, Event("station.online", {"station": "sy-001"}))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    owner = f"vm-test:{int(dead.stdout)}:abcd"
    assert len(box.claim_due(owner, time.time(), 10, lease_s=600)) == 1
    assert box.claim_due("vm-test:1:live", time.time(), 10, lease_s=600) == []
    assert box.release_dead_owners("vm-test") == 1
    assert len(box.claim_due("vm-test:1:live", time.time(), 10, lease_s=600)) == 1


def test_emit_from_another_process(tmp_path: Path) -> None:
    """The gateway's way in: a separate process commits the event; this one sees it."""
    db = tmp_path / "envnet.db"
    box = Outbox(db)
    sub = box.create_subscription("http://127.0.0.1:9/", "secret-secret-secret", ["alert.opened"])
    code = (
        "from envnet.store.webhooks import emit; from envnet.domain.webhooks import Event; "
        "from envnet.config import load_config; "
        f"s = load_config(None, environ={{'ENVNET_STORE_PATH': {str(db)!r}, "
        "'ENVNET_SERVER_PUBLIC_URL': 'https://api.example.cn/'}); "
        "print(emit(s, Event('alert.opened', "
        "{'id': 'x1', 'station': 'sy-003', 'severity': 'warning'})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    event_id = out.stdout.strip()
    [d] = box.list_deliveries(sub["id"])
    assert d["event_id"] == event_id and d["status"] == "pending"
    body = box.get_delivery(sub["id"], d["id"])["body"]
    assert body["links"]["self"] == "https://api.example.cn/alerts/x1"
    # and the in-process helper, with a path: relative links
    emit(db, Event("alert.opened", {"id": "x2", "station": "sy-003"}))
    newest = box.list_deliveries(sub["id"])[0]
    assert box.get_delivery(sub["id"], newest["id"])["body"]["links"]["self"] == "/alerts/x2"
    box.close()


def test_metrics_reexport_gateway_counters_and_alerts(tmp_path: Path) -> None:
    from gateway import metrics as gw
    from server.app import create_app

    gw.messages_rejected.labels(reason="bad_json").inc(3)
    gw.influx_write_seconds.observe(0.02)
    gw.buffer_pending.set(17)
    settings = load_config(None, environ={"ENVNET_STORE_PATH": str(tmp_path / "envnet.db")})
    app = create_app(settings)
    store = app.state.store
    for gid in ("gw-a", "gw-b"):
        store.put_kv(f"gateway:{gid}:metrics", {"at": time.time(), "metrics": gw.snapshot()})
    from envnet.domain.alerts.repository import Alert
    from envnet.store.alerts import SqliteAlertStore

    alerts = SqliteAlertStore(store)  # the alert engine's real store, in the same database
    for aid, state in (("a1", "open"), ("a2", "acknowledged"), ("a3", "resolved")):
        alerts.insert_alert(
            Alert(
                aid,
                "sy-001",
                "air_limit_24h",
                aid,
                "low",
                "24h",
                80.0,
                75.0,
                "GB 3095-2012",
                1.0,
                state,
                80.0,
                1.0,
            )
        )
    text = TestClient(app).get("/metrics").text
    for gid in ("gw-a", "gw-b"):
        assert f'envnet_messages_rejected_total{{gateway="{gid}",reason="bad_json"}}' in text
        assert f'envnet_buffer_pending{{gateway="{gid}"}} 17.0' in text
        assert f'envnet_influx_write_seconds_bucket{{gateway="{gid}",le="0.025"}}' in text
        assert f'envnet_gateway_metrics_age_seconds{{gateway="{gid}"}}' in text
    assert "# TYPE envnet_influx_write_seconds histogram" in text
    assert "# TYPE envnet_messages_rejected_total counter" in text
    assert 'envnet_alerts{state="open"} 1.0' in text
    assert "envnet_alerts_open 2.0" in text
    assert 'envnet_webhook_deliveries{status="dead"} 0.0' in text
    assert 'envnet_webhook_delivery_attempts_total{outcome="delivered"}' in text


def emit_change(db: Path, change) -> list[str]:
    """What the alert engine's callers do with one change: emit each of its events."""
    return [emit(db, event) for event in events_for(change)]


def test_alert_engine_events_map_to_webhook_bodies(box: Outbox, tmp_path: Path) -> None:
    from envnet.domain.alerts.model import AlertEvent
    from envnet.domain.alerts.repository import Alert

    sub = _sub(box, severities=["high"])
    alert = Alert(
        id="9f2c",
        station="sy-001",
        rule="air_limit",
        parameter="pm25",
        severity="high",
        window="24h",
        value=160.0,
        limit=75.0,
        standard="GB 3095-2012",
        opened_at=1714550400.0,
        state="open",
        last_value=160.0,
        last_at=1714550400.0,
        category_zh="重度污染",
        category_en="heavily polluted",
    )
    db = tmp_path / "envnet.db"
    opened = AlertEvent("alert.opened", 1714550460.0, alert)
    assert emit_change(db, opened) == emit_change(db, opened) == ["9f2c:opened:0"]
    episode = AlertEvent(
        "episode.changed",
        1714550460.0,
        episode={
            "level": "orange",
            "previous": "yellow",
            "day": "2024-05-01",
            "level_zh": "橙色预警(Ⅱ级)",
            "level_en": "orange warning (level II)",
        },
    )
    assert emit_change(db, episode) == ["episode:2024-05-01:orange"]
    network = AlertEvent(
        "alert.opened", 1714550460.0, Alert(**{**alert.to_dict(), "id": "n1", "station": "*"})
    )
    emit_change(db, network)
    ds = list(reversed(box.list_deliveries(sub)))
    assert [d["event_id"] for d in ds] == [
        "9f2c:opened:0",
        "episode:2024-05-01:orange",
        ds[2]["event_id"],
    ]
    first = box.get_delivery(sub, ds[0]["id"])["body"]
    assert first["data"]["category"] == {"zh": "重度污染", "en": "heavily polluted"}
    assert first["created_at"] == "2024-05-01T08:01:00.000Z"
    assert first["links"]["station"] == "/stations/sy-001"
    ep = box.get_delivery(sub, ds[1]["id"])["body"]
    assert ep["data"]["level_label"] == {"zh": "橙色预警(Ⅱ级)", "en": "orange warning (level II)"}
    assert ep["links"] == {}
    net = box.get_delivery(sub, ds[2]["id"])["body"]
    assert net["links"] == {"self": "/alerts/n1"}  # no /stations/* link


def test_emit_in_the_callers_transaction_is_atomic(box: Outbox, tmp_path: Path) -> None:
    db = tmp_path / "envnet.db"
    prepare(db)
    sub = _sub(box)
    store = SqliteStateStore(db)
    with pytest.raises(RuntimeError), store.tx() as conn:
        emit(db, Event("alert.resolved", {"id": "r1", "station": "sy-001"}), conn=conn)
        raise RuntimeError("the alert's own change failed")
    assert box.list_deliveries(sub) == []  # rolled back together
    with store.tx() as conn:
        conn.execute("INSERT INTO kv(key, value, updated_at) VALUES ('alert:r1', '{}', 0)")
        eid = emit(db, Event("alert.resolved", {"id": "r1", "station": "sy-001"}), conn=conn)
    [d] = box.list_deliveries(sub)
    assert d["event_id"] == eid and store.get_kv("alert:r1") == {}
    store.close()


def test_the_docs_show_the_event_catalogue() -> None:
    """docs/webhooks.md section 2 lists exactly the catalogue's types, labels and when."""
    text = (REPO / "docs" / "webhooks.md").read_text(encoding="utf-8")
    section = text.split("## 2. Events", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `") and not line.startswith("| `type`")
    ]
    assert rows == [[f"`{k.type}`", k.zh, k.when] for k in wh.CATALOGUE]
    assert wh.EVENT_TYPES == tuple(k.type for k in wh.CATALOGUE if k.type != wh.PING)


def test_offline_alerts_are_also_station_events() -> None:
    from envnet.domain.alerts.model import AlertEvent
    from envnet.domain.alerts.repository import Alert

    alert = Alert(
        "off1", "sy-004", "offline", "status", "high", "", None, None, "", 10.0, "open", None, 10.0
    )
    opened = events_for(AlertEvent("alert.opened", 20.0, alert))
    assert [(e.type, e.id, e.station) for e in opened] == [
        ("alert.opened", "off1:opened:0", "sy-004"),
        ("station.offline", "off1:station.offline", "sy-004"),
    ]
    assert opened[1].data == {"station": "sy-004", "at": 20.0, "alert_id": "off1"}
    resolved = events_for(AlertEvent("alert.resolved", 30.0, alert))
    assert [e.type for e in resolved] == ["alert.resolved", "station.online"]
    acked = events_for(AlertEvent("alert.acknowledged", 25.0, alert))
    assert [e.type for e in acked] == ["alert.acknowledged"]


def test_ping_goes_to_one_subscription_only(box: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        emit(box, Event(wh.PING, {}))
    a, b = _sub(box), _sub(box)
    emit(box, Event(wh.PING, {"webhook_id": a}), only_subscription=a)
    assert _deliveries(box, a) == ["ping"] and _deliveries(box, b) == []
