"""Review benchmark: the time to recompute one month for 100 stations after one invalidation.

Starts a private InfluxDB (Debian's 1.6), writes a month of one-minute air readings for
BENCH_STATIONS stations (default 100; the layout of bench/reports_bench.py), the evaluator's
hourly and daily AQI points for every station, and the month's published daily bulletins.
Then one reviewer invalidates one station's whole day (all parameters) and it times:

1. the invalidation and the rewrite of the stored figures over it (hourly and daily AQI
   points of that station, the day's bulletin: server/review/recompute.py);
2. the month recomputed from reviewed data, as the server computes it on request: period
   report by district (good days, ranking) and by station, and completeness;
3. the restore and its rewrite.

Not a timed test: it prints the figures (recorded in docs/review.md). Last line, for
scripts: `review stations=... invalidate_s=... month_s=... restore_s=...`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from reports_bench import (  # noqa: E402
    DAYS,
    FIRST,
    STATIONS,
    TZ,
    _post,
    console,
    register_stations,
    station_ids,
    timed,
    write_month,
)

from envnet.config import load_config  # noqa: E402
from envnet.core import calendar as cal  # noqa: E402
from envnet.domain.reports.settings import ReportSettings  # noqa: E402
from envnet.domain.review.invalidation import check_request  # noqa: E402
from envnet.store import review  # noqa: E402
from server.reports.service import Reports  # noqa: E402
from server.review.recompute import Recomputer  # noqa: E402


def aqi_lines(t0: int) -> list[str]:
    """Hourly (stamped at each hour's end) and daily AQI points, as the evaluator writes them."""
    out = []
    for sid, district in station_ids():
        tags = f"aqi,district={district},edition=2012,station={sid}"
        for h in range(DAYS * 24):
            out.append(f'{tags},window=1h aqi=60i,level=2i,primary="pm25" {t0 + (h + 1) * 3600}')
        for d in range(DAYS):
            out.append(f'{tags},window=24h aqi=55i,level=2i,primary="pm25" {t0 + d * 86400}')
    return out


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="envnet-review-bench-") as tmp:
        from envnet.devkit.services import InfluxDB

        with InfluxDB(Path(tmp) / "influxdb") as influx:
            store_path = Path(tmp) / "envnet.db"
            store = register_stations(store_path)
            t0 = cal.day_start(FIRST, ReportSettings(timezone=TZ).zone)
            n = write_month(influx, t0)
            http = httpx.Client(timeout=120)
            lines = aqi_lines(t0)
            url = f"{influx.url}/write?db={influx.database}&precision=s"
            for j in range(0, len(lines), 20000):
                _post(http, url, lines[j : j + 20000])
            http.close()
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
            for d in cal.days(FIRST, last):  # the month's bulletins, published
                reports.db.write(reports.bulletin_lines(reports.daily(d)))
            console.print(f"seeded {n:,} readings, {len(lines):,} AQI points, {DAYS} bulletins")
            recompute = Recomputer(settings, store, reports)
            day = FIRST + timedelta(days=DAYS // 2)
            start = cal.day_start(day, reports.zone)
            sid = station_ids()[0][0]

            def invalidate():
                req = check_request(
                    station=sid,
                    start=start,
                    end=start + 86400,
                    parameters=None,
                    reason="instrument fault",
                    note="bench",
                    station_params=["pm25", "pm10", "so2", "no2", "o3", "co"],
                    now=time.time(),
                )
                inv, _ = review.add(store, req, "bench")
                return inv, recompute.run(sid, inv.hour_start, inv.hour_end)

            (inv, summary), t_inv = timed("invalidate one day + rewrite stored figures", invalidate)

            def month():
                reports.period(FIRST, last, "district")
                reports.period(FIRST, last, "station")
                reports.completeness(FIRST, last)

            _, t_month = timed("month recomputed (period x2, completeness)", month)

            def restore():
                review.restore(store, inv.id, "bench")
                return recompute.run(sid, inv.hour_start, inv.hour_end)

            _, t_restore = timed("restore + rewrite stored figures", restore)
            console.print(f"rewrite summary: {summary.to_dict()}")
            load = os.getloadavg()[0]
            console.print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores")
            console.print(
                f"review stations={STATIONS} readings={n} invalidate_s={t_inv:.2f} "
                f"month_s={t_month:.2f} restore_s={t_restore:.2f} "
                f"total_s={t_inv + t_month:.2f}"
            )
            reports.db.close()
            store.close()


if __name__ == "__main__":
    main()
