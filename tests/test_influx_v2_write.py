"""The influxdb-client v2 write path against a real server that speaks /api/v2/write
(VictoriaMetrics), beside InfluxDB 1.6's v1 /write: the same points land either way.

VictoriaMetrics keeps numeric fields only (as `<measurement>_<field>` series), so the
comparison is over every numeric field of every point: (measurement, station, field, time,
value)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from envnet.config import InfluxSettings
from envnet.core import contract
from envnet.devkit.services import VICTORIA_BIN, VictoriaMetrics
from envnet.store.influx.sink import InfluxWriteError, V1Sink, V2Sink, make_sink
from gateway.ingest import ReceiveStamps, ingest

pytestmark = pytest.mark.skipif(
    not Path(VICTORIA_BIN).exists(), reason="victoria-metrics is not installed"
)

NUMERIC = {
    "air": ("pm25", "pm10", "seq", "latency_s"),
    "water": ("ph", "do", "seq", "latency_s"),
    "health": ("battery_v", "rssi_dbm", "errors_total"),
}


def _lines(now: float) -> list[str]:
    stamps = ReceiveStamps()
    out: list[str] = []
    for i in range(20):
        st = f"sy-air-{i % 4:03d}"
        body = (
            b'{"v":1,"seq":%d,"ts":%d,"kind":"air","values":{"pm25":%d.5,"pm10":%d},"flags":{}}'
            % (i, now - 600 + i, i, 2 * i)
        )
        msg = contract.decode_fast(f"envnet/v1/{st}/reading", body)
        out += [p.line for p in ingest(msg, {"district": "Heping"}, now, stamps).points]
    water = b'{"v":1,"seq":1,"ts":%d,"kind":"water","values":{"ph":7.25,"do":8},"flags":{}}' % (
        now - 300
    )
    msg = contract.decode_fast("envnet/v1/hun-01/reading", water)
    out += [p.line for p in ingest(msg, {"river": "Hun"}, now, stamps).points]
    health = b'{"battery_v":3.9,"rssi_dbm":-61,"errors":{"i2c":2},"fw":"1.2.0"}'
    msg = contract.decode_fast("envnet/v1/sy-air-001/health", health)
    out += [p.line for p in ingest(msg, None, now - 1, stamps).points]
    return out


def _from_influx(influxdb) -> set[tuple]:
    got = set()
    for m, fields in NUMERIC.items():
        for f in fields:
            res = influxdb.query(f'SELECT "{f}" FROM "{m}" GROUP BY station', epoch="ms")
            for series in res["results"][0].get("series", []):
                for t, v in series["values"]:
                    if v is not None:
                        got.add((m, series["tags"]["station"], f, t, float(v)))
    return got


def _from_victoria(vm: VictoriaMetrics) -> set[tuple]:
    got = set()
    for m, fields in NUMERIC.items():
        for f in fields:
            for s in vm.export(f'{{__name__="{m}_{f}"}}'):
                for t, v in zip(s["timestamps"], s["values"], strict=True):
                    got.add((m, s["metric"]["station"], f, t, float(v)))
    return got


def test_the_same_points_land_through_the_v1_and_the_v2_write_api(tmp_path, influxdb):
    lines = _lines(time.time())
    with VictoriaMetrics(tmp_path / "vm") as vm:
        v2 = make_sink(InfluxSettings(url=vm.url, api="v2", bucket="envnet", token="t"))
        assert isinstance(v2, V2Sink)
        v2.write(lines[:10])  # two batches, as the writer sends them
        v2.write(lines[10:])
        v2.close()
        v1 = make_sink(InfluxSettings(url=influxdb.url, database=influxdb.database))
        assert isinstance(v1, V1Sink)
        v1.write(lines)
        v1.close()
        expected = _from_influx(influxdb)
        assert len(expected) == 20 * 4 + 4 + 3
        deadline = time.monotonic() + 10
        while (got := _from_victoria(vm)) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert got == expected


def test_a_v2_server_that_is_gone_is_retried(tmp_path):
    with VictoriaMetrics(tmp_path / "vm") as vm:
        url = vm.url
    gone = V2Sink(InfluxSettings(url=url, api="v2", bucket="envnet", timeout_s=1))
    with pytest.raises(InfluxWriteError) as e:
        gone.write(["air,station=x pm25=1 1"])
    assert e.value.retryable
    gone.close()
