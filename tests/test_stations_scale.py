"""GET /stations at scale: state derived in SQL, paging with X-Total-Count and Link.

The fast path builds each station's JSON in SQLite (envnet.store.state.station_views_json);
these tests hold it to the Python definition (server.app.view / derive_state, which
/stations/{id} still uses) on every kind of row, and check the paging contract.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from envnet.config import load_config
from envnet.store.state import SqliteStateStore
from server.app import create_app, view


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "envnet.db"


@pytest.fixture
def client(store_path: Path) -> Iterator[TestClient]:
    env = {"ENVNET_STORE_PATH": str(store_path), "ENVNET_SERVER_API_KEY": "k"}
    with TestClient(create_app(load_config(None, environ=env))) as c:
        yield c


def seed_variety(store: SqliteStateStore, now: float) -> list[str]:
    """One station of every shape the state derivation distinguishes."""
    reading = {"received_at": now - 5, "ts": now - 5.25, "seq": 7, "values": {}, "flags": {}}
    # registered, online, fresh (air interval 60 s)
    store.register_station("a-online", "air", {"district": "d1", "lat": 41.8})
    store.record_status("a-online", "online", {"state": "online", "kind": "air"}, now - 100)
    store.record_readings(
        "a-online",
        "air",
        [{**reading, "values": {"pm25": 12, "pm10": 30.5}, "flags": {"pm25": "ok"}}],
    )
    # registered, online birth, quiet for 10 min > 3 x 60 s -> stale
    store.register_station("a-quiet", "air", {})
    store.record_status("a-quiet", "online", {"state": "online"}, now - 600)
    # the same silence, but meta says it publishes every 300 s -> still online
    store.register_station("a-slow", "air", {"interval_s": 300})
    store.record_status("a-slow", "online", {"state": "online"}, now - 600)
    # ... or its birth says so (unregistered: no meta)
    store.record_status("u-slow-birth", "online", {"state": "online", "interval_s": 400}, now - 600)
    # water default interval (contract) applies: quiet 10 min is fresh for water?
    store.register_station("w-quiet", "water", {"target_class": "III"})
    store.record_status("w-quiet", "online", {"state": "online", "kind": "water"}, now - 600)
    # last will -> offline, whatever last_seen says
    store.register_station("a-gone", "air", {})
    store.record_status("a-gone", "online", {"state": "online"}, now - 50)
    store.record_status("a-gone", "offline", {"state": "offline"}, now - 10)
    # registered, never heard -> unknown
    store.register_station("w-never", "water", {"name": "浑河长青桥"})
    # heard (health only, no birth) -> stale; unregistered; kind unknown
    store.record_health("u-health-only", {"heap_free": 1000, "errors": {}}, now - 1)
    # a health body with NaN (json.dumps writes NaN): re-encoded, the answer stays JSON
    store.register_station("a-nan", "air", {})
    store.record_health("a-nan", {"temp_c": math.nan, "x": math.inf}, now - 1)
    # meta with an odd interval_s that SQL and Python must read the same way
    store.register_station("a-odd", "air", {"interval_s": 0, "quote": 'it\'s "x"'})
    store.record_status("a-odd", "online", {"state": "online"}, now - 120)
    return sorted(
        [
            "a-online", "a-quiet", "a-slow", "u-slow-birth", "w-quiet", "a-gone", "w-never",
            "u-health-only", "a-nan", "a-odd",
        ]
    )  # fmt: skip


def test_sql_views_match_the_python_definition(client: TestClient, store_path: Path) -> None:
    store = SqliteStateStore(store_path)
    now = time.time()
    ids = seed_variety(store, now)
    r = client.get("/stations")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["x-total-count"] == str(len(ids)) and "link" not in r.headers
    got = json.loads(r.text)  # strict: NaN/Infinity tokens would still parse, so check below
    assert "NaN" not in r.text and "Infinity" not in r.text
    assert [s["id"] for s in got] == ids
    t = time.time()
    for s in got:
        row = store.get_station(s["id"])
        expected = json.loads(view(row, t).model_dump_json())
        assert s == expected, s["id"]
    states = {s["id"]: s["state"] for s in got}
    assert states == {
        "a-online": "online",
        "a-quiet": "stale",
        "a-slow": "online",
        "u-slow-birth": "online",
        "w-quiet": "online",
        "a-gone": "offline",
        "w-never": "unknown",
        "u-health-only": "stale",
        "a-nan": "stale",
        "a-odd": "online",
    }
    by_id = {s["id"]: s for s in got}
    assert by_id["a-nan"]["last_health"] == {"temp_c": None, "x": None}
    assert by_id["u-health-only"]["registered"] is False and by_id["w-never"]["meta"] == {
        "name": "浑河长青桥"
    }
    assert by_id["a-online"]["last_reading_ts"] == pytest.approx(now - 5.25, abs=1e-6)
    store.close()


def test_filters_agree_with_python_filtering(client: TestClient, store_path: Path) -> None:
    store = SqliteStateStore(store_path)
    seed_variety(store, time.time())
    everything = client.get("/stations").json()
    for q in ("kind=air", "kind=water", "state=online", "state=stale", "state=offline",
              "state=unknown", "kind=air&state=stale"):  # fmt: skip
        params = dict(p.split("=") for p in q.split("&"))
        want = [s["id"] for s in everything if all(s[k] == v for k, v in params.items())]
        r = client.get(f"/stations?{q}")
        assert [s["id"] for s in r.json()] == want, q
        assert r.headers["x-total-count"] == str(len(want)), q
    assert client.get("/stations?kind=soil").status_code == 422
    assert client.get("/stations?state=dead").status_code == 422
    store.close()


def test_paging_with_total_and_next_link(client: TestClient, store_path: Path) -> None:
    store = SqliteStateStore(store_path)
    with store.tx() as c:
        c.executemany(
            "INSERT INTO stations(id, kind, meta, registered_at) VALUES (?,?,?,?)",
            [(f"st-{i:04d}", "air" if i % 2 else "water", "{}", 0.0) for i in range(2500)],
        )
    # Heard but not registered: one without a kind, one that says it is an air station.
    store.record_status("st-0001x", "online", {"state": "online"}, time.time())
    store.record_status("st-0003x", "online", {"state": "online", "kind": "air"}, time.time())
    ids = sorted([f"st-{i:04d}" for i in range(2500)] + ["st-0001x", "st-0003x"])
    # Default: a JSON list of the first 1,000, the total and a link to the rest.
    r = client.get("/stations")
    assert [s["id"] for s in r.json()] == ids[:1000]
    assert r.headers["x-total-count"] == "2502"
    assert r.headers["link"] == '<http://testserver/stations?limit=1000&offset=1000>; rel="next"'
    # Following the links collects every station exactly once, in order.
    seen, url, pages = [], "/stations?kind=air&limit=300", 0
    while url:
        r = client.get(url)
        seen += [s["id"] for s in r.json()]
        assert r.headers["x-total-count"] == "1251"
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else None
        pages += 1
    air = [i for i in ids if i == "st-0003x" or (i[-1] != "x" and int(i[3:]) % 2)]
    assert seen == air and pages == 5
    r = client.get("/stations?limit=10000")
    assert [s["id"] for s in r.json()] == ids and "link" not in r.headers
    r = client.get("/stations?offset=2502")
    assert r.json() == [] and r.headers["x-total-count"] == "2502"
    assert client.get("/stations?offset=2499&limit=5").json()[-1]["id"] == ids[-1]
    # Paging a state filter (the per-row derived path) slices the same ordered list.
    registered = [i for i in ids if not i.endswith("x")]  # never heard: unknown
    r = client.get("/stations?state=unknown&kind=water&limit=100&offset=50")
    water = [i for i in registered if int(i[3:]) % 2 == 0]
    assert [s["id"] for s in r.json()] == water[50:150]
    assert r.headers["x-total-count"] == str(len(water)) and "offset=150" in r.headers["link"]
    r = client.get("/stations?state=online&limit=1&offset=1")
    assert [s["id"] for s in r.json()] == ["st-0003x"] and "link" not in r.headers
    for bad in ("limit=0", "limit=100001", "offset=-1", "limit=x"):
        assert client.get(f"/stations?{bad}").status_code == 422, bad
    store.close()


def test_out_of_range_paging_is_a_422_not_a_500(client: TestClient) -> None:
    # An offset past SQLite's 64-bit integers once reached the database and answered 500.
    for q in (
        "offset=261617687822842658816&limit=217",
        "offset=9223372036854775808",
        "offset=1000000001",
        "limit=1e3",
    ):
        r = client.get(f"/stations?{q}")
        assert r.status_code == 422, (q, r.text)
        assert r.json()["error"] == "invalid"
    assert client.get("/stations?offset=1000000000").status_code == 200


def _feed_hours(ev, meta: dict, t0: float, hours: int, values: dict) -> None:
    interval = 60 if meta["kind"] == "air" else 300
    for i in range(int(hours * 3600 / interval) + 3):
        ts = t0 + i * interval
        ev.on_reading(meta, {"ts": ts, "seq": i, "kind": meta["kind"], "values": values}, ts + 1)


def test_the_list_carries_each_stations_latest_indices(
    client: TestClient, store_path: Path
) -> None:
    from envnet.domain.alerts import Evaluator
    from envnet.store.alerts import SqliteAlertStore

    store = SqliteStateStore(store_path)
    ev = Evaluator(None, SqliteAlertStore(store))
    t0 = 1_767_196_800.0  # 2026-01-01 00:00 CST
    air = {"id": "a-aqi", "kind": "air"}
    water = {"id": "w-class", "kind": "water", "target_class": "III"}
    store.register_station("a-aqi", "air", {})
    store.register_station("w-class", "water", {"target_class": "III"})
    store.register_station("a-none", "air", {})
    # PM2.5 80 -> IAQI 107 (lightly polluted), PM10 50 -> 50
    _feed_hours(ev, air, t0, 2, {"pm25": 80.0, "pm10": 50.0})
    _feed_hours(ev, water, t0, 2, {"ph": 7.2, "do": 3.5})  # DO 3.5 -> IV from pH and DO only
    ev.flush()
    by_id = {s["id"]: s for s in client.get("/stations").json()}
    aqi = by_id["a-aqi"]["indices"]["aqi_1h"]
    assert aqi["aqi"] == 107 and aqi["primary"] == ["pm25"]
    assert aqi["category"]["name_zh"] == "轻度污染" and aqi["pm_basis"] == "1h"
    w = by_id["w-class"]["indices"]["water"]
    assert (w["overall"], w["class_zh"], w["provisional"]) == (4, "Ⅳ类", True)
    assert w["basis"] == ["ph", "do"] and w["meets_target"] is None
    assert w["standard"] == "GB 3838-2002" and w["edition"] == "2002"
    assert by_id["a-none"]["indices"] == {}
    # the list's summary is the station record's, cut down
    full = client.get("/stations/a-aqi").json()["indices"]["aqi_1h"]
    assert {k: full[k] for k in aqi if k != "category"} == {
        k: v for k, v in aqi.items() if k != "category"
    }
    assert aqi["category"] == {k: full["category"][k] for k in aqi["category"]}
    assert "iaqi" in full and "iaqi" not in aqi
    store.close()
