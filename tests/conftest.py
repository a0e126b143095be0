"""Fixtures that start the real parts: Mosquitto, InfluxDB, the gateway and server processes,
and the firmware on the MicroPython unix port. Each test gets its own ports and temp dirs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from envnet.config import Settings, load_config
from envnet.devkit.services import InfluxDB, Mosquitto, component_env, free_port
from envnet.devkit.sim import SimStation, station_config

REPO = Path(__file__).resolve().parent.parent


def wait_until(
    check: Callable[[], object], timeout: float = 20.0, interval: float = 0.1, what: str = ""
):
    """Poll until check() returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # the thing may not be up yet
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check}: {last_exc}")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto") as m:
        yield m


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    with InfluxDB(tmp_path / "influxdb") as i:
        yield i


class Proc:
    """An envnet process (gateway or server) started from the CLI, as an operator would."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.p: subprocess.Popen | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as f:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "envnet.cli", *self.args],
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self) -> None:
        if self.p and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def envnet_env(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> dict[str, str]:
    """ENVNET_* variables pointing every component at this test's broker, InfluxDB and store."""
    return component_env(
        tmp_path, mosquitto, influxdb, f"test-{free_port()}", ENVNET_SERVER_API_KEY="test-key"
    )


@pytest.fixture
def settings(envnet_env: dict[str, str]) -> Settings:
    return load_config(None, environ=envnet_env)


@pytest.fixture
def gateway(tmp_path: Path, envnet_env: dict[str, str]) -> Iterator[Proc]:
    proc = Proc(["gateway"], envnet_env, tmp_path / "gateway.log").start()
    # Its first subscription makes the broker keep a session for it; from then nothing is lost.
    wait_until(lambda: "subscribed to" in proc.output(), 20, what="gateway subscription")
    yield proc
    proc.stop()


@pytest.fixture
def server(tmp_path: Path, envnet_env: dict[str, str]) -> Iterator[str]:
    """The server process; yields its base URL once /healthz answers."""
    proc = Proc(["server"], envnet_env, tmp_path / "server.log").start()
    base = f"http://{envnet_env['ENVNET_SERVER_LISTEN']}"
    wait_until(
        lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 20, what="server"
    )
    yield base
    proc.stop()


@pytest.fixture
def firmware(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Callable[..., SimStation]]:
    """Factory: firmware(station_id, kind, interval_s=1) -> a running SimStation."""
    started: list[SimStation] = []

    def start(station_id: str, kind: str = "air", interval_s: float = 1.0, **cfg) -> SimStation:
        st = SimStation(station_id, tmp_path / "stations" / station_id)
        config = station_config(station_id, kind, mosquitto.url, interval_s, **cfg)
        st.write_config(config)
        st.start()
        started.append(st)
        return st

    yield start
    for st in started:
        st.kill()
