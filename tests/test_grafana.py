"""The Grafana dashboards: generated files are current and valid, and every panel's query,
expanded as Grafana expands it, runs on the real InfluxDB 1.6 filled by the real gateway (its
readings, and the AQI and water classes its alert engine computes from them) and returns
data. Grafana itself is not installable here; its InfluxQL is what we can check."""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from conftest import wait_until
from grafana_interpolate import duration_ms, interpolate, iter_queries, panel_interval_ms
from mqtt_helpers import Publisher

from envnet.config import load_config
from envnet.devkit import grafana
from envnet.store.influx.corrected import corrected_lines
from envnet.store.influx.reports import InfluxQL
from envnet.store.state import SqliteStateStore

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))

AIR = {
    # station: (district, lat, lon, nominal AQI, pm25 level)
    "sy-air-001": ("和平区", 41.789, 123.401, 152.0, 120.0),
    "sy-air-002": ("沈河区", 41.796, 123.452, 62.0, 40.0),
    "sy-air-003": ("和平区", 41.770, 123.380, 38.0, 20.0),  # goes offline
}
WATER = {
    # station: (river, section, target class, -)
    "sy-wat-001": ("浑河", "浑河沈阳城区段", 3, (3, 4)),
    "sy-wat-002": ("辽河", "辽河干流红庙子", 4, (4, 4)),
}
# 49 hours of data: always a whole past natural day (UTC+8) for the daily AQI.
HOURS = 49
N_AIR, N_WATER = HOURS * 60, HOURS * 12  # one reading a minute / every 5 minutes


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- generated files and schema ---------------------------------------------------------------


def test_dashboard_files_are_current_and_valid():
    docs = grafana.build_all()
    assert sorted(p.stem for p in DASHBOARDS) == sorted(docs), "run python -m envnet.devkit.grafana"
    for path in DASHBOARDS:
        assert path.read_text(encoding="utf-8") == grafana.dumps(docs[path.stem]), (
            f"{path.name} is out of date: run python -m envnet.devkit.grafana"
        )
        assert grafana.validate(_load(path)) == [], path.name


def test_schema_catches_what_it_should():
    doc = _load(REPO / "grafana" / "dashboards" / "envnet-station.json")
    panel = next(p for p in doc["panels"] if p["type"] == "timeseries")
    at = f"$.panels[{doc['panels'].index(panel)}]"
    # what is wrong -> (how to break the dashboard, an error that must name it)
    cases = {
        "unknown dashboard key": (
            lambda d: d.update(titel="x"),
            "schema: $: Additional properties are not allowed ('titel' was unexpected)",
        ),
        "wrong datasource": (
            lambda d: _first_target(d)["datasource"].update(uid="other"),
            ".targets[0].datasource.uid: 'envnet-influxdb' was expected",
        ),
        "target not raw InfluxQL": (
            lambda d: _first_target(d).update(rawQuery=False),
            ".targets[0].rawQuery: True was expected",
        ),
        "misspelt panel key": (
            lambda d: _panel(d, panel["id"]).update(fieldconfig={}),
            f"sdk model: {at}.fieldconfig: not in the Grafana dashboard model",
        ),
        "panel off the grid": (
            lambda d: _panel(d, panel["id"])["gridPos"].update(x=20, w=12),
            f"layout: panel {panel['title']!r} is wider than the grid",
        ),
        "grid position not a number": (
            lambda d: _panel(d, panel["id"])["gridPos"].update(x="a"),
            f"{at}.gridPos.x: 'a' is not of type 'integer'",
        ),
        "panel without targets": (
            lambda d: _panel(d, panel["id"]).pop("targets"),
            f"{at}: 'targets' is a required property",
        ),
        "query variable without query": (
            lambda d: d["templating"]["list"][0].pop("query"),
            "schema: $.templating.list[0]: 'query' is a required property",
        ),
    }
    for what, (mutate, expected) in cases.items():
        bad = copy.deepcopy(doc)
        mutate(bad)
        errors = grafana.validate(bad)
        assert any(expected in e for e in errors), f"{what}: {expected!r} not in {errors}"


def _first_target(d: dict) -> dict:
    return next(t for p in d["panels"] for t in p.get("targets", []))


def _panel(d: dict, panel_id: int) -> dict:
    return next(p for p in d["panels"] if p["id"] == panel_id)


def test_shipped_schema_is_a_valid_draft_2020_12_schema():
    schema = json.loads(grafana.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    broken = {**schema, "properties": {**schema["properties"], "uid": {"type": "text"}}}
    with pytest.raises(jsonschema.SchemaError):
        grafana.validate(_load(DASHBOARDS[0]), broken)


def test_provisioning_points_at_the_dashboards_datasource():
    yaml = pytest.importorskip("yaml")
    prov = REPO / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "envnet.yaml").read_text())["datasources"][0]
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
    assert ds["uid"] == grafana.DATASOURCE_UID
    assert ds["url"] == "${ENVNET_INFLUX_URL}"
    provider = yaml.safe_load((prov / "dashboards" / "envnet.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_interpolate_expands_like_grafana():
    q = (
        'SELECT mean("do") FROM "water" WHERE "river" =~ /^$river$/ AND $timeFilter '
        "GROUP BY time($__interval)"
    )
    out = interpolate(q, {"river": ["浑河", "a.b"]}, 1000, 61000, 60000)
    assert out == (
        'SELECT mean("do") FROM "water" WHERE "river" =~ /^(浑河|a\\.b)$/ AND '
        "time >= 1000ms and time <= 61000ms GROUP BY time(1m)"
    )
    assert "/^.*$/" in interpolate(q, {"river": [".*"]}, 0, 1, 1000)
    assert "[[x]]" not in interpolate("SELECT [[x]] ${x} $x", {"x": "v"}, 0, 1, 1000)
    with pytest.raises(KeyError):
        interpolate('SELECT 1 FROM "a" WHERE "s" = $nope', {}, 0, 1, 1000)


# --- every query against InfluxDB filled by the gateway ---------------------------------------


def _register_stations(store_path: str) -> None:
    store = SqliteStateStore(store_path)
    for sid, (district, lat, lon, *_rest) in AIR.items():
        store.register_station(sid, "air", {"district": district, "lat": lat, "lon": lon})
    for sid, (river, section, target, _) in WATER.items():
        meta = {"river": river, "section": section, "target_class": target}
        store.register_station(sid, "water", meta)
    store.close()


def _publish_readings(pub: Publisher, now: int) -> None:
    for k, (sid, (_d, _la, _lo, _aqi, pm25)) in enumerate(AIR.items()):
        batch = []
        for i in range(N_AIR):
            values = {
                "pm25": pm25 + i % 7, "pm10": pm25 * 1.6, "so2": 12.0 + k, "no2": 35.0 + i % 5,
                "o3": 90.0 + 3 * i, "co": 0.8, "t": 12.5, "rh": 55.0, "p": 1012.0,
                "voc": 110.0, "noise": 58.0,
            }  # fmt: skip
            flags = {"pm25": "warmup", "pm10": "warmup"} if i < 3 else {}
            if i == 5:
                flags = {"co": "fault"}
            ts = now - 60 * (N_AIR - i)
            batch.append(
                {"v": 1, "seq": i + 1, "ts": ts, "kind": "air", "values": values, "flags": flags}
            )
        for j in range(0, len(batch), 500):  # offline-replay arrays, as a station sends them
            pub.send(f"envnet/v1/{sid}/reading", batch[j : j + 500])
    for sid in WATER:
        batch = [
            {"v": 1, "seq": i + 1, "ts": now - 300 * (N_WATER - i), "kind": "water", "flags": {},
             "values": {"ph": 7.4, "do": 6.2 - 0.2 * i, "ec": 520.0, "turb": 8.0, "orp": 210.0,
                        "nh3n": 0.6 + 0.1 * i, "cod": 18.0, "t": 9.5}}
            for i in range(N_WATER)
        ]  # fmt: skip
        for j in range(0, len(batch), 500):
            pub.send(f"envnet/v1/{sid}/reading", batch[j : j + 500])


def _publish_health_and_status(pub: Publisher) -> None:
    # Stored at the gateway's receive time in ms: two messages of one station read in the same
    # millisecond share a timestamp and the later overwrites the earlier, so space them out.
    for sid in [*AIR, *WATER]:
        pub.send(f"envnet/v1/{sid}/status", {"state": "online", "fw": "0.1.0"}, retain=True)
        for j in range(3):
            time.sleep(0.01)
            pub.send(
                f"envnet/v1/{sid}/health",
                {"battery_v": 3.9 - 0.1 * j, "rssi_dbm": -70 - j, "uptime_s": 600 * (j + 1),
                 "heap_free": 80000, "reset_cause": "power_on", "fw": "0.1.0", "buffered": j,
                 "dropped": 0, "errors": {"pms": j}},
            )  # fmt: skip
    time.sleep(0.01)
    pub.send("envnet/v1/sy-air-003/status", {"state": "offline"}, retain=True)


def _count(influxdb, q: str) -> int:
    rows = influxdb.rows(q)
    return int(rows[0]["count"]) if rows else 0


def _per_station(influxdb, measurement: str, field: str) -> set[str]:
    rows = influxdb.rows(f'SELECT count("{field}") FROM "{measurement}" GROUP BY "station"')
    return {r["station"] for r in rows}


def _per_station_where(influxdb, measurement: str, field: str, where: str) -> set[str]:
    q = f'SELECT count("{field}") FROM "{measurement}" WHERE {where} GROUP BY "station"'
    return {r["station"] for r in influxdb.rows(q)}


def _last_states(influxdb) -> dict[str, str]:
    rows = influxdb.rows('SELECT last("state") FROM "status" GROUP BY "station"')
    return {r["station"]: r["last"] for r in rows}


def _results(influxdb, q: str) -> dict:
    """The first statement's result; a query InfluxDB cannot parse gives {"error": ...}."""
    params = urllib.parse.urlencode({"q": q, "db": influxdb.database, "epoch": "ms"})
    try:
        with urllib.request.urlopen(f"{influxdb.url}/query?{params}", timeout=10) as r:
            return json.loads(r.read())["results"][0]
    except urllib.error.HTTPError as e:  # 400 for a parse error, with a JSON body
        return {"error": f"HTTP {e.code}: {e.read().decode(errors='replace')}"}


def test_every_panel_query_returns_data(mosquitto, influxdb, gateway, envnet_env):
    _register_stations(envnet_env["ENVNET_STORE_PATH"])  # before the gateway first looks them up
    now = int(time.time())
    pub = Publisher(mosquitto.port, client_id="grafana-test")
    try:
        _publish_readings(pub, now)
        n_air, n_water = N_AIR * len(AIR), N_WATER * len(WATER)
        wait_until(lambda: _count(influxdb, 'SELECT count("seq") FROM "air"') == n_air, 20,
                   what="air readings in InfluxDB")  # fmt: skip
        wait_until(lambda: _count(influxdb, 'SELECT count("seq") FROM "water"') == n_water, 20,
                   what="water readings in InfluxDB")  # fmt: skip
        _publish_health_and_status(pub)
    finally:
        pub.close()
    stations = {*AIR, *WATER}
    wait_until(lambda: _per_station(influxdb, "health", "uptime_s") == stations, 20, what="health")
    states = {**dict.fromkeys(stations, "online"), "sy-air-003": "offline"}
    wait_until(lambda: _last_states(influxdb) == states, 20, what="status")
    # The gateway turned the registry's metadata into tags.
    tags = influxdb.rows('SELECT last("pm25") FROM "air" GROUP BY "district"')
    assert {r["district"] for r in tags} == {"和平区", "沈河区"}
    # The alert engine's indices, through the same buffer to InfluxDB.
    for window in ("1h", "24h"):
        wait_until(
            lambda w=window: (
                _per_station_where(influxdb, "aqi", "aqi", f"\"window\" = '{w}'") == set(AIR)
            ),
            30,
            what=f"{window} AQI from the alert engine",
        )
    wait_until(lambda: _per_station(influxdb, "water_class", "class_num") == set(WATER), 30,
               what="water classes from the alert engine")  # fmt: skip
    _write_corrected(envnet_env, now)

    now_ms = int(time.time() * 1000) + 1000
    failures, ran = [], 0
    for path in DASHBOARDS:
        doc = _load(path)
        for variables in _variable_choices(influxdb, doc, now_ms):
            for where, panel, target in iter_queries(doc):
                span = panel.get("timeFrom") or doc["time"]["from"].removeprefix("now-")
                from_ms = now_ms - duration_ms(span)
                interval = panel_interval_ms(from_ms, now_ms, panel.get("interval") or "60s")
                query = interpolate(target["query"], variables, from_ms, now_ms, interval)
                ran += 1
                problem = _problem(_results(influxdb, query))
                if problem:
                    failures.append(f"{where} {variables}: {problem}\n    {query}")
    assert ran >= 60
    assert not failures, f"{len(failures)} of {ran} queries failed:\n" + "\n".join(failures)


def _write_corrected(env: dict[str, str], now: int) -> None:
    """Corrected PM of the last hours, as the server's review worker writes them (the station
    dashboard's calibrated panels read them; docs/review.md)."""
    db = InfluxQL(load_config(None, environ=env).influx)
    hours = [now // 3600 * 3600 - i * 3600 for i in range(1, 4)]
    for sid, (*_, pm25) in AIR.items():
        for param, raw in (("pm25", pm25), ("pm10", 1.5 * pm25)):
            db.write(corrected_lines(sid, "ref-1", param, 1, [(h, raw, raw / 1.6) for h in hours]))


def _variable_choices(influxdb, doc: dict, now_ms: int) -> list[dict]:
    """The variables' values to try: a single station; multi-values as All and as a list."""
    options: dict[str, list[str]] = {}
    for var in doc["templating"].get("list", []):
        if var["type"] == "custom":  # $review: its options, no query (docs/review.md)
            options[var["name"]] = [o["value"] for o in var["options"]]
            continue
        query = interpolate(var["query"], {}, now_ms - 86_400_000, now_ms, 60_000)
        res = _results(influxdb, query)
        assert "error" not in res, f"{doc['uid']} ${var['name']}: {res['error']}"
        values = [row[1] for s in res.get("series", []) for row in s["values"]]
        assert values, f"{doc['uid']}: variable ${var['name']} has no values ({query})"
        options[var["name"]] = values
        if var["name"] == "station":
            assert values == sorted(AIR), values
    if not options:
        return [{}]
    choices = []
    multi = any(var.get("multi") for var in doc["templating"]["list"])
    for mode in ("all", "list") if multi else ("single",):
        chosen = {}
        for var in doc["templating"]["list"]:
            vals = options[var["name"]]
            if var.get("multi"):
                chosen[var["name"]] = [var["allValue"]] if mode == "all" else vals
            else:
                chosen[var["name"]] = "sy-air-001" if var["name"] == "station" else vals[0]
        choices.append(chosen)
    return choices


def _problem(res: dict) -> str | None:
    if "error" in res:
        return f"error: {res['error']}"
    series = res.get("series") or []
    if not series:
        return "no series"
    if not any(v is not None for s in series for row in s["values"] for v in row[1:]):
        return "only null values"
    return None
