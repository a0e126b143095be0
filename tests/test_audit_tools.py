"""The command-line tools write their audit rows: `envnet provision` (as --actor or the OS
user) and `envnet console` (as --user or the OS user) against the real firmware on the
MicroPython unix port behind a pseudo-terminal (envnet/devkit/ptyboard.py)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import serial
from conftest import wait_until
from typer.testing import CliRunner

from envnet.cli import app
from envnet.devkit.ptyboard import PtyBoard
from envnet.store import audit
from envnet.store.audit import query_audit
from envnet.store.state import SqliteStateStore
from envnet.tools import console, flash
from envnet.tools import provision as pv

pytestmark = pytest.mark.skipif(
    not Path(pv.MOSQUITTO_PASSWD).exists(), reason="mosquitto_passwd not installed"
)
SID = "sy-air-hp-07"


def rows(db: Path, **kw) -> list[dict]:
    store = SqliteStateStore(db)
    try:
        return [r.to_dict() for r in query_audit(store, **kw)[0]]
    finally:
        store.close()


def provision_cli(tmp_path: Path, sid: str, *extra: str):
    env = {"ENVNET_STORE_PATH": str(tmp_path / "envnet.db")}
    args = ["provision", sid, "--kind", "air", "--site", "Heping Rd", "--board", "sim-air"]
    args += ["--district", "和平区", "--out", str(tmp_path / "st"), *extra]
    return CliRunner().invoke(app, args, env=env)


def test_provision_records_who_provisioned_what(tmp_path: Path) -> None:
    r = provision_cli(tmp_path, "sy-air-hp-01", "--actor", "tech-zhang")
    assert r.exit_code == 0, r.output
    r = provision_cli(tmp_path, "sy-air-hp-02")
    assert r.exit_code == 0, r.output
    # a refused provisioning (already provisioned) writes nothing
    assert provision_cli(tmp_path, "sy-air-hp-01", "--actor", "tech-zhang").exit_code == 2
    got = rows(tmp_path / "envnet.db", action="station.provision")
    assert [(g["actor"], g["target"]) for g in got] == [
        (audit.os_user(), "sy-air-hp-02"),
        ("tech-zhang", "sy-air-hp-01"),
    ]
    d = got[1]["detail"]
    assert d["kind"] == "air" and d["board"] == "sim-air" and d["mqtt_user"] == "sy-air-hp-01"
    assert d["meta"]["district"] == "和平区" and d["meta"]["site"] == "Heping Rd"
    password = json.loads((tmp_path / "st/sy-air-hp-01/config.json").read_text())["mqtt"]
    raw = (tmp_path / "envnet.db").read_bytes()
    assert password["password"].encode() not in raw  # the MQTT password is not in the trail


@pytest.fixture
def station(tmp_path: Path):
    """A provisioned station flashed onto a pty board and running its firmware."""
    out = tmp_path / "st"
    pv.provision(
        SID, "air", "Heping Rd", "sim-air", out, "mqtt://127.0.0.1:1", tmp_path / "fleet.db",
        out / "passwd", out / "acl", actor="tech",
    )  # fmt: skip
    b = PtyBoard.flashed(tmp_path / "flash").start()
    try:
        (res,) = flash.flash([b.device], out / SID, mpy=True, show_progress=False)
        with serial.Serial(b.device, 115200, timeout=0.2) as s:
            # "Reset": run the flashed main.py as the board does at boot (as __main__).
            s.write(b"exec(open('main.py').read(), {'__name__': '__main__'})\r")
            wait_until(lambda: b"boot 1" in s.read(4096), 15, what="firmware boot")
        yield b
    finally:
        b.stop()


def test_console_changes_are_recorded_as_the_console_user(tmp_path: Path, station) -> None:
    db = tmp_path / "audit.db"
    env = {"ENVNET_STORE_PATH": str(db)}

    def con(*words: str, user: str | None = "field-li") -> dict:
        args = ["console", station.device, *words, "--json"]
        args += ["--user", user] if user else []
        r = CliRunner().invoke(app, args, env=env)
        assert r.exit_code in (0, 1), r.output
        return json.loads(r.output.strip().splitlines()[-1])

    assert con("status")["station_id"] == SID
    assert con("config", "set", "interval_s", "30")["changed"] == ["interval_s"]
    assert con("config", "set", "interval_s", "30")["changed"] == []  # no change: no row
    cal = con("calibrate", "pms", "param=pm25", "offset=1.5")
    assert cal["result"] == {"param": "pm25", "offset": 1.5}
    assert con("maint", "on")["maint"] is True
    assert con("maint", "on")["maint"] is True  # already on: the window started before
    assert con("config", "set", "wifi.password", "hunter2-secret")["ok"]
    assert con("config", "set", "station_id", "x")["ok"] is False  # refused: no row
    assert con("calibrate", "nope", "x=1")["ok"] is False
    assert con("maint", "off", user=None)["maint"] is False  # no --user: the OS user
    assert con("readings")["ok"]  # reads are not recorded

    got = rows(db)
    assert [(g["actor"], g["action"]) for g in reversed(got)] == [
        ("field-li", "station.config.set"),
        ("field-li", "station.calibrate"),
        ("field-li", "station.maint.start"),
        ("field-li", "station.config.set"),
        (audit.os_user(), "station.maint.end"),
    ]
    assert {g["target"] for g in got} == {SID}
    cfg, cal_row, *_ = reversed(got)
    assert cfg["detail"] == {
        "key": "interval_s", "old": 60, "new": 30, "via": "console", "port": station.device
    }  # fmt: skip
    assert cal_row["detail"]["sensor"] == "pms"
    assert cal_row["detail"]["args"] == {"param": "pm25", "offset": 1.5}
    assert cal_row["detail"]["result"] == {"param": "pm25", "offset": 1.5}
    assert got[1]["detail"]["key"] == "wifi.password" and got[1]["detail"]["new"] == "***"
    assert b"hunter2-secret" not in db.read_bytes()
    # the maintenance window, findable as such
    window = rows(db, action="station.maint", target=SID)
    assert [w["action"] for w in window] == ["station.maint.end", "station.maint.start"]
    # the station really is out of maintenance again, and its readings say so too
    assert con("status")["maint"] is False

    # a change the trail cannot record is still shown, and said loudly (exit 4)
    r = CliRunner().invoke(
        app,
        ["console", station.device, "config", "set", "sample_s", "3"],
        env={"ENVNET_STORE_PATH": str(tmp_path)},  # a directory: no database there
    )
    assert r.exit_code == 4 and "changed = ['sample_s']" in r.output
    assert "could not record it" in r.output

    # reboot is recorded; the station comes back
    assert con("reboot")["ok"]
    assert rows(db, action="station.reboot")[0]["actor"] == "field-li"
    wait_until(lambda: console.one_shot(station.device, ["status"], 2)["ok"], 20, what="reboot")


def test_interactive_console_records_accepted_changes(
    tmp_path: Path, station, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "audit.db"
    lines = "status\nmaint on\nconfig set sample_s 2\nconfig set nope 1\nmaint off --json\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    to = console.AuditTo(db, "field-wu")
    console.interactive(station.device, linger=1.5, audit_to=to)
    out = capsys.readouterr().out
    assert "maint = True" in out and "changed = ['sample_s']" in out and "error:" in out
    assert '"maint": false' in out  # --json typed by the user: JSON back
    got = [(g["actor"], g["action"], g["detail"].get("key")) for g in reversed(rows(db))]
    assert got == [
        ("field-wu", "station.maint.start", None),
        ("field-wu", "station.config.set", "sample_s"),
        ("field-wu", "station.maint.end", None),
    ]
