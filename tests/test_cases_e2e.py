"""The supervision loop against real server processes and the real store, with an injected
clock (cases.clock_file): lifecycle, slip schedule at its edges, alert intake, roles, bad
input, a server SIGKILLed mid-schedule and two servers on one store (docs/cases.md)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cases_helpers import T0, CaseWorld, auth
from conftest import wait_until

from envnet.config import load_config
from envnet.domain.alerts.repository import Alert
from envnet.domain.cases import CaseClock, due_slips, load_policy
from envnet.store.alerts import SqliteAlertStore
from envnet.store.state import SqliteStateStore

POLICY = load_policy()
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200


@pytest.fixture
def world(tmp_path: Path) -> Iterator[CaseWorld]:
    w = CaseWorld(tmp_path)
    yield w
    w.stop()


def open_case(base: str, cell: str = "heping-nanhu", severity: str = "high", **kw) -> dict:
    body = {"cell": cell, "rule": "aqi_category", "parameter": "aqi", "severity": severity, **kw}
    r = httpx.post(f"{base}/cases", json=body, headers=auth("duty"))
    assert r.status_code == 201, r.text
    return r.json()


def slips(world: CaseWorld, case_id: str | None = None) -> list[tuple]:
    where = " WHERE case_id=?" if case_id else ""
    return world.sql(
        f"SELECT case_id, kind, period, to_unit FROM case_slips{where} ORDER BY id",
        (case_id,) if case_id else (),
    )


def test_whole_lifecycle_with_roles_audit_and_events(world: CaseWorld) -> None:
    _, base = world.server()
    units = httpx.get(f"{base}/units", headers=auth("duty")).json()
    assert {"id", "parent", "contacts", "district"} <= set(units[0])
    assert any(
        c["id"] == "heping-nanhu" for c in httpx.get(f"{base}/cells", headers=auth("duty")).json()
    )
    case = open_case(base)
    cid = case["id"]
    assert case["state"] == "assigned" and case["unit"] == "heping-nanhu-office"
    assert case["district"] == "和平区"
    # another unit's key: 403, an audit row, nothing changed
    r = httpx.post(f"{base}/cases/{cid}/sign", headers=auth("tx"))
    assert r.status_code == 403
    assert httpx.get(f"{base}/cases/{cid}", headers=auth("tx")).status_code == 403
    assert world.sql(
        "SELECT actor FROM audit WHERE action='case.sign.refused' AND target=?", (cid,)
    ) == [("tx",)]
    assert httpx.get(f"{base}/cases/{cid}", headers=auth("hp")).json()["state"] == "assigned"
    # a unit sees only its own cases
    open_case(base, cell="tiexi-yanfen")
    mine = httpx.get(f"{base}/cases", headers=auth("hp")).json()
    assert [c["id"] for c in mine] == [cid]
    # the duty room may not sign; the unit may not verify
    assert httpx.post(f"{base}/cases/{cid}/sign", headers=auth("duty")).status_code == 403
    world.set_time(T0 + 600)
    assert httpx.post(f"{base}/cases/{cid}/sign", headers=auth("hp")).json()["state"] == "signed"
    photo = {"content_type": "image/png", "data_base64": base64.b64encode(PNG).decode()}
    world.set_time(T0 + 3000)
    r = httpx.post(
        f"{base}/cases/{cid}/report",
        json={"text": "工地已停工洒水", "lat": 41.78, "lon": 123.41, "photos": [photo]},
        headers=auth("hp"),
    )
    assert r.status_code == 200, r.text
    assert httpx.post(f"{base}/cases/{cid}/verify", headers=auth("hp")).status_code == 403
    # returned for more work, reported again, verified: closed
    r = httpx.post(
        f"{base}/cases/{cid}/return", json={"reason": "照片不清楚"}, headers=auth("duty")
    )
    assert r.json()["state"] == "handling" and r.json()["cycle"] == 1
    r = httpx.post(
        f"{base}/cases/{cid}/report",
        json={"text": "补充照片", "photos": [photo]},
        headers=auth("hp"),
    )
    assert r.json()["state"] == "reported"
    r = httpx.post(
        f"{base}/cases/{cid}/verify", json={"note": "现场复核通过"}, headers=auth("duty")
    )
    assert r.json()["state"] == "closed" and r.json()["verified_at"] == T0 + 3000
    d = httpx.get(f"{base}/cases/{cid}", headers=auth("duty")).json()
    states = [h["action"] for h in d["history"] if not h["action"].startswith("slip.")]
    assert states == [
        "opened",
        "signed",
        "reported",
        "returned",
        "handling",
        "reported",
        "verified",
        "closed",
    ]
    sha = d["evidence"]["reports"][0]["photos"][0]
    assert (world.photos / sha).read_bytes() == PNG
    assert httpx.get(f"{base}/cases/photos/{sha}", headers=auth("hp")).content == PNG
    actions = [
        a for (a,) in world.sql("SELECT action FROM audit WHERE target=? ORDER BY id", (cid,))
    ]
    for a in ("case.open", "case.sign", "case.report", "case.return", "case.verify", "case.closed"):
        assert a in actions
    events = [
        t for (t,) in world.sql("SELECT type FROM webhook_events WHERE body LIKE ?", (f"%{cid}%",))
    ]
    for t in (
        "case.opened",
        "case.slip",
        "case.signed",
        "case.reported",
        "case.returned",
        "case.verified",
        "case.closed",
    ):
        assert t in events, t
    # the slip event says which slip, in Chinese and English
    body = json.loads(
        world.sql(
            "SELECT body FROM webhook_events WHERE type='case.slip' AND body LIKE ?", (f"%{cid}%",)
        )[0][0]
    )
    assert body["data"]["slip_type"] == "notice" and body["data"]["slip_label"] == {
        "zh": "提示单",
        "en": "notice",
    }
    assert body["label"]["zh"] == "督办单据"
    rep = httpx.get(f"{base}/reports/supervision?period=week", headers=auth("duty")).json()
    hp = next(u for u in rep["units"] if u["unit"] == "heping-nanhu-office")
    assert hp["signed_on_time"] == 1 and hp["closed"] == 1 and hp["rank"] == 1


def test_bad_input_is_a_clear_4xx_and_changes_nothing(world: CaseWorld) -> None:
    _, base = world.server()
    cid = open_case(base)["id"]
    before = (
        world.sql("SELECT count(*) FROM case_history")[0][0],
        world.sql("SELECT count(*) FROM audit")[0][0],
    )
    for body, code in (
        ({"unit": "no-such-unit", "rule": "water_class", "parameter": "nh3n"}, 409),
        ({"cell": "no-such-cell", "rule": "water_class", "parameter": "nh3n"}, 409),
        ({"station": "no-such-station", "rule": "water_class", "parameter": "nh3n"}, 409),
        ({"cell": "heping-nanhu", "rule": "nonsense", "parameter": "x"}, 422),
    ):
        r = httpx.post(f"{base}/cases", json=body, headers=auth("duty"))
        assert r.status_code == code, (body, r.text)
        assert "unit" in r.text or "cell" in r.text or "station" in r.text or "rule" in r.text
    httpx.post(f"{base}/cases/{cid}/sign", headers=auth("hp"))
    big = {
        "content_type": "image/png",
        "data_base64": base64.b64encode(PNG + b"\0" * 50_000).decode(),
    }
    r = httpx.post(
        f"{base}/cases/{cid}/report", json={"text": "x", "photos": [big]}, headers=auth("hp")
    )
    assert r.status_code == 413, r.text
    gif = {
        "content_type": "image/png",
        "data_base64": base64.b64encode(b"GIF89a" + b"\0" * 10).decode(),
    }
    r = httpx.post(
        f"{base}/cases/{cid}/report", json={"text": "x", "photos": [gif]}, headers=auth("hp")
    )
    assert r.status_code == 415 and "image/png" in r.text
    bmp = {"content_type": "image/bmp", "data_base64": "Qk0="}
    assert (
        httpx.post(
            f"{base}/cases/{cid}/report", json={"text": "x", "photos": [bmp]}, headers=auth("hp")
        ).status_code
        == 422
    )
    assert httpx.post(f"{base}/cases/{cid}/verify", headers=auth("duty")).status_code == 409
    assert (
        httpx.post(
            f"{base}/cases/{cid}/reassign", json={"unit": "nope"}, headers=auth("duty")
        ).status_code
        == 409
    )
    after = world.sql("SELECT count(*) FROM case_history WHERE action != 'slip.notice'")[0][0]
    assert after == before[0] + 1  # only the sign
    assert not world.photos.exists() or not list(world.photos.iterdir())
    # a report on a closed case
    httpx.post(f"{base}/cases/{cid}/report", json={"text": "ok"}, headers=auth("hp"))
    httpx.post(f"{base}/cases/{cid}/verify", headers=auth("duty"))
    r = httpx.post(f"{base}/cases/{cid}/report", json={"text": "again"}, headers=auth("hp"))
    assert r.status_code == 409 and "closed" in r.text
    assert httpx.get(f"{base}/cases/{cid}", headers=auth("duty")).json()["state"] == "closed"


def test_slip_schedule_at_its_edges_escalates_urging_to_the_district_bureau(
    world: CaseWorld,
) -> None:
    _, base = world.server()
    # Subscriptions by unit: the unit's own, its district bureau's (the parent), another's.
    subs = {}
    for unit in ("tiexi-yanfen-office", "tiexi-bureau", "heping-nanhu-office"):
        r = httpx.post(
            f"{base}/webhooks",
            json={"url": "http://127.0.0.1:9/hook", "events": ["case.opened", "case.slip"],
                  "units": [unit]},
            headers=auth("admin"),
        )  # fmt: skip
        assert r.status_code == 201 and r.json()["units"] == [unit], r.text
        subs[unit] = r.json()["id"]
    cid = open_case(base, cell="tiexi-yanfen", severity="high")["id"]
    s = POLICY.schedule("aqi_category", "high")
    wait_until(lambda: slips(world, cid), 10, what="notice")
    sign_due = T0 + s.sign_within_s
    world.set_time(sign_due - 1)
    time.sleep(0.5)
    assert [k for _, k, _, _ in slips(world, cid)] == ["notice"]
    assert httpx.get(f"{base}/cases?overdue=true", headers=auth("duty")).json() == []
    world.set_time(sign_due)
    wait_until(lambda: len(slips(world, cid)) == 2, 10, what="supervision order")
    assert slips(world, cid)[1][1:] == ("supervision", "c0.sign", "tiexi-yanfen-office")
    assert [
        c["id"] for c in httpx.get(f"{base}/cases?overdue=true", headers=auth("duty")).json()
    ] == [cid]
    assert [
        c["id"] for c in httpx.get(f"{base}/cases?slip=supervision", headers=auth("duty")).json()
    ] == [cid]
    urge = sign_due + s.urge_after_s
    world.set_time(urge - 0.001)
    time.sleep(0.5)
    assert "urging" not in [k for _, k, _, _ in slips(world, cid)]
    world.set_time(urge)
    wait_until(lambda: any(k == "urging" for _, k, _, _ in slips(world, cid)), 10, what="urging")
    kinds = {(k, p): to for _, k, p, to in slips(world, cid)}
    assert kinds[("urging", "c0.sign.1")] == "tiexi-bureau"  # escalated to the parent unit
    assert ("warning", "0") in kinds  # the exceedance persisted (no readings back to normal)
    # signing late stops further urging; nothing is ever issued twice
    httpx.post(f"{base}/cases/{cid}/sign", headers=auth("tx"))
    world.set_time(urge + 10 * 86400)
    time.sleep(0.6)
    got = slips(world, cid)
    assert len({(k, p) for _, k, p, _ in got}) == len(got)
    assert "c0.sign.2" not in [p for _, _, p, _ in got]
    assert ("supervision", "c0.report") in [(k, p) for _, k, p, _ in got]

    def delivered(unit: str) -> list[tuple[str, str | None]]:
        rows = world.sql(
            "SELECT e.type, e.body FROM webhook_deliveries d JOIN webhook_events e"
            " ON e.id = d.event_id WHERE d.subscription_id=? ORDER BY d.seq",
            (subs[unit],),
        )
        return [(t, json.loads(body)["data"].get("slip_type")) for t, body in rows]

    own = delivered("tiexi-yanfen-office")
    assert own[0] == ("case.opened", None) and len(own) == 1 + len(got)
    urgings = [k for _, k, _, _ in got if k == "urging"]
    assert urgings and [k for _, k in delivered("tiexi-bureau")] == urgings  # what went up only
    assert delivered("heping-nanhu-office") == []


def _alert(aid: str, station: str, severity: str, state: str = "open", at: float = T0) -> Alert:
    return Alert(aid, station, "aqi_category", "aqi", severity, "1h", 180.0, 150.0, "HJ 633-2012",
                 at, state, 180.0, at, created_at=at, updated_at=at)  # fmt: skip


def test_alerts_open_cases_readings_are_evidence_and_reopen_links(world: CaseWorld) -> None:
    state = SqliteStateStore(world.db)
    alerts = SqliteAlertStore(state)
    state.register_station("sy-m-heping-01", "air", {"class": "micro", "cell": "heping-nanhu"})
    state.register_station("sy-quiet", "air", {"class": "micro", "district": "和平区"})
    _, base = world.server()
    alerts.insert_alert(_alert("a1", "sy-m-heping-01", "high"))
    alerts.insert_alert(_alert("a0", "sy-quiet", "low"))  # below the policy's min severity
    case = wait_until(
        lambda: httpx.get(f"{base}/cases", headers=auth("duty")).json(), 10, what="case"
    )
    assert (
        len(case) == 1 and case[0]["unit"] == "heping-nanhu-office" and case[0]["alert_id"] == "a1"
    )
    cid = case[0]["id"]
    # the air clears: evidence on the case, which stays open
    alerts.update_alert("a1", {"state": "resolved", "ok_since": T0 + 100, "resolved_at": T0 + 200})
    wait_until(
        lambda: httpx.get(f"{base}/cases/{cid}", headers=auth("duty")).json()["normal_since"], 10
    )
    d = httpx.get(f"{base}/cases/{cid}", headers=auth("duty")).json()
    assert d["state"] == "assigned" and d["evidence"]["normal_since"] == T0 + 100
    assert d["alerts"] == [{"id": "a1", "linked_at": T0, "state": "resolved"}]
    # closed only by verification; a new exceedance within the window re-opens and links
    for who, action in (("hp", "sign"), ("hp", "report"), ("duty", "verify")):
        body = {"text": "done"} if action == "report" else None
        assert (
            httpx.post(f"{base}/cases/{cid}/{action}", json=body, headers=auth(who)).status_code
            == 200
        )
    world.set_time(T0 + 3600)
    alerts.insert_alert(_alert("a2", "sy-m-heping-01", "medium", at=T0 + 3600))
    new = wait_until(
        lambda: [c for c in httpx.get(f"{base}/cases?state=assigned", headers=auth("duty")).json()],
        10,
    )
    assert new[0]["reopened_from"] == cid and new[0]["id"] != cid
    assert world.sql("SELECT case_id FROM case_intake WHERE alert_id='a0'") == [(None,)]
    state.close()


def _expected(world: CaseWorld, now: float) -> set[tuple]:
    rows = world.sql(
        "SELECT id, rule, severity, state, opened_at, cycle, cycle_started_at FROM cases"
    )
    out = set()
    for r in rows:
        c = CaseClock(r[0], r[1], r[2], r[3], r[4], r[5], r[6])
        out |= {(r[0], s.kind, s.period) for s in due_slips(c, now, POLICY)}
    return out


def test_server_killed_mid_schedule_loses_and_repeats_no_slip(world: CaseWorld) -> None:
    proc, base = world.server()
    cells = ["heping-nanhu", "tiexi-yanfen", "tiexi-xinghua", "shenhe-wenyi"]
    ids = []
    for i in range(200):  # distinct (station, rule, parameter): stationless, parameter varies
        body = {
            "cell": cells[i % 4],
            "rule": "aqi_category",
            "parameter": f"p{i}",
            "severity": "high",
        }
        ids.append(httpx.post(f"{base}/cases", json=body, headers=auth("duty")).json()["id"])
    wait_until(lambda: len(slips(world)) == 200, 20, what="notices")
    later = T0 + 30 * 86400  # every supervision order and urging of signing and reporting
    world.set_time(later)
    wait_until(lambda: len(slips(world)) > 300, 20, interval=0.01, what="some slips")
    proc.kill()  # SIGKILL, mid-pass
    n_at_kill = len(slips(world))
    proc2, base2 = world.server()
    expected = _expected(world, later)
    wait_until(lambda: len(slips(world)) == len(expected), 30, what="all slips after restart")
    got = [(c, k, p) for c, k, p, _ in slips(world)]
    assert set(got) == expected and len(got) == len(set(got))
    assert n_at_kill < len(expected)  # the kill did interrupt the schedule
    # one event and one audit row per slip: none repeated, none lost
    assert world.sql("SELECT count(*) FROM webhook_events WHERE type='case.slip'")[0][0] == len(got)
    assert world.sql("SELECT count(*) FROM audit WHERE action LIKE 'case.slip.%'")[0][0] == len(got)


def test_two_servers_never_repeat_a_slip(world: CaseWorld) -> None:
    _, base = world.server()
    _, base2 = world.server()
    for i in range(150):
        body = {
            "cell": "tiexi-yanfen",
            "rule": "water_class",
            "parameter": f"p{i}",
            "severity": "critical",
        }
        b = base if i % 2 else base2
        assert httpx.post(f"{b}/cases", json=body, headers=auth("duty")).status_code == 201
    for step in range(1, 8):
        world.set_time(T0 + step * 43200)
        time.sleep(0.4)
    expected = _expected(world, T0 + 7 * 43200)
    wait_until(lambda: len(slips(world)) == len(expected), 30, what="all slips")
    got = [(c, k, p) for c, k, p, _ in slips(world)]
    assert set(got) == expected and len(got) == len(set(got))
    assert world.sql("SELECT count(*) FROM webhook_events WHERE type='case.slip'")[0][0] == len(got)
    assert world.sql("SELECT count(*) FROM audit WHERE action LIKE 'case.slip.%'")[0][0] == len(got)
    issuers = world.sql("SELECT count(DISTINCT actor) FROM audit WHERE action LIKE 'case.slip.%'")
    assert issuers == [(1,)]  # both are "scheduler"; the logs show which process
    assert load_config  # the settings module is importable from tests (used by helpers)


def test_cli_lists_shows_and_acts(world: CaseWorld) -> None:
    import subprocess
    import sys

    from cases_helpers import KEYS

    _, base = world.server()
    cid = open_case(base, cell="tiexi-yanfen")["id"]

    def cli(*args: str, key: str = "duty") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "envnet.cli", *args, "--url", base, "--api-key", KEYS[key]],
            capture_output=True, text=True, env=world.env(0), timeout=60,
        )  # fmt: skip

    out = cli("cases", "--unit", "tiexi-yanfen-office", "--json")
    assert out.returncode == 0 and json.loads(out.stdout.splitlines()[0])["id"] == cid
    assert json.loads(cli("case", "show", cid).stdout)["slips"] is not None
    refused = cli("case", "sign", cid, key="hp")
    assert refused.returncode == 1 and "403" in refused.stderr
    assert "signed" in cli("case", "sign", cid, key="tx").stdout
    assert "reported" in cli("case", "report", cid, "--text", "洒水降尘", key="tx").stdout
    assert "handling" in cli("case", "return", cid, "--reason", "再查").stdout
    world.set_time(T0 + 40 * 86400)
    wait_until(lambda: json.loads(cli("cases", "--overdue", "--json").stdout or "null"), 10)
