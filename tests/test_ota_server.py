"""OTA server: the release file routes, release registration, the per-station view.

Against the real server process (uvicorn, started from the CLI) and a real Mosquitto."""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Proc, wait_until
from ota_helpers import FLEET_KEY, make_release

AUTH = {"Authorization": "Bearer test-key"}


@pytest.fixture
def ota_env(envnet_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = dict(envnet_env)
    env.update(
        ENVNET_OTA_RELEASES_DIR=str(tmp_path / "releases"),
        ENVNET_OTA_FLEET_KEY=FLEET_KEY,
        ENVNET_OTA_TICK_S="0.2",
    )
    (tmp_path / "releases").mkdir()
    return env


@pytest.fixture
def ota_server(ota_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    proc = Proc(["server"], ota_env, tmp_path / "server.log").start()
    base = f"http://{ota_env['ENVNET_SERVER_LISTEN']}"
    wait_until(
        lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 20, what="server"
    )
    yield base
    proc.stop()


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent as is: httpx would normalise away the `..` we want to send."""
    host, port = base.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_release_files_are_served_with_length_and_traversal_refused(
    ota_server: str, tmp_path: Path
) -> None:
    big = bytes(i % 251 for i in range(300_000))  # larger than one FileResponse chunk (64 KiB)
    d = make_release(tmp_path / "releases", "1.3.0", {"main.py": b"x = 1\n", "lib/big.mpy": big})
    (tmp_path / "releases" / "secret.txt").write_text("not for stations")
    base = f"{ota_server}/ota/releases/1.3.0"

    r = httpx.get(f"{base}/manifest.json")
    assert r.status_code == 200 and r.content == (d / "manifest.json").read_bytes()
    assert r.headers["content-length"] == str(len(r.content))
    r = httpx.get(f"{base}/manifest.sig")
    assert r.status_code == 200 and r.text == (d / "manifest.sig").read_text()

    r = httpx.get(f"{base}/files/lib/big.mpy")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(big))
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(big).digest()

    # Streamed: the client can read it in pieces without the server buffering a whole answer.
    with httpx.stream("GET", f"{base}/files/lib/big.mpy") as s:
        chunks = [len(c) for c in s.iter_raw()]
    assert sum(chunks) == len(big)

    for bad in (
        "files/../manifest.json",
        "files/..%2f..%2fsecret.txt",
        "files/%2e%2e/%2e%2e/secret.txt",
        "files//etc/passwd",
        "files/lib/../../manifest.sig",
        "files/",
        "files/lib",
    ):
        status, body = raw_get(ota_server, f"/ota/releases/1.3.0/{bad}")
        assert status == 404, (bad, status, body[:200])
        assert b"not for stations" not in body
    assert raw_get(ota_server, "/ota/releases/../releases/1.3.0/manifest.json")[0] == 404
    assert raw_get(ota_server, "/ota/releases/..%2f1.3.0/manifest.json")[0] == 404
    assert httpx.get(f"{ota_server}/ota/releases/9.9.9/manifest.json").status_code == 404


def test_symlink_out_of_a_release_is_not_followed(ota_server: str, tmp_path: Path) -> None:
    d = make_release(tmp_path / "releases", "1.3.1")
    outside = tmp_path / "outside.txt"
    outside.write_text("private")
    (d / "files" / "link.mpy").symlink_to(outside)
    r = httpx.get(f"{ota_server}/ota/releases/1.3.1/files/link.mpy")
    assert r.status_code == 404


def test_registration_verifies_signature_and_every_file(ota_server: str, tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    make_release(releases, "1.3.0")
    url = f"{ota_server}/ota/releases"
    assert httpx.post(f"{url}/1.3.0").status_code == 401  # the key is needed
    r = httpx.post(f"{url}/1.3.0", headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["registered"] and r.json()["signature_checked"] is True
    assert r.json()["files"] == 2

    # One flipped byte in a file: the hash no longer matches the signed manifest.
    d = make_release(releases, "1.3.1")
    f = d / "files" / "lib" / "station.mpy"
    data = bytearray(f.read_bytes())
    data[100] ^= 0x01
    f.write_bytes(bytes(data))
    r = httpx.post(f"{url}/1.3.1", headers=AUTH)
    assert r.status_code == 422 and "lib/station.mpy: hash mismatch" in r.text

    # Signed with another key.
    make_release(releases, "1.3.2", key_hex="ab" * 32)
    r = httpx.post(f"{url}/1.3.2", headers=AUTH)
    assert r.status_code == 422 and "bad signature" in r.text

    # A manifest edited after signing (a file quietly added to the list).
    d = make_release(releases, "1.3.3")
    raw = (
        (d / "manifest.json")
        .read_bytes()
        .replace(b'"confirm_deadline_s":300', b'"confirm_deadline_s":30')
    )
    (d / "manifest.json").write_bytes(raw)
    r = httpx.post(f"{url}/1.3.3", headers=AUTH)
    assert r.status_code == 422 and "bad signature" in r.text

    # Unsigned.
    d = make_release(releases, "1.3.4")
    (d / "manifest.sig").unlink()
    r = httpx.post(f"{url}/1.3.4", headers=AUTH)
    assert r.status_code == 422 and "unsigned" in r.text

    # A manifest naming a path outside the slot, even if correctly signed.
    make_release(releases, "1.3.5", {"../boot.py": b"x"})
    r = httpx.post(f"{url}/1.3.5", headers=AUTH)
    assert r.status_code == 422 and "unsafe file path" in r.text

    listed = {x["version"]: x for x in httpx.get(url).json()}
    assert sorted(listed) == ["1.3.0", "1.3.1", "1.3.2", "1.3.3", "1.3.4", "1.3.5"]
    assert [v for v, x in listed.items() if x["registered"]] == ["1.3.0"]
    assert httpx.post(f"{url}/9.9.9", headers=AUTH).status_code == 404


def test_release_changed_after_registration_cannot_be_rolled_out(
    ota_server: str, ota_env: dict[str, str], tmp_path: Path
) -> None:
    from envnet.store.state import SqliteStateStore

    store = SqliteStateStore(ota_env["ENVNET_STORE_PATH"])
    store.register_station("sy-canary-1", "air", {"group": "canary"})
    store.close()
    releases = tmp_path / "releases"
    make_release(releases, "1.3.0")
    assert httpx.post(f"{ota_server}/ota/releases/1.3.0", headers=AUTH).status_code == 201
    make_release(releases, "1.3.0", {"main.py": b"print('other')\n"})  # rebuilt in place
    assert httpx.get(f"{ota_server}/ota/releases/1.3.0").json()["changed_since_registration"]
    body = {"version": "1.3.0", "stages": ["canary"]}
    r = httpx.post(f"{ota_server}/ota/rollouts", json=body, headers=AUTH)
    assert r.status_code == 409 and "changed on disk" in r.text
    # A stage that names nobody is refused up front, so an empty canary cannot wave it through.
    assert httpx.post(f"{ota_server}/ota/releases/1.3.0", headers=AUTH).status_code == 201
    body = {"version": "1.3.0", "stages": ["group:pilot", "all"]}
    r = httpx.post(f"{ota_server}/ota/rollouts", json=body, headers=AUTH)
    assert r.status_code == 409 and "names no station" in r.text


def test_server_without_fleet_key_still_refuses_broken_bundles(
    ota_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**ota_env, "ENVNET_OTA_FLEET_KEY": ""}
    proc = Proc(["server"], env, tmp_path / "server-nokey.log").start()
    base = f"http://{env['ENVNET_SERVER_LISTEN']}"
    try:
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 20)
        make_release(tmp_path / "releases", "1.4.0", key_hex="ab" * 32)
        r = httpx.post(f"{base}/ota/releases/1.4.0", headers=AUTH)
        assert r.status_code == 201 and r.json()["signature_checked"] is False
        d = make_release(tmp_path / "releases", "1.4.1")
        (d / "files" / "main.py").write_bytes(b"print('evil')\n")
        r = httpx.post(f"{base}/ota/releases/1.4.1", headers=AUTH)
        assert r.status_code == 422 and "main.py" in r.text
    finally:
        proc.stop()


def test_group_assignment_decides_the_canary_stage(
    ota_server: str, ota_env: dict[str, str], tmp_path: Path
) -> None:
    from envnet.store.state import SqliteStateStore

    store = SqliteStateStore(ota_env["ENVNET_STORE_PATH"])
    for sid in ("sy-air-001", "sy-air-002", "sy-air-003"):
        store.register_station(sid, "air", {"district": "和平区", "district_en": "Heping"})
    url = f"{ota_server}/ota/stations/sy-air-002/group"
    assert httpx.put(url, json={"group": "canary"}).status_code == 401
    assert httpx.put(url, json={"group": "Canary!"}, headers=AUTH).status_code == 422
    r = httpx.put(url, json={"group": "canary"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["group"] == "canary"
    assert r.json()["district"] == "和平区"
    missing = f"{ota_server}/ota/stations/sy-nobody/group"
    assert httpx.put(missing, json={"group": "canary"}, headers=AUTH).status_code == 404

    make_release(tmp_path / "releases", "1.3.0")
    assert httpx.post(f"{ota_server}/ota/releases/1.3.0", headers=AUTH).status_code == 201
    body = {"version": "1.3.0", "stages": ["canary", "district:和平区"]}
    r = httpx.post(f"{ota_server}/ota/rollouts", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    # No station is online (no birth): the canary waits as `pending`, nobody else is a target.
    got = wait_until(
        lambda: (x := httpx.get(f"{ota_server}/ota/rollouts/{rid}").json())["targets"] and x,
        10,
        what="stage entered",
    )
    assert [(t["station"], t["state"]) for t in got["targets"]] == [("sy-air-002", "pending")]
    assert got["stages"][0]["stations"] == 1
    view = httpx.get(f"{ota_server}/ota/stations/sy-air-002").json()
    assert (view["target_version"], view["update_state"]) == ("1.3.0", "pending")
    assert httpx.get(f"{ota_server}/ota/stations/sy-air-001").json()["target_version"] is None

    rows = store.query("SELECT actor, action, target, detail FROM audit ORDER BY id")
    store.close()
    actions = [(r["actor"], r["action"], r["target"]) for r in rows]
    assert ("admin", "ota.station.group", "station:sy-air-002") in actions
    assert ("admin", "ota.release.register", "release:1.3.0") in actions
    assert ("admin", "ota.rollout.start", f"rollout:{rid}") in actions
