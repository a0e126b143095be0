"""envnet flash + envnet console against the real firmware on the MicroPython unix port.

The "board" is `micropython` (its REPL, then the flashed main.py in the same process) behind
a pseudo-terminal (envnet/devkit/ptyboard.py). The real mpremote copies and verifies the
files; the real pyserial console then reads status and live readings from that process,
which publishes with its provisioned credentials through a real Mosquitto with the ACL.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import serial
from conftest import wait_until
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from envnet.cli import app
from envnet.devkit.ptyboard import PtyBoard
from envnet.devkit.services import Mosquitto, free_port
from envnet.tools import console, flash
from envnet.tools import provision as pv

SID = "sy-air-hp-01"


@pytest.fixture
def provisioned(tmp_path: Path):
    out = tmp_path / "stations"
    port = free_port()
    cfg = pv.provision(
        SID,
        "air",
        "Heping Rd",
        "sim-air",
        out,
        f"mqtt://127.0.0.1:{port}",
        tmp_path / "envnet.db",
        out / "mosquitto.passwd",
        out / "mosquitto.acl",
        {"district": "和平区"},
    )
    pv.add_password(out / "mosquitto.passwd", "ops", "ops-secret")
    with open(out / "mosquitto.acl", "a") as f:
        f.write("\nuser ops\ntopic read envnet/#\n")
    with Mosquitto(tmp_path / "mq", port, out / "mosquitto.passwd", out / "mosquitto.acl") as mq:
        yield out, cfg, mq


def board(path: Path) -> PtyBoard:
    return PtyBoard.flashed(path).start()


def test_the_flashed_file_list_holds_no_simulation_only_file(tmp_path: Path) -> None:
    out = tmp_path / "stations"
    pv.provision(
        SID, "air", "x", "sim-air", out, "mqtt://127.0.0.1:1883", tmp_path / "db",
        out / "passwd", out / "acl",
    )  # fmt: skip
    sim_only = flash.sim_only_modules()
    assert sim_only >= {"board_sim.py", "simsensors.py"}
    for mpy in (False, True):
        items = flash.plan_files(out / SID, mpy, tmp_path / f"build{mpy}")
        dests = {it.dest for it in items}
        names = {Path(d).name for d in dests} | {Path(d).stem + ".py" for d in dests}
        assert not names & sim_only, sorted(names & sim_only)
        assert not any(Path(it.src).parent.name == flash.SIM_ONLY_DIR for it in items)
        assert {"main.py", "board.json", "config.json"} <= dests
        assert ("lib/board_esp32.mpy" if mpy else "lib/board_esp32.py") in dests
    # a copy of a simulated-board module left in lib/ is not flashed either
    fw = tmp_path / "fw"
    shutil.copytree(flash.FIRMWARE, fw, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(fw / "sim" / "simsensors.py", fw / "lib" / "simsensors.py")
    assert "lib/simsensors.py" not in {d for _, d in flash.device_sources(fw)}


def test_flash_verify_run_then_console_reads_status_and_live_readings(
    tmp_path: Path, provisioned
) -> None:
    out, cfg, mq = provisioned
    flashdir = tmp_path / "flash"
    flashdir.mkdir()
    # The station has run before: its seq must survive a re-flash.
    (flashdir / "seq.json").write_text('{"next": 500, "boot": 7}')
    seq_before = (flashdir / "seq.json").read_bytes()
    b = board(flashdir)
    got: list[dict] = []
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="ops")
    sub.username_pw_set("ops", "ops-secret")
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    sub.connect("127.0.0.1", mq.port)
    sub.subscribe(f"envnet/v1/{SID}/reading", qos=1)
    sub.loop_start()
    try:
        r = CliRunner().invoke(
            app, ["flash", b.device, "--station", SID, "--dir", str(out), "--mpy"]
        )
        assert r.exit_code == 0, r.output
        line = next(ln for ln in r.output.splitlines() if ln.startswith(f"{b.device}: ok"))
        assert "files," in line and "bytes," in line and "verified by SHA-256" in line
        assert (flashdir / "main.py").is_file() and (flashdir / "lib/station.mpy").is_file()
        assert json.loads((flashdir / "config.json").read_text()) == cfg
        assert json.loads((flashdir / "board.json").read_text())["profile"] == "sim-air"
        assert (flashdir / "seq.json").read_bytes() == seq_before
        print(line)

        # "Reset": run the flashed main.py in the same MicroPython process.
        with serial.Serial(b.device, 115200, timeout=0.2) as s:
            s.write(b"import main\r")
            wait_until(lambda: b"boot 8" in s.read(4096), 10, what="firmware boot")

        st = console.one_shot(b.device, ["status"])
        assert st["ok"] and st["station_id"] == SID and st["boot"] == 8
        assert st["next_seq"] >= 500  # seq continued, not restarted
        wait_until(lambda: console.one_shot(b.device, ["mqtt"])["connected"], 15, what="mqtt")
        # Field staff speed the station up from the console (real config set path).
        for key, value in (("sample_s", "0.2"), ("interval_s", "1")):
            res = console.one_shot(b.device, ["config", "set", key, value])
            assert res["ok"], res
        rd = wait_until(
            lambda: (x := console.one_shot(b.device, ["readings"]))["last"] and x,
            15,
            what="a live reading on the console",
        )
        assert "pm25" in rd["values"]
        wait_until(lambda: got, 10, what="readings on the broker under the station's id")
        assert got[0]["seq"] >= 500
        # The CLI one-shot form, as a script would use it.
        r = CliRunner().invoke(app, ["console", b.device, "status", "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["station_id"] == SID
        r = CliRunner().invoke(app, ["console", b.device, "readings"])
        assert r.exit_code == 0 and "values:" in r.output and "pm25 =" in r.output
        r = CliRunner().invoke(app, ["console", b.device, "config", "set", "station_id", "x"])
        assert r.exit_code == 1 and "error:" in r.output

        # Re-flash the running station (mpremote's Ctrl-C stops the firmware, as on a board):
        # its seq continues after the next boot instead of restarting.
        seq_seen = console.one_shot(b.device, ["status"])["next_seq"]
        r = CliRunner().invoke(app, ["flash", b.device, "--station", SID, "--dir", str(out)])
        assert r.exit_code == 0, r.output
        with serial.Serial(b.device, 115200, timeout=0.2) as s:
            s.write(b"import main\r")
            wait_until(lambda: b"boot 9" in s.read(4096), 10, what="firmware boot after re-flash")
        st = console.one_shot(b.device, ["status"])
        assert st["boot"] == 9 and st["next_seq"] > seq_seen
    finally:
        sub.loop_stop()
        sub.disconnect()
        b.stop()


def test_flash_several_ports_in_parallel_and_reflash_keeps_seq(tmp_path: Path) -> None:
    out = tmp_path / "stations"
    pv.provision(
        SID, "air", "x", "sim-air", out, "mqtt://127.0.0.1:1883", tmp_path / "db",
        out / "passwd", out / "acl",
    )  # fmt: skip
    boards = [board(tmp_path / f"flash{i}") for i in range(3)]
    try:
        (tmp_path / "flash0/seq.json").write_text('{"next": 33, "boot": 2}')
        (tmp_path / "flash0/lib/").mkdir()
        (tmp_path / "flash0/lib/station.py").write_text("stale = True\n")
        t0 = time.monotonic()
        results = flash.flash([b.device for b in boards], out / SID, mpy=True, show_progress=False)
        wall = time.monotonic() - t0
        assert all(r.ok for r in results), [r.error for r in results]
        assert len({r.files for r in results}) == 1 and results[0].bytes > 20_000
        # Parallel: the wall time is well under the sum of the per-port times.
        assert wall < sum(r.seconds for r in results)
        assert (tmp_path / "flash0/seq.json").read_text() == '{"next": 33, "boot": 2}'
        assert not (tmp_path / "flash0/lib/station.py").exists()  # would shadow station.mpy
        for r in results:
            print(f"{r.port}: {r.files} files, {r.bytes} B, {r.seconds:.2f} s (wall {wall:.2f})")
    finally:
        for b in boards:
            b.stop()


def test_flash_detects_a_file_that_differs_on_the_board(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "stations"
    pv.provision(
        SID, "air", "x", "sim-air", out, "mqtt://127.0.0.1:1883", tmp_path / "db",
        out / "passwd", out / "acl",
    )  # fmt: skip
    b = board(tmp_path / "flash")
    real = flash.FileItem.sha256
    monkeypatch.setattr(
        flash.FileItem,
        "sha256",
        lambda self: "0" * 64 if self.dest == "config.json" else real(self),
    )
    try:
        (r,) = flash.flash([b.device], out / SID, show_progress=False)
        assert not r.ok and r.mismatched == ["config.json"] and "differ" in r.error
    finally:
        b.stop()


def test_console_clear_messages_for_silent_busy_missing_and_repl(tmp_path: Path) -> None:
    # Missing port.
    r = CliRunner().invoke(app, ["console", "/dev/nonexistent-tty", "status"])
    assert r.exit_code == 3 and "no such port" in r.output
    # Silent: a pty with nobody on the other side.
    master, slave = os.openpty()
    try:
        t = time.monotonic()
        with pytest.raises(console.ConsoleError, match="silent"):
            console.one_shot(os.ttyname(slave), ["status"], timeout=0.5)
        assert time.monotonic() - t < 3
    finally:
        os.close(master)
        os.close(slave)
    # The REPL instead of the firmware (e.g. main.py stopped with Ctrl-C).
    b = board(tmp_path / "flash")
    try:
        with pytest.raises(console.ConsoleError, match="REPL"):
            console.one_shot(b.device, ["status"], timeout=1.0)
        # Busy: another program holds the port.
        holder = console.open_port(b.device)
        try:
            with pytest.raises(console.ConsoleError, match="busy"):
                console.one_shot(b.device, ["status"], timeout=0.5)
        finally:
            holder.close()
    finally:
        b.stop()


def test_console_waits_through_a_reboot(tmp_path: Path) -> None:
    # A board that prints a boot banner first and answers only after "booting".
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)

    def fake_board() -> None:
        buf = b""
        while b"--json" not in buf:
            buf += os.read(master, 1024)
        os.write(master, b"rst:0x1 (POWERON_RESET)\nboot: ok\n")
        time.sleep(0.8)
        os.write(master, b'0.1 I boot 3\n{"id": "console", "ok": true, "boot": 3}\n')

    th = threading.Thread(target=fake_board, daemon=True)
    th.start()
    try:
        res = console.one_shot(os.ttyname(slave), ["status"], timeout=0.6)
        assert res == {"id": "console", "ok": True, "boot": 3}
    finally:
        th.join(3)
        os.close(master)
        os.close(slave)


def test_interactive_console_with_piped_commands(tmp_path: Path) -> None:
    # A fake station answering each line, so the interactive path is exercised end to end.
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    stop = threading.Event()

    def fake_board() -> None:
        buf = b""
        while not stop.is_set():
            try:
                buf += os.read(master, 1024)
            except OSError:
                return
            while b"\r" in buf:
                line, buf = buf.split(b"\r", 1)
                if line.strip():
                    os.write(master, b"echo " + line.strip() + b"\n")

    th = threading.Thread(target=fake_board, daemon=True)
    th.start()
    try:
        r = CliRunner().invoke(app, ["console", os.ttyname(slave)], input="status\nlog\n")
        assert r.exit_code == 0, r.output
        assert "connected to" in r.output
        assert "echo status" in r.output and "echo log" in r.output
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
        th.join(2)


def test_flash_reports_a_missing_port_and_an_unprovisioned_station(tmp_path: Path) -> None:
    out = tmp_path / "stations"
    pv.provision(
        SID, "air", "x", "sim-air", out, "mqtt://127.0.0.1:1883", tmp_path / "db",
        out / "passwd", out / "acl",
    )  # fmt: skip
    r = CliRunner().invoke(
        app, ["flash", "/dev/nonexistent-tty", "--station", SID, "--dir", str(out)]
    )
    assert r.exit_code == 1 and "/dev/nonexistent-tty: FAILED" in r.output
    r = CliRunner().invoke(app, ["flash", "/dev/null", "--station", "sy-nope", "--dir", str(out)])
    assert r.exit_code == 2 and "run `envnet provision` first" in r.output
