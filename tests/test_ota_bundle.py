"""`envnet release` (envnet/tools/release.py, rules in envnet/domain/ota/manifest.py): the
bundle as docs/ota.md defines it."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envnet.domain.ota import manifest
from envnet.tools import release
from envnet.tools.flash import device_sources, sim_only_modules

REPO = Path(__file__).resolve().parent.parent
MPY_MAGIC = b"M"  # first byte of every .mpy file


@pytest.fixture(scope="module")
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="module")
def built(tmp_path_factory, key) -> Path:
    out = tmp_path_factory.mktemp("rel")
    return release.build_bundle("1.3.0", key, out, created=1_700_000_000)


def test_layout_manifest_and_signature_follow_the_contract(built: Path, key: bytes):
    raw = (built / "manifest.json").read_bytes()
    m = json.loads(raw)
    assert list(m) == ["v", "version", "created", "key_id", "confirm_deadline_s", "files"]
    assert (m["v"], m["version"], m["created"], m["key_id"], m["confirm_deadline_s"]) == (
        1,
        "1.3.0",
        1_700_000_000,
        "fleet-1",
        300,
    )
    sig = (built / "manifest.sig").read_text().strip()
    assert sig == hmac.new(key, raw, hashlib.sha256).hexdigest() and sig == sig.lower()
    # exactly the device files of `envnet flash`, compiled, main.py as source
    want = sorted(d if d == "main.py" else d[:-3] + ".mpy" for _, d in device_sources())
    paths = [f["path"] for f in m["files"]]
    assert sorted(paths) == want and len(paths) == len(set(paths))
    assert "lib/ota.mpy" in paths and "lib/hmac256.mpy" in paths and "board.mpy" in paths
    # nothing of the simulated board (firmware/sim/): it is installed by the simulator only
    sim_only = {Path(n).stem for n in sim_only_modules()}
    assert sim_only >= {"board_sim", "simsensors"}
    assert not sim_only & {Path(p).stem for p in paths}, sorted(paths)
    assert not sim_only & {p.stem for p in (built / "files").rglob("*")}
    assert "lib/board_esp32.mpy" in paths and "lib/otarules.mpy" in paths
    for f in m["files"]:
        data = (built / "files" / f["path"]).read_bytes()
        assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"]
        assert not f["path"].startswith("/") and ".." not in f["path"].split("/")
        if f["path"] == "main.py":
            assert data == (REPO / "firmware" / "main.py").read_bytes()
        else:
            assert data[:1] == MPY_MAGIC, f["path"]
    assert manifest.verify_bundle(built, key) == m
    # nothing but the bundle is left in the releases directory (no temp dirs)
    assert sorted(p.name for p in built.parent.iterdir()) == ["1.3.0"]


def test_verify_catches_a_flipped_byte_a_wrong_key_and_a_missing_file(
    built: Path, key: bytes, tmp_path: Path
):
    copy = shutil.copytree(built, tmp_path / "1.3.0")
    with pytest.raises(manifest.BundleError, match="bad signature"):
        manifest.verify_bundle(copy, secrets.token_bytes(32))
    f = copy / "files" / "lib" / "station.mpy"
    data = bytearray(f.read_bytes())
    data[7] ^= 0x80
    f.write_bytes(bytes(data))
    with pytest.raises(manifest.BundleError, match="hash mismatch on lib/station.mpy"):
        manifest.verify_bundle(copy, key)
    f.unlink()
    with pytest.raises(manifest.BundleError, match="lib/station.mpy missing"):
        manifest.verify_bundle(copy, key)
    # a manifest edited after signing
    raw = (copy / "manifest.json").read_bytes().replace(b'"1.3.0"', b'"1.3.1"')
    (copy / "manifest.json").write_bytes(raw)
    with pytest.raises(manifest.BundleError, match="bad signature"):
        manifest.verify_bundle(copy, key)


def test_a_signed_manifest_with_a_traversal_path_is_refused(built: Path, key: bytes, tmp_path):
    copy = shutil.copytree(built, tmp_path / "evil")
    m = json.loads((copy / "manifest.json").read_text())
    m["files"][0]["path"] = "../../config.json"
    raw = json.dumps(m).encode()
    (copy / "manifest.json").write_bytes(raw)
    (copy / "manifest.sig").write_text(manifest.sign(raw, key))
    with pytest.raises(manifest.BundleError, match="unsafe file path '../../config.json'"):
        manifest.verify_bundle(copy, key)


@pytest.mark.parametrize(
    "p,ok",
    [
        ("main.py", True),
        ("lib/x.mpy", True),
        ("a/b/c-1_2.mpy", True),
        ("/etc/passwd", False),
        ("../x", False),
        ("lib/../x", False),
        ("lib//x", False),
        ("./x", False),
        ("", False),
        ("lib\\x", False),
        ("x y", False),
        (None, False),
    ],
)
def test_safe_path(p, ok):
    assert manifest.safe_path(p) is ok


def test_an_existing_version_is_never_overwritten(built: Path, key: bytes):
    before = (built / "manifest.json").read_bytes()
    with pytest.raises(manifest.BundleError, match="already exists"):
        release.build_bundle("1.3.0", key, built.parent)
    assert (built / "manifest.json").read_bytes() == before


def test_bad_inputs_are_refused_with_one_line(tmp_path: Path, key: bytes):
    for v in ("../x", "a/b", "", ".hidden", "x" * 70):
        with pytest.raises(manifest.BundleError, match="version"):
            release.build_bundle(v, key, tmp_path)
    with pytest.raises(manifest.BundleError, match="at least 16"):
        release.build_bundle("1.0.0", b"short", tmp_path)
    (tmp_path / "k1").write_text("not hex\n")
    with pytest.raises(manifest.BundleError, match="not a hex string"):
        manifest.read_key_file(tmp_path / "k1")
    (tmp_path / "k2").write_text(" " + key.hex().upper() + "\n")
    assert manifest.read_key_file(tmp_path / "k2") == key
    with pytest.raises(manifest.BundleError, match="fleet key file"):
        manifest.read_key_file(tmp_path / "missing")
    assert list(tmp_path.glob("1.0.0*")) == [] and list(tmp_path.glob(".*")) == []


def test_firmware_that_does_not_compile_leaves_nothing_behind(tmp_path: Path, key: bytes):
    fw = tmp_path / "fw"
    shutil.copytree(REPO / "firmware", fw, ignore=shutil.ignore_patterns("__pycache__"))
    (fw / "lib" / "broken.py").write_text("def f(:\n")
    out = tmp_path / "rel"
    with pytest.raises(manifest.BundleError, match="mpy-cross failed on .*broken.py"):
        release.build_bundle("2.0.0", key, out, firmware=fw)
    assert list(out.iterdir()) == []


def test_cli_release_with_default_out_from_config(tmp_path: Path, key: bytes):
    (tmp_path / "fleet.key").write_text(key.hex() + "\n")
    rel = tmp_path / "releases"
    env = {"PATH": "/usr/bin:/bin", "ENVNET_OTA_RELEASES_DIR": str(rel)}
    argv = [
        sys.executable,
        "-m",
        "envnet.cli",
        "release",
        "--version",
        "1.4.0",
        "--fleet-key-file",
        str(tmp_path / "fleet.key"),
        "--key-id",
        "fleet-7",
        "--confirm-deadline-s",
        "120",
    ]
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{rel / '1.4.0'}: " in r.stdout and "signed with fleet-7" in r.stdout
    m = manifest.verify_bundle(rel / "1.4.0", key)
    assert m["key_id"] == "fleet-7" and m["confirm_deadline_s"] == 120
    again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


def test_provision_writes_the_fleet_key_and_the_firmware_reads_it(tmp_path: Path, key: bytes):
    from typer.testing import CliRunner

    from envnet.cli import app
    from envnet.devkit.sim import FIRMWARE_DIR, micropython_bin
    from envnet.tools import provision as pv

    if not Path(pv.MOSQUITTO_PASSWD).exists():
        pytest.skip("mosquitto_passwd not installed")
    (tmp_path / "fleet.key").write_text(key.hex())
    env = {
        "ENVNET_STORE_PATH": str(tmp_path / "envnet.db"),
        "ENVNET_MQTT_URL": "mqtt://127.0.0.1:1883",
    }
    args = [
        "provision",
        "sy-air-ota-1",
        "--kind",
        "air",
        "--site",
        "x",
        "--board",
        "esp32-air-v1",
        "--out",
        str(tmp_path / "st"),
        "--fleet-key-file",
        str(tmp_path / "fleet.key"),
        "--fleet-key-id",
        "fleet-2",
    ]
    r = CliRunner().invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "st/sy-air-ota-1/config.json").read_text())
    assert cfg["ota"] == {"key": key.hex(), "key_id": "fleet-2"}
    # the firmware's own config loader takes it, and masks it in `config get`
    out = subprocess.run(
        [
            micropython_bin(),
            "-c",
            "import config, binascii; c = config.load(); "
            "print(len(binascii.unhexlify(c['ota']['key'])), config.view(c)['ota.key'])",
        ],
        cwd=tmp_path / "st/sy-air-ota-1",
        env={"MICROPYPATH": f"{FIRMWARE_DIR / 'lib'}:{FIRMWARE_DIR}"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.stdout.split() == ["32", "***"], out.stdout + out.stderr
    # a bad key file refuses before anything is written
    (tmp_path / "bad.key").write_text("zz")
    r = CliRunner().invoke(
        app,
        ["provision", "sy-air-ota-2", *args[2:-4], "--fleet-key-file", str(tmp_path / "bad.key")],
        env=env,
    )
    assert r.exit_code == 2 and "not a hex string" in r.output
    assert not (tmp_path / "st/sy-air-ota-2").exists()


def test_envnet_flash_drops_the_boot_pointer_so_the_flashed_firmware_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # flash_port runs this script on the board after copying; here on the unix port.
    from envnet.devkit.sim import micropython_bin
    from envnet.tools import flash

    (tmp_path / "ota.json").write_text('{"active": "a"}')
    (tmp_path / "main.py").write_text("x")
    calls: list[list[str]] = []

    def fake_mpremote(port: str, args: list[str], timeout: float) -> str:
        calls.append(args)
        if args[0] == "exec" and "HASHES" in args[1]:
            r = subprocess.run(
                [micropython_bin(), "-c", args[1]],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=20,
            )
            return r.stdout
        return ""

    item = flash.FileItem(tmp_path / "main.py", "main.py")
    monkeypatch.setattr(flash, "_mpremote", fake_mpremote)
    res = flash.flash_port("pty0", [item])
    assert res.ok, res.error
    assert not (tmp_path / "ota.json").exists()
