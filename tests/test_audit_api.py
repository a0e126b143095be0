"""GET /audit and the rows the API itself writes: an acknowledgement and webhook subscription
changes recorded under the name of the API key that made them; filters, cursor paging, CSV;
the trail cannot be changed through the API. The real server app (TestClient), and once the
real uvicorn server with `envnet audit` reading it over HTTP."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import wait_until
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from envnet.cli import app as cli
from envnet.config import load_config
from envnet.devkit.services import free_port
from envnet.domain.alerts.repository import Alert
from envnet.domain.webhooks import Event
from envnet.store.alerts import SqliteAlertStore
from envnet.store.audit import record_audit
from envnet.store.webhooks import emit
from server.app import create_app

KEYS = {"admin": "k-admin-0123", "duty-room": "k-duty-4567", "ops": "k-ops-89ab"}
ENV = {
    "ENVNET_SERVER_API_KEY": KEYS["admin"],
    "ENVNET_SERVER_API_KEYS": "duty-room:k-duty-4567,ops:k-ops-89ab",
}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def make_app(tmp_path: Path, **env: str):
    env = {"ENVNET_STORE_PATH": str(tmp_path / "envnet.db"), **ENV, **env}
    return create_app(load_config(None, environ=env))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    # No lifespan: the delivery worker stays off, so deliveries stay as the test leaves them.
    yield TestClient(make_app(tmp_path), raise_server_exceptions=False)


def open_alert(store, aid: str = "al-1", station: str = "sy-air-01") -> None:
    SqliteAlertStore(store).insert_alert(
        Alert(aid, station, "air_limit_24h", "pm25", "major", "24h", 120.0, 75.0,
              "GB 3095-2012", time.time() - 3600, "open", 120.0, time.time() - 60)
    )  # fmt: skip


def audit_rows(c: TestClient, key: str = "ops", **params) -> list[dict]:
    r = c.get("/audit", params=params, headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_ack_is_recorded_under_the_name_of_the_key_that_sent_it(client: TestClient) -> None:
    open_alert(client.app.state.store)
    t0 = time.time()
    r = client.post(
        "/alerts/al-1/ack", json={"by": "Wang Li", "note": "team sent"}, headers=auth("duty-room")
    )
    assert r.status_code == 200 and r.json()["changed"] is True
    # a repeated ack changes nothing and records nothing
    assert client.post("/alerts/al-1/ack", headers=auth("ops")).json()["changed"] is False
    rows = audit_rows(client)
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["actor"], row["action"], row["target"]) == ("duty-room", "alert.ack", "al-1")
    assert row["detail"]["by"] == "Wang Li" and row["detail"]["note"] == "team sent"
    assert row["detail"]["station"] == "sy-air-01" and row["detail"]["parameter"] == "pm25"
    assert t0 <= row["at"] <= time.time()
    assert row["at"] == client.get("/alerts/al-1").json()["acknowledged_at"]
    # the original single key still works, under the name "admin"
    open_alert(client.app.state.store, "al-2", "sy-air-02")
    assert client.post("/alerts/al-2/ack", headers=auth("admin")).status_code == 200
    assert audit_rows(client, target="al-2")[0]["actor"] == "admin"
    # no `by` in the body: the alert says who by the key's name too
    assert client.get("/alerts/al-2").json()["acknowledged_by"] == "admin"


def test_webhook_subscription_changes_are_recorded_without_secrets(client: TestClient) -> None:
    url = "http://127.0.0.1:9/services/T0K3N-IN-PATH?sig=QUERYSECRET"
    r = client.post(
        "/webhooks",
        json={"url": url, "events": ["alert.opened"], "secret": "whsec_" + "s" * 20},
        headers=auth("ops"),
    )
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    box = client.app.state.outbox
    event = emit(box, Event("alert.opened", {"id": "x"}), only_subscription=wid)
    delivery = next(d for d in box.list_deliveries(wid) if d["event_id"] == event)
    assert (
        client.post(
            f"/webhooks/{wid}/deliveries/{delivery['id']}/redeliver", headers=auth("duty-room")
        ).status_code
        == 409
    )
    assert client.delete(f"/webhooks/{wid}", headers=auth("admin")).status_code == 204
    assert client.delete(f"/webhooks/{wid}", headers=auth("admin")).status_code == 404
    rows = audit_rows(client, target=wid)
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("admin", "webhook.subscription.delete"),
        ("ops", "webhook.subscription.create"),
    ]  # refused calls (409, 404) leave no row
    assert rows[1]["detail"]["events"] == ["alert.opened"]
    assert rows[1]["detail"]["url"] == "http://127.0.0.1:9/..."
    text = client.get("/audit?format=csv", headers=auth("ops")).text
    for secret in ("T0K3N", "QUERYSECRET", "whsec_", *KEYS.values()):
        assert secret not in text
    raw = " ".join(r[0] for r in client.app.state.store.query("SELECT detail FROM audit"))
    assert "T0K3N" not in raw and "whsec_" not in raw


def test_redelivery_is_recorded(client: TestClient) -> None:
    r = client.post(
        "/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["alert.opened"]},
        headers=auth("ops"),
    )  # fmt: skip
    wid = r.json()["id"]
    box = client.app.state.outbox
    event = emit(box, Event("alert.opened", {"id": "x"}), only_subscription=wid)
    d = next(d for d in box.list_deliveries(wid) if d["event_id"] == event)
    with box.tx() as c:  # as the worker leaves a delivery that gave up
        c.execute("UPDATE webhook_deliveries SET status='dead' WHERE id=?", (d["id"],))
    r = client.post(f"/webhooks/{wid}/deliveries/{d['id']}/redeliver", headers=auth("duty-room"))
    assert r.status_code == 202, r.text
    row = audit_rows(client, action="webhook.delivery")[0]
    assert (row["actor"], row["action"], row["target"]) == (
        "duty-room",
        "webhook.delivery.redeliver",
        wid,
    )
    assert row["detail"] == {"delivery": d["id"], "event_type": "alert.opened"}


def _seed(store, n: int = 7) -> None:
    for i in range(n):
        record_audit(
            store,
            actor=("alice", "bob")[i % 2],
            action=("station.maint.start", "station.maint.end", "station.calibrate")[i % 3],
            target=f"sy-air-0{i % 2}",
            detail={"i": i},
            at=1000.0 + i // 2,  # pairs share a timestamp: the cursor must still be exact
        )


def test_filters_paging_and_csv(client: TestClient) -> None:
    _seed(client.app.state.store)
    got, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = client.get("/audit", params=params, headers=auth("ops"))
        body = r.json()
        got += [row["detail"]["i"] for row in body["items"]]
        cursor, pages = body["next_cursor"], pages + 1
        if cursor is None:
            break
    assert got == [6, 5, 4, 3, 2, 1, 0] and pages == 3
    assert [r["detail"]["i"] for r in audit_rows(client, actor="bob")] == [5, 3, 1]
    assert [r["detail"]["i"] for r in audit_rows(client, action="station.maint")] == [6, 4, 3, 1, 0]
    assert [r["detail"]["i"] for r in audit_rows(client, since=1001, until=1002)] == [5, 4, 3, 2]
    for target, expected in (("sy-air-00", [2]), ("sy-air-01", [5])):
        rows = audit_rows(client, target=target, action="station.calibrate")
        assert [r["detail"]["i"] for r in rows] == expected

    r = client.get("/audit?format=csv&limit=4&actor=alice", headers=auth("ops"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["detail"] for row in table] == ['{"i": 6}', '{"i": 4}', '{"i": 2}', '{"i": 0}']
    assert table[0]["at_utc"] == "1970-01-01T00:16:43.000Z" and table[0]["actor"] == "alice"
    assert "x-next-cursor" not in r.headers
    r = client.get("/audit?format=csv&limit=2", headers=auth("ops"))
    nxt = r.headers["x-next-cursor"]
    r2 = client.get(f"/audit?format=csv&limit=2&cursor={nxt}", headers=auth("ops"))
    page2 = [row["detail"] for row in csv.DictReader(io.StringIO(r2.text))]
    assert page2 == ['{"i": 4}', '{"i": 3}']
    bad = client.get("/audit?cursor=not-a-cursor", headers=auth("ops"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]
    # an unknown (well-formed) cursor is an empty page, never an error
    assert client.get("/audit?cursor=999999", headers=auth("ops")).json()["items"] == []
    assert client.get("/audit?limit=0", headers=auth("ops")).status_code == 422
    # a misspelt filter is refused, not ignored (it would return the whole trail)
    typo = client.get("/audit?actr=alice", headers=auth("ops"))
    assert typo.status_code == 422 and typo.json()["detail"][0]["loc"] == ["query", "actr"]


def test_audit_needs_a_key_and_cannot_be_changed_through_the_api(client: TestClient) -> None:
    _seed(client.app.state.store, 3)
    r = client.get("/audit")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/audit", headers={"Authorization": "Bearer nope"}).status_code == 403
    for method in ("post", "put", "patch", "delete"):
        for path in ("/audit", "/audit/1"):
            r = client.request(method, path, json={"actor": "x"}, headers=auth("admin"))
            assert r.status_code in (404, 405), (method, path, r.status_code)
    paths = client.get("/openapi.json").json()["paths"]
    assert [p for p in paths if p.startswith("/audit")] == ["/audit"]
    assert list(paths["/audit"]) == ["get"]
    assert [r["detail"]["i"] for r in audit_rows(client)] == [2, 1, 0]


def test_no_key_configured_the_audit_is_refused(tmp_path: Path) -> None:
    app = create_app(load_config(None, environ={"ENVNET_STORE_PATH": str(tmp_path / "e.db")}))
    r = TestClient(app).get("/audit", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403 and "ENVNET_SERVER_API_KEY" in r.json()["detail"]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[tuple[str, object]]:
    """The real uvicorn server in a thread."""
    app = make_app(tmp_path)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: srv.started, 15, what="uvicorn")
    yield base, app
    srv.should_exit = True
    t.join(10)


def test_envnet_audit_over_http_after_an_ack(live_server) -> None:
    base, app = live_server
    open_alert(app.state.store, "al-9", "sy-air-09")
    r = httpx.post(f"{base}/alerts/al-9/ack", json={"by": "Li"}, headers=auth("duty-room"))
    assert r.status_code == 200, r.text
    _seed(app.state.store, 4)
    run = CliRunner().invoke(
        cli, ["audit", "--url", base, "--api-key", KEYS["ops"], "--action", "alert.ack", "--json"]
    )
    assert run.exit_code == 0, run.output
    lines = [ln for ln in run.output.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and '"actor": "duty-room"' in lines[0] and '"al-9"' in lines[0]
    run = CliRunner().invoke(
        cli,
        ["audit", "--url", base, "--api-key", KEYS["ops"], "--limit", "2", "--since",
         "1970-01-01T00:16:40", "--until", "1001"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "audit trail (2 rows, newest first)" in run.output
    assert "more rows: --pages 2" in run.output
    run = CliRunner().invoke(
        cli,
        ["audit", "--url", base, "--api-key", KEYS["ops"], "--since", "1970-01-01T00:16:40",
         "--until", "1001", "--limit", "3", "--pages", "5", "--json"],
    )  # fmt: skip
    got = [json.loads(ln)["detail"]["i"] for ln in run.output.splitlines() if ln.startswith("{")]
    assert got == [3, 2, 1, 0] and "more rows" not in run.output
    run = CliRunner().invoke(cli, ["audit", "--url", base, "--api-key", "wrong"])
    assert run.exit_code == 1 and "refused (403)" in run.output
