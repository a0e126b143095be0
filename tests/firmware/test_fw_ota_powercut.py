"""Power cuts during an update (docs/ota.md): the micropython process is SIGKILLed at a known
point of the update (the firmware stalls there when sim.json says {"ota_stall": point}), then
started again, as a board powers up. Whatever the point, the station must boot a complete
version; which one is asserted, and the files of the running slot are checked byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import OtaStation  # noqa: E402

FACTORY = "0.2.0"


@pytest.fixture(scope="module")
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="module")
def releases(tmp_path_factory, key) -> Path:
    rel = tmp_path_factory.mktemp("releases") / "releases"
    harness.build_release(rel, "9.1.0", key)
    harness.build_release(rel, "9.2.0", key)
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
    global _n
    _n += 1
    st = OtaStation(tmp_path / "st", broker.port, key.hex(), f"sy-cut-{_n:03d}", health_s=2)
    st.start()
    st.wait_birth(FACTORY)
    yield st
    st.close()


def _running_slot_is_complete(st: OtaStation, releases: Path, version: str) -> None:
    p = st.pointer()
    if version == FACTORY:
        assert p is None or not p.get("active"), p
        return
    slot = st.path / "app" / p["active"]
    m = json.loads((releases / version / "manifest.json").read_text())
    assert (slot / "manifest.json").read_bytes() == (
        releases / version / "manifest.json"
    ).read_bytes()
    for f in m["files"]:
        assert hashlib.sha256((slot / f["path"]).read_bytes()).hexdigest() == f["sha256"]


def _cut_at(st: OtaStation, point: str, version: str, server: str) -> None:
    st.set_sim(ota_stall=point)
    assert st.ota(version, server)["ok"] is True
    st.wait_log(f"ota: stall at {point}")
    st.kill()  # the power cut
    st.set_sim()


# (kill point, does the station run a confirmed update before, version expected after restart)
CASES = [
    ("download", False, FACTORY),  # half of a file written into the staging slot
    ("verified", False, FACTORY),  # all staged and verified, pointer not yet written
    ("pointer-tmp", True, "9.1.0"),  # new pointer only in ota.json.tmp: the old pointer holds
    ("pointer-tmp", False, "9.2.0"),  # no old pointer: the complete temp file is the pointer
    ("switched", False, "9.2.0"),  # pointer renamed, reboot not yet done
]


@pytest.mark.parametrize(
    "point,updated_before,expect",
    CASES,
    ids=[f"{c[0]}-{'second' if c[1] else 'first'}" for c in CASES],
)
def test_power_cut_during_update_boots_a_complete_version(
    station: OtaStation, server: str, releases: Path, point, updated_before, expect
):
    if updated_before:
        assert station.ota("9.1.0", server)["ok"] is True
        station.wait_ota("confirmed", "9.1.0")
    before = "9.1.0" if updated_before else FACTORY
    _cut_at(station, point, "9.2.0", server)
    station.start()
    station.wait_birth(expect)
    if expect == "9.2.0":  # the switch had happened: the new version confirms as usual
        r = station.wait_ota("confirmed", "9.2.0")
        assert r["from"] == before
    _running_slot_is_complete(station, releases, expect)
    assert station.wait("health", lambda d: True)["fw"] == expect
    if expect == before:
        # the interrupted update can simply be sent again
        assert station.ota("9.2.0", server)["ok"] is True
        assert station.wait_ota("confirmed", "9.2.0")["from"] == before
        _running_slot_is_complete(station, releases, "9.2.0")
    assert (station.pointer() or {}).get("pending") is None


def test_power_cut_in_the_new_version_before_it_confirms_counts_a_boot(
    station: OtaStation, server: str, releases: Path
):
    _cut_at(station, "confirm", "9.1.0", server)
    assert station.pointer()["pending_v"] == "9.1.0" and station.pointer()["tries"] == 1
    station.start()  # power back, nothing in the way this time
    station.wait_birth("9.1.0")
    assert station.wait_ota("confirmed", "9.1.0")["from"] == FACTORY
    p = station.pointer()
    assert p["active_v"] == "9.1.0" and p["pending"] is None and p["tries"] == 0
    _running_slot_is_complete(station, releases, "9.1.0")


def test_new_version_killed_before_confirming_on_every_boot_is_rolled_back(
    station: OtaStation, server: str
):
    _cut_at(station, "confirm", "9.1.0", server)
    station.set_sim(ota_stall="confirm")
    for n in (2, 3):  # the loader counts every boot of the unconfirmed version
        station.start()
        station.wait_log("ota: stall at confirm")
        station.kill()
        assert station.pointer()["tries"] == n
    station.set_sim()
    station.start()
    r = station.wait_ota("rolled_back", "9.1.0")
    assert r["reason"] == "not confirmed after 3 boots" and r["from"] == FACTORY
    station.wait_birth(FACTORY)
    assert station.pointer()["pending"] is None


@pytest.mark.parametrize("delay", [0.3, 0.9, 1.6])
def test_power_cut_at_a_moment_picked_by_the_clock(
    station: OtaStation, server: str, releases: Path, delay: float
):
    # No hook: a slowed link (10 ms per 512-byte chunk, ~1.5 s for the bundle) and a kill
    # `delay` s after the job started, wherever the job happens to be.
    station.set_sim(ota_chunk_ms=10)
    assert station.ota("9.2.0", server)["ok"] is True
    station.wait_ota("downloading", "9.2.0")
    time.sleep(delay)
    station.kill()
    station.set_sim()
    p = station.pointer()
    expect = "9.2.0" if p and p.get("pending_v") == "9.2.0" else FACTORY
    station.start()
    station.wait_birth(expect)
    if expect == "9.2.0":
        station.wait_ota("confirmed", "9.2.0")
    _running_slot_is_complete(station, releases, expect)
    assert station.wait("health", lambda d: True)["fw"] == expect
