"""`envnet sim` SIGKILLed: its station processes die with it instead of publishing on as
orphans (PR_SET_PDEATHSIG, envnet/devkit/sim.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conftest import Proc, wait_until


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stations_die_with_a_sigkilled_simulator(tmp_path, mosquitto, envnet_env):
    sim = Proc(
        ["sim", "--air", "2", "--water", "1", "--interval", "1", "--dir", str(tmp_path / "sim")],
        envnet_env,
        tmp_path / "sim.log",
    ).start()
    assert sim.p is not None
    stations = wait_until(
        lambda: len(kids := _children(sim.p.pid)) >= 3 and kids, 30, what="3 station processes"
    )
    time.sleep(1.0)
    assert all(_alive(p) for p in stations)
    os.kill(sim.p.pid, signal.SIGKILL)
    sim.p.wait(10)
    wait_until(lambda: not any(_alive(p) for p in stations), 10, what="the stations to die")
