"""The boot loader (firmware/main.py) alone, on the unix port, with tiny synthetic firmware
versions: which version it picks, what it writes into ota.json, that a slot sees nothing of
the root firmware, and the ESP32 branch (reset through the fake `machine`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

FAKES = harness.ROOT / "tests" / "firmware" / "fakes"

ROOT_FWMAIN = """
def app(info=None):
    print("RUN root", info and info.get("slot"), info and info.get("reset"))
    return "config"
"""

SLOT_FWMAIN = """
import sys
def app(info):
    print("RUN slot", info["slot"], info["version"], info["pending"])
    try:
        import rootonly
        print("LEAK")
    except ImportError:
        print("ISOLATED")
    {action}
"""


def _station(tmp: Path, pointer: dict | None, slot_action: str = "raise SystemExit(3)") -> Path:
    """<tmp>/fw: loader + root firmware; <tmp>/st: the station dir with slot a."""
    fw = tmp / "fw"
    (fw / "lib").mkdir(parents=True)
    shutil.copy(harness.FW / "main.py", fw / "main.py")
    (fw / "lib" / "fwmain.py").write_text(ROOT_FWMAIN)
    (fw / "lib" / "rootonly.py").write_text("X = 1\n")
    st = tmp / "st"
    (st / "app" / "a" / "lib").mkdir(parents=True)
    (st / "app" / "a" / "lib" / "fwmain.py").write_text(SLOT_FWMAIN.format(action=slot_action))
    (st / "app" / "a" / "manifest.json").write_text('{"v": 1, "version": "1.0.0"}')
    if pointer is not None:
        (st / "ota.json").write_text(json.dumps(pointer))
    return st


def _boot(st: Path, extra_path: str = "", **env) -> subprocess.CompletedProcess:
    fw = st.parent / "fw"
    path = f"{fw / 'lib'}:{fw}" + (f":{extra_path}" if extra_path else "")
    return subprocess.run(
        [harness.MICROPYTHON, str(fw / "main.py")],
        cwd=st,
        env=dict(os.environ, MICROPYPATH=path, **env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def _ptr(st: Path) -> dict:
    return json.loads((st / "ota.json").read_text())


PENDING = {"v": 1, "active": "", "active_v": "0.2.0", "pending": "a", "pending_v": "1.0.0",
           "tries": 0, "max_tries": 3, "deadline_s": 300, "report": None}  # fmt: skip


def test_no_pointer_runs_the_root_firmware_as_before(tmp_path):
    st = _station(tmp_path, None)
    r = _boot(st)
    assert r.returncode == 2 and r.stdout.splitlines() == ["RUN root None None"], r
    assert not (st / "ota.json").exists()  # the loader writes nothing without a pointer


def test_pending_slot_counts_the_boot_before_it_runs_and_sees_only_itself(tmp_path):
    st = _station(tmp_path, PENDING)
    r = _boot(st)
    assert r.returncode == 3  # the slot's own exit, straight through the loader
    assert r.stdout.splitlines() == ["RUN slot a 1.0.0 True", "ISOLATED"], r
    p = _ptr(st)
    assert p["pending"] == "a" and p["tries"] == 1  # written before the slot ran
    _boot(st)
    assert _ptr(st)["tries"] == 2


def test_crash_in_the_pending_slot_rolls_back_and_boots_the_old_version(tmp_path):
    st = _station(tmp_path, PENDING, "raise ValueError('bad release')")
    r = _boot(st)
    out = r.stdout.splitlines()
    assert out[:2] == ["RUN slot a 1.0.0 True", "ISOLATED"]
    assert out[-1] == "RUN root  soft", r  # booted again in-process, the root firmware
    p = _ptr(st)
    assert p["pending"] is None and p["tries"] == 0 and p["active"] == ""
    assert p["report"] == {"state": "rolled_back", "version": "1.0.0", "from": "0.2.0",
                           "reason": "crash on boot: ValueError: bad release"}  # fmt: skip


def test_crash_in_a_confirmed_slot_is_an_ordinary_crash(tmp_path):
    ptr = dict(PENDING, active="a", active_v="1.0.0", pending=None, pending_v=None)
    st = _station(tmp_path, ptr, "raise ValueError('later bug')")
    r = _boot(st)
    assert r.returncode == 1 and "ValueError: later bug" in r.stdout + r.stderr
    assert _ptr(st) == ptr  # nothing rolled back


def test_too_many_boots_or_an_incomplete_slot_roll_back_without_running_it(tmp_path):
    st = _station(tmp_path / "tries", dict(PENDING, tries=3))
    r = _boot(st)
    assert "RUN slot" not in r.stdout and "RUN root" in r.stdout
    assert _ptr(st)["report"]["reason"] == "not confirmed after 3 boots"
    st = _station(tmp_path / "inc", PENDING)
    (st / "app" / "a" / "manifest.json").unlink()
    r = _boot(st)
    assert "RUN slot" not in r.stdout and "RUN root" in r.stdout
    assert _ptr(st)["report"]["reason"] == "slot a incomplete"


def test_pointer_read_after_a_cut_write(tmp_path):
    # ota.json gone, complete ota.json.tmp (FAT: remove done, rename not): the temp counts
    st = _station(tmp_path / "tmp", None)
    (st / "ota.json.tmp").write_text(json.dumps(dict(PENDING, active="a", pending=None)))
    assert _boot(st).stdout.splitlines()[0] == "RUN slot a 0.2.0 False"
    # a torn temp file beside a good pointer: the pointer counts
    st = _station(tmp_path / "torn", dict(PENDING, active="a", active_v="1.0.0", pending=None))
    (st / "ota.json.tmp").write_text('{"active": "b", "pend')
    assert _boot(st).stdout.splitlines()[0] == "RUN slot a 1.0.0 False"
    # garbage and nothing else: the root firmware
    st = _station(tmp_path / "junk", None)
    (st / "ota.json").write_text("\x00\x00")
    assert _boot(st).stdout.splitlines()[0] == "RUN root None None"


def test_esp32_branch_resets_the_chip_after_a_rollback(tmp_path):
    # The real board.py picking the ESP32 board (no simulated board installed) with the
    # fake `machine`, whose reset() ends the process with code 75, as the chip would reset.
    st = _station(tmp_path, PENDING, "import board\n    raise ValueError('bad release')")
    shutil.copy(harness.FW / "board.py", st / "app" / "a" / "board.py")
    for name in ("boardbase.py", "board_esp32.py"):
        shutil.copy(harness.FW / "lib" / name, st / "app" / "a" / "lib" / name)
    r = _boot(st, extra_path=str(FAKES))
    assert r.returncode == 75, r  # machine.reset()
    assert "RUN root" not in r.stdout  # the next "boot" is the chip's, not in-process
    assert _ptr(st)["report"]["reason"] == "crash on boot: ValueError: bad release"
