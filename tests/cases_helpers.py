"""Starting real server processes for the supervision-loop tests, with an injected clock."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx
from conftest import REPO, Proc, wait_until

from envnet.devkit.services import free_port

SITE = REPO / "envnet" / "devkit" / "sites" / "shenyang.json"
KEYS = {"admin": "test-key", "duty": "duty-key", "hp": "heping-key", "tx": "tiexi-key"}
ROLES = "duty:duty_room,hp:unit:heping-nanhu-office,tx:unit:tiexi-yanfen-office"
# Near the real time: the webhook worker prunes events older than webhooks.keep_days by the
# system clock, and event times come from the cases clock.
T0 = float(int(time.time()))


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


class CaseWorld:
    """A store, a clock file and the env every server process of one test shares."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = tmp / "envnet.db"
        self.clock_file = tmp / "clock"
        self.photos = tmp / "photos"
        self.set_time(T0)
        self.procs: list[Proc] = []

    def set_time(self, t: float) -> None:
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(repr(float(t)))
        os.replace(tmp, self.clock_file)

    def env(self, port: int) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "ENVNET_STORE_PATH": str(self.db),
            "ENVNET_SERVER_LISTEN": f"127.0.0.1:{port}",
            "ENVNET_SERVER_API_KEY": KEYS["admin"],
            "ENVNET_SERVER_API_KEYS": f"duty:{KEYS['duty']},hp:{KEYS['hp']},tx:{KEYS['tx']}",
            "ENVNET_SERVER_KEY_ROLES": ROLES,
            "ENVNET_CASES_GRID_FILE": str(SITE),
            "ENVNET_CASES_CLOCK_FILE": str(self.clock_file),
            "ENVNET_CASES_TICK_S": "0.1",
            "ENVNET_CASES_PHOTOS_DIR": str(self.photos),
        }

    def server(self) -> tuple[Proc, str]:
        port = free_port()
        proc = Proc(["server"], self.env(port), self.tmp / f"server-{port}.log").start()
        self.procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 30,
                   what="server")  # fmt: skip
        return proc, base

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()
