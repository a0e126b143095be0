"""envnet provision: config, registry, refusals; the real Mosquitto enforcing its ACL."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_until
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from envnet.cli import app
from envnet.devkit.services import Mosquitto, free_port
from envnet.devkit.sim import FIRMWARE_DIR, micropython_bin
from envnet.store.state import SqliteStateStore
from envnet.tools import provision as pv

pytestmark = pytest.mark.skipif(
    not Path(pv.MOSQUITTO_PASSWD).exists(), reason="mosquitto_passwd not installed"
)


def run_provision(tmp_path: Path, *args: str, mqtt_url: str = "mqtt://127.0.0.1:1883"):
    env = {"ENVNET_STORE_PATH": str(tmp_path / "envnet.db"), "ENVNET_MQTT_URL": mqtt_url}
    return CliRunner().invoke(app, ["provision", *args, "--out", str(tmp_path / "st")], env=env)


def test_provision_writes_config_credentials_acl_and_registry(tmp_path: Path) -> None:
    r = run_provision(
        tmp_path,
        *("sy-water-hun-01", "--kind", "water", "--site", "浑河 Hun R. Changqing bridge"),
        *("--board", "esp32-water-v1", "--district", "浑南区", "--river", "浑河"),
        *("--section", "长青桥", "--target-class", "III", "--lat", "41.75", "--lon", "123.44"),
        *("--name-zh", "浑河长青桥", "--name-en", "Hun River Changqing Bridge"),
    )
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "st/sy-water-hun-01/config.json").read_text())
    assert cfg["station_id"] == "sy-water-hun-01" and cfg["board"] == "esp32-water-v1"
    assert cfg["interval_s"] == 300 and cfg["mqtt"]["user"] == "sy-water-hun-01"
    assert len(cfg["mqtt"]["password"]) >= 20
    assert (tmp_path / "st/sy-water-hun-01/config.json").stat().st_mode & 0o077 == 0
    # The firmware's own validator accepts it (real MicroPython, real firmware/lib/config.py).
    out = subprocess.run(
        [micropython_bin(), "-c", "import config; c = config.load(); print('OK', c['kind'])"],
        cwd=tmp_path / "st/sy-water-hun-01",
        env={"MICROPYPATH": f"{FIRMWARE_DIR / 'lib'}:{FIRMWARE_DIR}"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.stdout.strip() == "OK water", out.stdout + out.stderr
    acl = (tmp_path / "st/mosquitto.acl").read_text()
    assert "user sy-water-hun-01\ntopic write envnet/v1/sy-water-hun-01/#\n" in acl
    assert "topic read envnet/v1/sy-water-hun-01/cmd\n" in acl
    assert pv.users_in(tmp_path / "st/mosquitto.passwd") == {"sy-water-hun-01"}
    store = SqliteStateStore(tmp_path / "envnet.db")
    meta = store.get_station_meta("sy-water-hun-01")
    store.close()
    assert meta["kind"] == "water" and meta["river"] == "浑河" and meta["target_class"] == "III"
    assert meta["name"] == "浑河长青桥" and meta["lat"] == 41.75 and meta["class"] == "section"


@pytest.mark.parametrize(
    "args, message",
    [
        (["Bad_ID", "--kind", "air", "--board", "sim-air"], "bad station id 'Bad_ID'"),
        (["9", "--kind", "air", "--board", "sim-air"], "bad station id"),
        (["sy-air-9", "--kind", "air", "--board", "nope"], "unknown board profile 'nope'"),
        (["sy-air-9", "--kind", "water", "--board", "sim-air"], "is for air stations, not water"),
        (["sy-air-9", "--kind", "soil", "--board", "sim-air"], "kind must be one of"),
        (
            ["sy-w-9", "--kind", "water", "--board", "sim-water", "--target-class", "VI"],
            "--target-class must be one of",
        ),
    ],
)
def test_provision_refuses_with_one_line_and_exit_2(tmp_path: Path, args, message) -> None:
    r = run_provision(tmp_path, *args, "--site", "x")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.output
    assert not (tmp_path / "st" / args[0]).exists()


def test_provision_refuses_duplicates(tmp_path: Path) -> None:
    args = ["sy-air-001", "--kind", "air", "--site", "x", "--board", "sim-air"]
    assert run_provision(tmp_path, *args).exit_code == 0
    before = (tmp_path / "st/mosquitto.passwd").read_text()
    r = run_provision(tmp_path, *args)
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0
    assert "already provisioned" in r.output
    # Registered elsewhere (server registry) but not here: still refused, nothing written.
    store = SqliteStateStore(tmp_path / "envnet.db")
    store.register_station("sy-air-002", "air", {})
    store.close()
    r = run_provision(tmp_path, "sy-air-002", *args[1:])
    assert r.exit_code == 2 and "already registered" in r.output
    assert (tmp_path / "st/mosquitto.passwd").read_text() == before
    assert "sy-air-002" not in (tmp_path / "st/mosquitto.acl").read_text()


class Sub:
    """An MQTT client that records what it receives."""

    def __init__(self, port: int, user: str, password: str, topics: list[str]) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.rc = None
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=user)
        self.c.username_pw_set(user, password)
        self.c.on_message = self._msg
        self.c.on_connect = lambda c, u, f, rc, p: setattr(self, "rc", rc)
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        wait_until(lambda: self.rc is not None, 10, what=f"{user} CONNACK")
        if not self.rc.is_failure:
            self.c.subscribe([(t, 1) for t in topics])
            assert self.subscribed.wait(10)

    def _msg(self, c, u, m) -> None:
        with self.lock:
            self.got.append((m.topic, m.payload))

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.got]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_mosquitto_enforces_provisioned_credentials_and_acl(tmp_path: Path) -> None:
    out = tmp_path / "st"
    port = free_port()
    creds = {}
    for sid in ("sy-air-001", "sy-air-002"):
        cfg = pv.provision(
            sid,
            "air",
            "site",
            "sim-air",
            out,
            f"mqtt://127.0.0.1:{port}",
            tmp_path / "envnet.db",
            out / "mosquitto.passwd",
            out / "mosquitto.acl",
        )
        creds[sid] = cfg["mqtt"]["password"]
    # An operator account that sees everything (the gateway's role).
    pv.add_password(out / "mosquitto.passwd", "ops", "ops-secret")
    with open(out / "mosquitto.acl", "a") as f:
        f.write("\nuser ops\ntopic readwrite envnet/#\n")
    with Mosquitto(tmp_path / "mq", port, out / "mosquitto.passwd", out / "mosquitto.acl"):
        ops = Sub(port, "ops", "ops-secret", ["envnet/#"])
        st1 = Sub(port, "sy-air-001", creds["sy-air-001"], ["envnet/v1/+/cmd"])
        bad = Sub(port, "sy-air-001", "wrong-password", [])
        try:
            assert bad.rc.is_failure  # wrong password: CONNACK refused
            own, foreign = "envnet/v1/sy-air-001/reading", "envnet/v1/sy-air-002/reading"
            for n in range(3):
                st1.c.publish(foreign, json.dumps({"seq": n}), qos=1).wait_for_publish(10)
                st1.c.publish(own, json.dumps({"seq": n}), qos=1).wait_for_publish(10)
            # Commands: the station reads its own cmd topic only.
            ops.c.publish("envnet/v1/sy-air-002/cmd", b'{"op":"ping"}', qos=1).wait_for_publish(10)
            ops.c.publish("envnet/v1/sy-air-001/cmd", b'{"op":"ping"}', qos=1).wait_for_publish(10)
            wait_until(lambda: ops.topics().count(own) == 3, 10, what="own readings")
            wait_until(lambda: "envnet/v1/sy-air-001/cmd" in st1.topics(), 10, what="own cmd")
            assert foreign not in ops.topics()  # refused under another id: nothing arrives
            assert st1.topics() == ["envnet/v1/sy-air-001/cmd"]
        finally:
            for c in (ops, st1, bad):
                c.close()
