"""The staged rollout against the real server, gateway and Mosquitto, with stations played by
protocol peers (tests/ota_helpers.StandIn: paho + httpx, following docs/ota.md)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Proc, wait_until
from ota_helpers import FLEET_KEY, StandIn, make_release

from envnet.devkit.services import Mosquitto, free_port
from envnet.store.state import SqliteStateStore

AUTH = {"Authorization": "Bearer test-key"}
TICK_S = 0.2


@pytest.fixture
def ota_env(envnet_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = dict(envnet_env)
    env.update(
        ENVNET_OTA_RELEASES_DIR=str(tmp_path / "releases"),
        ENVNET_OTA_FLEET_KEY=FLEET_KEY,
        ENVNET_OTA_TICK_S=str(TICK_S),
        ENVNET_OTA_RESEND_AFTER_S="30",
    )
    make_release(tmp_path / "releases", "1.3.0")
    return env


def start_server(env: dict[str, str], log: Path, **extra: str) -> tuple[Proc, str]:
    env = {**env, **extra}
    proc = Proc(["server"], env, log).start()
    base = f"http://{env['ENVNET_SERVER_LISTEN']}"
    wait_until(
        lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 20, what="server"
    )
    return proc, base


@pytest.fixture
def ota_server(ota_env: dict[str, str], tmp_path: Path, gateway: Proc) -> Iterator[str]:
    proc, base = start_server(ota_env, tmp_path / "server.log")
    yield base
    proc.stop()


@pytest.fixture
def fleet(ota_env: dict[str, str], mosquitto: Mosquitto) -> Iterator[Callable[..., StandIn]]:
    """fleet(id, group=..., district=..., behaviour=..., online=True) -> a registered stand-in."""
    store = SqliteStateStore(ota_env["ENVNET_STORE_PATH"])
    started: list[StandIn] = []

    def add(sid: str, group: str = "", district: str = "Heping", online: bool = True, **kw):
        meta = {"district": district, **({"group": group} if group else {})}
        store.register_station(sid, "air", meta)
        st = StandIn(mosquitto.port, sid, **kw)
        if online:
            st.start()
            started.append(st)
        return st

    yield add
    for st in started:
        st.c.loop_stop()
        st.c.disconnect()
    store.close()


def register(base: str, version: str = "1.3.0") -> None:
    r = httpx.post(f"{base}/ota/releases/{version}", headers=AUTH)
    assert r.status_code == 201, r.text


def start_rollout(base: str, **body) -> dict:
    r = httpx.post(f"{base}/ota/rollouts", json={"version": "1.3.0", **body}, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()


def rollout(base: str, rid: str) -> dict:
    return httpx.get(f"{base}/ota/rollouts/{rid}").json()


def wait_online(base: str, *ids: str) -> None:
    for sid in ids:
        wait_until(
            lambda sid=sid: httpx.get(f"{base}/ota/stations/{sid}").json()["current_version"],
            15,
            what=f"{sid} birth in the state store",
        )


def test_canary_fails_and_the_rest_never_receive_the_release(ota_server: str, fleet) -> None:
    """The issue's rollout case: the canary rolls back, the rollout pauses, nobody else is told."""
    canary = fleet("sy-canary-1", group="canary", behaviour="crash")
    rest = [fleet(f"sy-air-00{i}") for i in range(1, 4)]
    wait_online(ota_server, canary.id, *(s.id for s in rest))
    register(ota_server)
    r = start_rollout(ota_server, stages=["canary", "all"], failure_threshold=0.2)

    paused = wait_until(
        lambda: (x := rollout(ota_server, r["id"]))["state"] == "paused" and x, 20, what="pause"
    )
    assert "1 of 1 stations failed" in paused["reason"]
    assert "crash on boot" in paused["reason"]
    assert paused["stage"] == 0
    assert [t["station"] for t in paused["targets"]] == ["sy-canary-1"]
    assert paused["targets"][0]["state"] == "rolled_back"
    assert [c["op"] for c in canary.commands] == ["ota"]

    time.sleep(10 * TICK_S)  # ten more worker steps: still nobody else is told
    assert all(s.commands == [] for s in rest)
    assert rollout(ota_server, r["id"])["stages"][1]["stations"] == 0

    view = httpx.get(f"{ota_server}/ota/stations/sy-canary-1").json()
    assert view["current_version"] == "1.2.0"
    assert view["target_version"] == "1.3.0"
    assert view["update_state"] == "rolled_back"
    assert "ImportError" in view["reason"]
    assert view["last_report"]["state"] == "rolled_back"
    others = httpx.get(f"{ota_server}/ota/stations").json()
    assert {v["id"]: v["update_state"] for v in others if v["id"] != "sy-canary-1"} == {
        s.id: None for s in rest
    }


def test_stages_advance_only_after_every_canary_confirmed(ota_server: str, fleet) -> None:
    canaries = [fleet(f"sy-canary-{i}", group="canary") for i in (1, 2)]
    # The second canary is slow: the first confirms long before it; "all" must still wait.
    slow = canaries[1]
    slow.behaviour = "silent"
    rest = [fleet(f"sy-air-00{i}") for i in range(1, 4)]
    wait_online(ota_server, *(s.id for s in canaries + rest))
    register(ota_server)
    r = start_rollout(ota_server, stages=["canary", "all"], failure_threshold=0.0)

    wait_until(lambda: canaries[0].fw == "1.3.0", 20, what="first canary updated")
    wait_until(
        lambda: rollout(ota_server, r["id"])["stages"][0]["confirmed"] == 1, 10, what="confirmed"
    )
    time.sleep(10 * TICK_S)
    assert all(s.commands == [] for s in rest), "stage 2 started before every canary confirmed"

    # The slow canary finally reboots into the new version and confirms.
    slow.reboot_and_confirm("1.3.0")
    done = wait_until(
        lambda: (x := rollout(ota_server, r["id"]))["state"] == "completed" and x, 30, what="done"
    )
    assert [s["confirmed"] for s in done["stages"]] == [2, 3]
    wait_until(lambda: all(s.fw == "1.3.0" for s in rest), 10, what="rest updated")
    # Exactly one command per station: no double sends.
    assert all(len(s.commands) == 1 for s in canaries + rest)
    views = {v["id"]: v for v in httpx.get(f"{ota_server}/ota/stations").json()}
    wait_until(
        lambda: all(
            v["current_version"] == "1.3.0" for v in httpx.get(f"{ota_server}/ota/stations").json()
        ),
        10,
        what="new fw in births",
    )
    assert {v["update_state"] for v in views.values()} == {"confirmed"}


def test_offline_station_gets_the_command_when_it_comes_back(ota_server: str, fleet) -> None:
    fleet("sy-canary-1", group="canary")
    late = fleet("sy-air-001", online=False)
    wait_online(ota_server, "sy-canary-1")
    register(ota_server)
    r = start_rollout(ota_server, stages=["canary", "all"])
    wait_until(lambda: rollout(ota_server, r["id"])["stage"] == 1, 20, what="stage all reached")
    time.sleep(5 * TICK_S)
    t = rollout(ota_server, r["id"])["targets"][1]
    assert (t["station"], t["state"], t["attempts"]) == ("sy-air-001", "pending", 0)

    late.start()
    wait_until(lambda: rollout(ota_server, r["id"])["state"] == "completed", 20, what="completed")
    assert late.fw == "1.3.0" and len(late.commands) == 1


def test_station_restarted_mid_download_is_asked_again(ota_server: str, fleet) -> None:
    canary = fleet("sy-canary-1", group="canary", behaviour="power_cut")
    wait_online(ota_server, canary.id)
    register(ota_server)
    r = start_rollout(ota_server, stages=["canary"])
    done = wait_until(
        lambda: (x := rollout(ota_server, r["id"]))["state"] == "completed" and x, 20, what="done"
    )
    assert done["targets"][0]["attempts"] == 2
    assert [c["id"] for c in canary.commands] == [f"ota-{r['id']}-1", f"ota-{r['id']}-2"]
    assert canary.fw == "1.3.0"


def test_no_answer_within_the_deadline_pauses(ota_server: str, fleet) -> None:
    canary = fleet("sy-canary-1", group="canary", behaviour="silent")
    fleet("sy-air-001")
    wait_online(ota_server, canary.id, "sy-air-001")
    register(ota_server)
    r = start_rollout(ota_server, stages=["canary", "all"], stage_deadline_s=2)
    paused = wait_until(
        lambda: (x := rollout(ota_server, r["id"]))["state"] == "paused" and x, 20, what="pause"
    )
    t = paused["targets"][0]
    assert t["state"] == "timed_out" and "no confirmation within 2 s" in t["reason"]
    assert "last state switching" in t["reason"]

    # The technician looks, accepts the failure and resumes: the rest of the fleet goes on.
    r2 = httpx.post(f"{ota_server}/ota/rollouts/{r['id']}/resume", json={}, headers=AUTH)
    assert r2.status_code == 200, r2.text
    done = wait_until(
        lambda: (x := rollout(ota_server, r["id"]))["state"] == "completed" and x, 20, what="done"
    )
    assert done["targets"][0]["waived"] is True


def test_pause_resume_cancel_by_hand_need_the_key(
    ota_server: str, ota_env: dict[str, str], fleet
) -> None:
    fleet("sy-canary-1", group="canary", behaviour="silent")
    fleet("sy-air-001")
    wait_online(ota_server, "sy-canary-1", "sy-air-001")
    assert httpx.post(f"{ota_server}/ota/rollouts", json={"version": "1.3.0"}).status_code == 401
    r = httpx.post(f"{ota_server}/ota/rollouts", json={"version": "1.3.0"}, headers=AUTH)
    assert r.status_code == 409 and "not registered" in r.text
    register(ota_server)
    rid = start_rollout(ota_server)["id"]
    # One active rollout at a time.
    again = httpx.post(f"{ota_server}/ota/rollouts", json={"version": "1.3.0"}, headers=AUTH)
    assert again.status_code == 409 and rid in again.text

    url = f"{ota_server}/ota/rollouts/{rid}"
    assert httpx.post(f"{url}/pause").status_code == 401
    p = httpx.post(f"{url}/pause", json={"reason": "bureau holiday"}, headers=AUTH)
    assert p.status_code == 200 and p.json()["state"] == "paused"
    assert p.json()["reason"] == "bureau holiday"
    assert httpx.post(f"{url}/pause", headers=AUTH).status_code == 409
    assert httpx.post(f"{url}/resume", headers=AUTH).json()["state"] == "running"
    assert httpx.post(f"{url}/cancel", headers=AUTH).json()["state"] == "cancelled"
    assert httpx.post(f"{url}/resume", headers=AUTH).status_code == 409

    store = SqliteStateStore(ota_env["ENVNET_STORE_PATH"])
    rows = store.query(
        "SELECT actor, action FROM audit WHERE target=? ORDER BY id", (f"rollout:{rid}",)
    )
    store.close()
    assert [tuple(x) for x in rows] == [
        ("admin", "ota.rollout.start"),
        ("admin", "ota.rollout.pause"),
        ("admin", "ota.rollout.resume"),
        ("admin", "ota.rollout.cancel"),
    ]


def test_two_server_processes_do_not_double_send(
    ota_server: str, ota_env: dict[str, str], tmp_path: Path, fleet
) -> None:
    second, _ = start_server(
        ota_env, tmp_path / "server2.log", ENVNET_SERVER_LISTEN=f"127.0.0.1:{free_port()}"
    )
    try:
        stations = [fleet("sy-canary-1", group="canary")] + [
            fleet(f"sy-air-{i:03d}") for i in range(1, 9)
        ]
        wait_online(ota_server, *(s.id for s in stations))
        register(ota_server)
        r = start_rollout(ota_server)
        wait_until(
            lambda: rollout(ota_server, r["id"])["state"] == "completed", 30, what="completed"
        )
        time.sleep(5 * TICK_S)
        assert [len(s.commands) for s in stations] == [1] * len(stations)
    finally:
        second.stop()
    assert "rollout step failed" not in second.output()


def envnet_ota(base: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENVNET_URL": base, "ENVNET_API_KEY": "test-key", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "envnet.cli", "ota", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_technician_runs_a_rollout_from_the_terminal(ota_server: str, fleet) -> None:
    """`envnet ota`: group, register, start, watch, resume after the canary failed."""
    canary = fleet("sy-pole-17", behaviour="crash")  # no group yet
    rest = [fleet(f"sy-air-00{i}") for i in (1, 2)]
    wait_online(ota_server, canary.id, *(s.id for s in rest))
    out = envnet_ota(ota_server, "group", "sy-pole-17", "canary")
    assert out.returncode == 0 and "sy-pole-17: group canary" in out.stdout, out.stderr
    assert envnet_ota(ota_server, "register", "1.3.0").returncode == 0
    bad = envnet_ota(ota_server, "register", "9.9.9")
    assert bad.returncode == 1 and "404" in bad.stderr
    out = envnet_ota(ota_server, "start", "1.3.0", "--stage", "canary", "--stage", "all")
    assert out.returncode == 0 and "running" in out.stdout, out.stderr
    rid = httpx.get(f"{ota_server}/ota/rollouts").json()[0]["id"]
    wait_until(lambda: rollout(ota_server, rid)["state"] == "paused", 20, what="pause")

    out = envnet_ota(ota_server, "stations", "--state", "rolled_back")
    assert out.returncode == 0
    assert "sy-pole-17" in out.stdout and "ImportError" in out.stdout
    assert "sy-air-001" not in out.stdout
    out = envnet_ota(ota_server, "status", rid)
    assert "paused" in out.stdout and "1 of 1 stations failed" in out.stdout

    out = envnet_ota(ota_server, "resume", rid)  # the canary's failure accepted: go on
    assert out.returncode == 0, out.stderr
    wait_until(lambda: rollout(ota_server, rid)["state"] == "completed", 20, what="completed")
    out = envnet_ota(ota_server, "status", rid, "--json")
    assert json.loads(out.stdout)["stages"][1]["confirmed"] == 2
    assert all(s.fw == "1.3.0" for s in rest) and canary.fw == "1.2.0"


# -- with the real firmware on the MicroPython unix port ------------------------------------
def _harness():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "firmware"))
    import harness

    return harness


class RealFleet:
    """Registered stations running the real firmware (tests/firmware/harness.OtaStation, as
    `envnet sim` starts them) with a fleet key, and a server serving `releases`."""

    def __init__(self, ota_env: dict[str, str], tmp_path: Path, port: int, ids: list[str]):
        self.harness = _harness()
        self.key = secrets.token_bytes(32)
        self.releases = tmp_path / "releases-fw"
        self.tmp = tmp_path
        store = SqliteStateStore(ota_env["ENVNET_STORE_PATH"])
        for sid in ids:  # sy-canary-1 is in group "canary", sy-air-00n in group "air"
            store.register_station(sid, "air", {"district": "Heping", "group": sid.split("-")[1]})
        store.close()
        self.stations = [
            self.harness.OtaStation(tmp_path / sid, port, self.key.hex(), sid, health_s=2)
            for sid in ids
        ]
        self.proc, self.base = start_server(
            ota_env,
            tmp_path / "server.log",
            ENVNET_OTA_RELEASES_DIR=str(self.releases),
            ENVNET_OTA_FLEET_KEY=self.key.hex(),
        )

    def build(self, version: str, crash: str | None = None) -> None:
        """`envnet release` (envnet.domain.ota.bundle) of the repo's firmware, or of a copy whose
        station module raises `crash` on import."""
        fw = None
        if crash:
            fw = self.harness.firmware_copy(self.tmp / f"fw-{version}")
            st = fw / "lib" / "station.py"
            st.write_text(f"raise RuntimeError({crash!r})\n" + st.read_text())
        self.harness.build_release(self.releases, version, self.key, firmware=fw)

    def start(self) -> None:
        for s in self.stations:
            s.start()
        for s in self.stations:
            s.wait_birth("0.2.0")
        wait_online(self.base, *(s.id for s in self.stations))

    def rollout(self, version: str) -> str:
        register(self.base, version)
        body = {"version": version, "stages": ["canary", "all"]}
        r = httpx.post(f"{self.base}/ota/rollouts", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def close(self) -> None:
        for s in self.stations:
            s.close()
        self.proc.stop()


@pytest.fixture
def real_fleet(
    ota_env: dict[str, str], tmp_path: Path, gateway: Proc, mosquitto: Mosquitto
) -> Iterator[RealFleet]:
    ids = ["sy-canary-1", "sy-air-001", "sy-air-002", "sy-air-003", "sy-air-004"]
    f = RealFleet(ota_env, tmp_path, mosquitto.port, ids)
    yield f
    f.close()


def test_real_firmware_canary_crashes_and_the_rest_never_receive_the_release(
    real_fleet: RealFleet,
) -> None:
    """The issue's case. Five stations on the real firmware; a release built by `envnet
    release` whose station module raises on import. The canary rolls back by itself and says
    why; the server pauses; the other four are never told."""
    f = real_fleet
    f.build("9.3.0", crash="boom in 9.3.0")
    f.start()
    rid = f.rollout("9.3.0")

    canary = f.stations[0]
    back = canary.wait_ota("rolled_back", "9.3.0", timeout=90)
    assert "boom in 9.3.0" in back["reason"]
    paused = wait_until(
        lambda: (x := rollout(f.base, rid))["state"] == "paused" and x, 30, what="pause"
    )
    assert "boom in 9.3.0" in paused["reason"]
    assert [(t["station"], t["state"]) for t in paused["targets"]] == [
        ("sy-canary-1", "rolled_back")
    ]
    time.sleep(3)  # fifteen more worker steps
    for s in f.stations[1:]:
        cmds = [t for t, _, _ in s.sub.messages if t == s.topic("cmd")]
        assert cmds == [], f"{s.id} was sent {cmds}"
        assert s.ota_reports() == []
    # The old version runs again: its birth says so, and so does the server.
    view = wait_until(
        lambda: (
            (v := httpx.get(f"{f.base}/ota/stations/sy-canary-1").json())["current_version"]
            == "0.2.0"
            and v
        ),
        30,
        what="canary back on 0.2.0",
    )
    assert view["update_state"] == "rolled_back" and "boom" in view["reason"]


def test_real_firmware_rollout_completes_stage_by_stage(real_fleet: RealFleet) -> None:
    """A good release: the canary confirms first, then the four others; every station runs it
    and the server shows it. Prints the time per stage and per station."""
    f = real_fleet
    f.build("9.1.0")
    f.start()
    t0 = time.monotonic()
    rid = f.rollout("9.1.0")
    done = wait_until(
        lambda: (x := rollout(f.base, rid))["state"] in ("completed", "paused") and x,
        120,
        what="rollout end",
    )
    total = time.monotonic() - t0
    assert done["state"] == "completed", done["reason"]
    assert [(s["stations"], s["confirmed"]) for s in done["stages"]] == [(1, 1), (4, 4)]
    by = {t["station"]: t for t in done["targets"]}
    canary = httpx.get(f"{f.base}/ota/stations/sy-canary-1").json()
    canary_done = canary["last_report"]["received_at"]
    # Nobody in stage 2 was sent the command before the canary had confirmed.
    assert all(by[s.id]["first_sent_at"] >= canary_done for s in f.stations[1:])
    views = httpx.get(f"{f.base}/ota/stations").json()
    assert {v["id"]: v["current_version"] for v in views} == {s.id: "9.1.0" for s in f.stations}
    for s in f.stations:
        s.wait_birth("9.1.0", timeout=10)
        assert len([t for t, _, _ in s.sub.messages if t == s.topic("cmd")]) == 1
    per_station = [v["last_report"]["received_at"] - by[v["id"]]["first_sent_at"] for v in views]
    print(
        f"\nrollout of 5 real-firmware stations: {total:.1f} s;"
        f" command -> confirmed per station: min {min(per_station):.1f} s,"
        f" max {max(per_station):.1f} s"
    )


def test_real_firmware_power_cut_mid_download_is_asked_again(real_fleet: RealFleet) -> None:
    """The canary loses power while downloading (SIGKILL at the firmware's `download` stall
    point); it boots the old version, the server sees the new birth and sends the command
    again, and the rollout completes."""
    f = real_fleet
    f.build("9.1.0")
    f.start()
    canary = f.stations[0]
    canary.set_sim(ota_stall="download")
    rid = f.rollout("9.1.0")
    canary.wait_log("ota: stall at download", timeout=30)
    canary.kill()
    canary.set_sim()
    canary.start()
    done = wait_until(
        lambda: (x := rollout(f.base, rid))["state"] in ("completed", "paused") and x,
        120,
        what="rollout end",
    )
    assert done["state"] == "completed", done["reason"]
    target = next(t for t in done["targets"] if t["station"] == canary.id)
    assert target["attempts"] == 2
    canary.wait_birth("9.1.0", timeout=10)
