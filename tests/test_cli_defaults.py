"""The CLI's shared options: a server started from a config is found from that config (no
--url), its key too; an explicit --url wins; a bad config is one line and exit code 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
from conftest import Proc, wait_until
from typer.testing import CliRunner

from envnet.cli import app
from envnet.cli.common import server_url
from envnet.config import load_config
from envnet.devkit.services import free_port
from envnet.store.state import SqliteStateStore

KEY = "cli-defaults-key"
# The caller's environment must not choose the server for these commands.
CLEAN_ENV = {"ENVNET_URL": None, "ENVNET_API_KEY": None, "COLUMNS": "200"}


def _write_config(path: Path, db: Path, listen: str, public_url: str = "") -> Path:
    path.write_text(
        f'[store]\npath = "{db}"\n\n[server]\nlisten = "{listen}"\napi_key = "{KEY}"\n'
        f'public_url = "{public_url}"\n'
    )
    return path


def _run(*args: str):
    return CliRunner().invoke(app, list(args), env=CLEAN_ENV)


def test_commands_find_the_server_and_its_key_in_the_config(tmp_path: Path) -> None:
    db = tmp_path / "envnet.db"
    store = SqliteStateStore(db)
    store.register_station("cfg-air-001", "air", {"name": "配置一号"})
    store.close()
    listen = f"127.0.0.1:{free_port()}"
    cfg = _write_config(tmp_path / "envnet.toml", db, listen)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNET_")}
    proc = Proc(["server", "--config", str(cfg)], env, tmp_path / "server.log").start()
    try:
        wait_until(
            lambda: httpx.get(f"http://{listen}/healthz").status_code == 200, 20, what="server"
        )
        r = _run("stations", "--config", str(cfg))
        assert r.exit_code == 0, r.output
        assert "cfg-air-001" in r.output and "配置一号" in r.output
        r = _run("alerts", "-c", str(cfg))
        assert r.exit_code == 0 and "envnet alerts (0)" in r.output, r.output
        # GET /audit needs a key: the config's server.api_key is sent.
        r = _run("audit", "-c", str(cfg), "--json")
        assert r.exit_code == 0, r.output
        assert r.stdout == "" or all(json.loads(ln) for ln in r.stdout.splitlines())
        r = _run("audit", "-c", str(cfg), "--api-key", "wrong")  # an explicit key wins
        assert r.exit_code == 1 and "refused (403)" in r.output, r.output
        r = _run("ota", "releases", "-c", str(cfg))
        assert r.exit_code == 0 and "releases" in r.output, r.output
        # server.public_url, when set, is where the server is reached (listen is the bind).
        other = _write_config(
            tmp_path / "public.toml", db, f"127.0.0.1:{free_port()}", f"http://{listen}/"
        )
        r = _run("stations", "-c", str(other))
        assert r.exit_code == 0 and "cfg-air-001" in r.output, r.output
        # An explicit --url wins over the config.
        elsewhere = f"http://127.0.0.1:{free_port()}"
        r = _run("stations", "-c", str(cfg), "--url", elsewhere)
        assert r.exit_code == 1 and f"cannot reach the envnet server at {elsewhere}" in r.output
        # ENVNET_* overrides apply to these commands as to every other.
        r = CliRunner().invoke(
            app,
            ["stations"],
            env={**CLEAN_ENV, "ENVNET_SERVER_LISTEN": listen, "ENVNET_SERVER_PUBLIC_URL": None},
        )
        assert r.exit_code == 0 and "cfg-air-001" in r.output, r.output
    finally:
        proc.stop()


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nlisten = "nowhere"\n')
    for args in (["stations"], ["audit"], ["ota", "status"], ["raw", "st-01"], ["sim"]):
        r = _run(*args, "--config", str(bad))
        assert r.exit_code == 2, (args, r.output)
        line = r.output.strip()
        assert "\n" not in line and line.startswith("envnet: config error: server.listen: ")


def test_a_server_listening_everywhere_is_reached_on_the_loopback() -> None:
    env = {"ENVNET_SERVER_LISTEN": "0.0.0.0:9100"}
    assert server_url(load_config(None, env)) == "http://127.0.0.1:9100"
    env["ENVNET_SERVER_PUBLIC_URL"] = "https://envnet.bureau.example/"
    assert server_url(load_config(None, env)) == "https://envnet.bureau.example"
    assert server_url(load_config(None, {})) == "http://127.0.0.1:8080"  # the old default
