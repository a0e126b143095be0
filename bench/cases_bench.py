"""Supervision-loop benchmark (not in the test suite): the scheduler's time for one pass over
10,000 open cases, and GET /cases?overdue=true p99 with 10,000 cases on a real server process.

    PYTHONPATH=. .venv/bin/python bench/cases_bench.py [--cases 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from envnet.config import load_config
from envnet.devkit.services import free_port
from envnet.domain.cases import CaseClock, deadlines, load_policy
from envnet.store.case_schedule import CaseScheduler
from envnet.store.cases import CaseStore
from envnet.store.state import SqliteStateStore

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "envnet" / "devkit" / "sites" / "shenyang.json"


def fill(store: CaseStore, n: int, t0: float) -> None:
    """n open cases over the demo's cells, opened over the last 3 days (bulk insert)."""
    cells = store.grid.cells()
    rows = []
    for i in range(n):
        cell = cells[i % len(cells)]
        opened = t0 - (i % 259_200)
        sev = ("medium", "high", "critical")[i % 3]
        c = CaseClock("x", "aqi_category", sev, "assigned", opened, 0, opened)
        sign_due, report_due = deadlines(c, store.policy)
        rows.append((uuid.uuid4().hex[:16], f"st{i}", "aqi_category", "aqi", sev, "assigned",
                     cell["unit"], cell["district"], cell["id"], opened, opened, sign_due,
                     report_due, opened))  # fmt: skip
    with store.state.tx() as c:
        c.executemany(
            "INSERT INTO cases(id, station, rule, parameter, severity, state, unit, district, cell,"
            " opened_at, opened_by, cycle, cycle_started_at, sign_due_at, report_due_at,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,'bench',0,?,?,?,?)",
            rows,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=300)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="envnet-cases-bench-"))
    env = {"ENVNET_STORE_PATH": str(d / "envnet.db"), "ENVNET_SERVER_API_KEY": "bench-key"}
    settings = load_config(None, environ=env)
    state = SqliteStateStore(settings.store.path)
    store = CaseStore(state, load_policy(), settings)
    store.grid.load_file(SITE)
    now = time.time()
    fill(store, a.cases, now)
    sched = CaseScheduler(store)
    t = time.perf_counter()
    first = sched.run_pass(now)
    t_first = time.perf_counter() - t
    full, steady = [], []
    for _ in range(5):
        with state.tx() as c:  # make every case due for evaluation again (nothing new is due)
            c.execute("UPDATE cases SET next_slip_at=NULL")
        t = time.perf_counter()
        sched.run_pass(now)
        full.append(time.perf_counter() - t)
        t = time.perf_counter()
        sched.run_pass(now)
        steady.append(time.perf_counter() - t)
    ms = statistics.median
    print(f"{a.cases} open cases; first pass issued {first['slips']} slips in {t_first:.2f} s")
    print(f"full pass evaluating all {a.cases} open cases (nothing new due): median "
          f"{ms(full) * 1000:.0f} ms; steady pass (next_slip_at not reached): "
          f"{ms(steady) * 1000:.1f} ms")  # fmt: skip
    state.close()
    port = free_port()
    senv = {**os.environ, **env, "ENVNET_SERVER_LISTEN": f"127.0.0.1:{port}",
            "ENVNET_CASES_TICK_S": "5", "PYTHONPATH": str(REPO)}  # fmt: skip
    p = subprocess.Popen([sys.executable, "-m", "envnet.cli", "server", "--log-level", "warning"],
                         env=senv, cwd=d)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        h = {"Authorization": "Bearer bench-key"}
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(headers=h) as c:
            total = c.get(f"{base}/cases?overdue=true").headers["x-total-count"]
            lat = []
            for _ in range(a.requests):
                t = time.perf_counter()
                r = c.get(f"{base}/cases?overdue=true")
                lat.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
        lat.sort()
        p99 = lat[int(len(lat) * 0.99) - 1]
        print(f"GET /cases?overdue=true ({total} overdue of {a.cases}, page of 100): "
              f"p50 {lat[len(lat) // 2]:.1f} ms, p99 {p99:.1f} ms")  # fmt: skip
    finally:
        p.terminate()
        p.wait(10)


if __name__ == "__main__":
    main()
