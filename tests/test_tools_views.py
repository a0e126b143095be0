"""envnet stations / envnet alerts against the real server process, and a clear 404."""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import httpx
from conftest import Proc, wait_until
from typer.testing import CliRunner

from envnet.cli import app, views
from envnet.devkit.services import free_port
from envnet.store.state import SqliteStateStore


def test_stations_and_alerts_tables_from_the_real_server(tmp_path: Path) -> None:
    db = tmp_path / "envnet.db"
    store = SqliteStateStore(db)
    store.register_station("sy-air-001", "air", {"name": "和平一号", "name_en": "Heping 1"})
    store.register_station("sy-water-001", "water", {"name": "浑河长青桥"})
    now = time.time()
    store.record_readings(
        "sy-air-001",
        "air",
        [{"ts": now, "seq": 1, "received_at": now, "values": {"pm25": 160.0}, "flags": {}}],
    )
    store.close()
    listen = f"127.0.0.1:{free_port()}"
    env = dict(
        os.environ,
        ENVNET_STORE_PATH=str(db),
        ENVNET_SERVER_LISTEN=listen,
        ENVNET_SERVER_API_KEY="k",
    )
    proc = Proc(["server"], env, tmp_path / "server.log").start()
    try:
        url = f"http://{listen}"
        wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, 20, what="server")
        r = CliRunner().invoke(
            app, ["stations", "--url", url, "--api-key", "k"], env={"COLUMNS": "200"}
        )
        assert r.exit_code == 0, r.output
        assert "sy-air-001" in r.output and "和平一号" in r.output and "sy-water-001" in r.output
        # PM2.5 160 ug/m3 -> IAQI 210: heavily polluted (重度污染), indicative from one reading.
        assert "~210" in r.output and "重度污染" in r.output
        r = CliRunner().invoke(app, ["alerts", "--url", url], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert "envnet alerts (0)" in r.output
    finally:
        proc.stop()


def test_missing_endpoint_and_unreachable_server_give_one_clear_line() -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(404)
            self.end_headers()

        def log_message(self, *a) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}"
        r = CliRunner().invoke(app, ["alerts", "--url", url])
        assert r.exit_code == 1
        assert r.output.strip().count("\n") == 0 and "does not offer /alerts yet" in r.output
    finally:
        srv.shutdown()
    r = CliRunner().invoke(app, ["stations", "--url", f"http://127.0.0.1:{free_port()}"])
    assert r.exit_code == 1 and "cannot reach the envnet server" in r.output


def test_aqi_prefers_the_servers_index() -> None:
    s = {"kind": "air", "indices": {"aqi_1h": {"aqi": 75, "category": {"level": 2}}}}
    assert views.aqi_of(s) == (75, 2, False)
    assert views.aqi_of({"kind": "water", "last_values": {"ph": 7}}) == (None, None, False)
