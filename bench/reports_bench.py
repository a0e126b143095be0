"""Reports benchmark: how long the monthly reports take for 100 stations at one reading a minute.

Starts a private InfluxDB (Debian's 1.6, as the tests do), writes a month of one-minute air
readings for BENCH_STATIONS stations (default 100, in 10 districts) directly as line protocol
in batches (the gateway's own layout: measurement `air`, tags station/kind/district, the six
pollutants, `seq`, `latency_s`, and a `flag_pm25` on about 1 % of readings), registers the
stations in a temporary state store, then times:

1. the monthly period report by district (with ranking and river sections),
2. the monthly period report by station,
3. the monthly completeness report (valid hours, days not counted, latency p50/p95),
4. one daily bulletin.

Not a timed test: it prints the figures (recorded in docs/reports.md). Sizes: BENCH_STATIONS,
BENCH_DAYS (default 31), BENCH_MONTH (first day, default 2026-10-01), BENCH_BATCH (lines a write).
Last line, for scripts: `reports stations=... readings=... period_district_s=... ...`.
"""

from __future__ import annotations

import math
import os
import random
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from envnet.config import load_config  # noqa: E402
from envnet.core import calendar as cal  # noqa: E402
from envnet.devkit.services import InfluxDB  # noqa: E402
from envnet.domain.reports.settings import ReportSettings  # noqa: E402
from envnet.store.state import SqliteStateStore  # noqa: E402
from server.reports.service import Reports  # noqa: E402

STATIONS = int(os.environ.get("BENCH_STATIONS", "100"))
DAYS = int(os.environ.get("BENCH_DAYS", "31"))
FIRST = date.fromisoformat(os.environ.get("BENCH_MONTH", "2026-10-01"))
BATCH = int(os.environ.get("BENCH_BATCH", "20000"))
TZ = "Asia/Shanghai"
console = Console()


def station_ids() -> list[tuple[str, str]]:
    return [(f"bench-{i:03d}", f"d{i % 10:02d}") for i in range(STATIONS)]


def minute_lines(sid: str, district: str, t0: int, minutes: int, rng: random.Random):
    """One station's readings: a daily cycle plus noise; ~1 % PM2.5 flagged as a fault."""
    tags = f"air,district={district},kind=air,station={sid}"
    base = 30 + 40 * rng.random()
    for m in range(minutes):
        ts = t0 + 60 * m
        cycle = 1 + 0.5 * math.sin(2 * math.pi * (m % 1440) / 1440)
        pm25 = round(base * cycle + rng.gauss(0, 3), 1)
        fields = (
            f"pm25={max(pm25, 0.0)},pm10={round(pm25 * 1.6, 1)},so2={round(8 + rng.random(), 1)},"
            f"no2={round(25 + 10 * cycle, 1)},o3={round(60 + 40 * cycle, 1)},"
            f"co={round(0.6 + 0.2 * cycle, 2)},seq={m + 1}i,"
            f"latency_s={round(rng.uniform(0.2, 3), 3)}"
        )
        if rng.random() < 0.01:
            fields += ',flag_pm25="fault"'
        yield f"{tags} {fields} {ts}"


def write_month(influx: InfluxDB, t0: int) -> int:
    minutes = DAYS * 1440
    total = STATIONS * minutes
    http = httpx.Client(timeout=120)
    url = f"{influx.url}/write?db={influx.database}&precision=s"
    written = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("writing readings", total=total)
        batch: list[str] = []
        for sid, district in station_ids():
            rng = random.Random(sid)
            for ln in minute_lines(sid, district, t0, minutes, rng):
                batch.append(ln)
                if len(batch) >= BATCH:
                    _post(http, url, batch)
                    written += len(batch)
                    bar.update(task, completed=written)
                    batch = []
        if batch:
            _post(http, url, batch)
            written += len(batch)
            bar.update(task, completed=written)
    http.close()
    return written


def _post(http: httpx.Client, url: str, lines: list[str]) -> None:
    r = http.post(url, content="\n".join(lines).encode())
    if r.status_code != 204:
        raise SystemExit(f"InfluxDB refused a batch: HTTP {r.status_code} {r.text[:200]}")


def timed(label: str, fn):
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    console.print(f"{label:<42} {dt:8.2f} s")
    return out, dt


def register_stations(store_path: Path) -> SqliteStateStore:
    """The bench's stations in a state store: one in ten a national station, the rest micro."""
    store = SqliteStateStore(store_path)
    for i, (sid, district) in enumerate(station_ids()):
        cls = "national" if i % 10 == 0 else "micro"
        store.register_station(sid, "air", {"district": district, "class": cls})
    return store


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="envnet-reports-bench-") as tmp:
        with InfluxDB(Path(tmp) / "influxdb") as influx:
            store_path = Path(tmp) / "envnet.db"
            store = register_stations(store_path)
            # the month starts at local midnight in the bureau's zone
            t0 = cal.day_start(FIRST, ReportSettings(timezone=TZ).zone)
            t = time.perf_counter()
            n = write_month(influx, t0)
            write_s = time.perf_counter() - t
            console.print(f"wrote {n:,} readings in {write_s:.1f} s ({n / write_s:,.0f}/s)")
            settings = load_config(
                None,
                environ={
                    "ENVNET_INFLUX_URL": influx.url,
                    "ENVNET_INFLUX_DATABASE": influx.database,
                    "ENVNET_STORE_PATH": str(store_path),
                    "ENVNET_REPORTS_TIMEZONE": TZ,
                },
            )
            reports = Reports(settings, store)
            last = FIRST + timedelta(days=DAYS - 1)
            district, t_district = timed(
                "period report, by district (month)",
                lambda: reports.period(FIRST, last, "district"),
            )
            _, t_station = timed(
                "period report, by station (month)", lambda: reports.period(FIRST, last, "station")
            )
            comp, t_comp = timed(
                "completeness report (month)", lambda: reports.completeness(FIRST, last)
            )
            _, t_daily = timed("daily bulletin (one day)", lambda: reports.daily(FIRST))
            top = district["air"][0]
            console.print(
                f"check: {len(district['air'])} districts, rank 1 {top['id']} composite "
                f"{top['composite_index']}, good days {top['good_days_ratio']} %; "
                f"station 0 completeness {comp['stations'][0]['months'][0]['completeness']} %"
            )
            load = os.getloadavg()[0]
            console.print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores")
            console.print(
                f"reports stations={STATIONS} readings={n} write_s={write_s:.1f} "
                f"period_district_s={t_district:.2f} period_station_s={t_station:.2f} "
                f"completeness_s={t_comp:.2f} daily_s={t_daily:.2f}"
            )
            reports.db.close()
            store.close()


if __name__ == "__main__":
    main()
