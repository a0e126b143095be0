"""Real-time alerts from corrected values (`review.use_corrected`, issue 18).

In process, on real SQLite files, as tests/test_gateway_eval_replay.py: the gateway's receiver
commit and log processor put readings in the evaluation queue, the evaluation worker (with its
calibration cache over the real state store) evaluates them. Calibrations are rows as the
server's review worker stores them (envnet.store.review.save_calibration).

One reading a minute, RH 60 %. The hourly AQI alert (`aqi_category`, light pollution or
worse: PM2.5 1-hour mean > 75 µg/m³, the real-time report's 1-hour PM basis):
- lo-01 has a calibration that lowers PM: (raw - 0.5 x RH - 10) / 2, so raw 120 reads 40;
- hi-01 has one that raises it: raw / 0.5, so raw 60 reads 120.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from envnet.config import load_config
from envnet.core.calendar import HOUR
from envnet.domain.review.calibration import Fit, Quality
from envnet.store import review
from envnet.store.alerts import SqliteAlertStore
from envnet.store.state import SqliteStateStore
from gateway.app import Gateway
from gateway.evaluation import EvaluationWorker
from gateway.processor import LogProcessor

H0 = int(time.time()) // HOUR * HOUR - 4 * HOUR  # four complete hours back: nothing in the future


def _settings(tmp_path: Path, use_corrected: bool):
    env = {
        "ENVNET_STORE_PATH": str(tmp_path / "state.db"),
        "ENVNET_GATEWAY_BUFFER_PATH": str(tmp_path / "buffer.db"),
        "ENVNET_INFLUX_URL": "http://127.0.0.1:9",  # never reached: the writer is not started
        "ENVNET_REVIEW_CALIBRATION_REFRESH_S": "1",
    }
    if use_corrected:
        env["ENVNET_REVIEW_USE_CORRECTED"] = "true"
    return load_config(None, environ=env)


class _Stack:
    def __init__(self, tmp_path: Path, use_corrected: bool) -> None:
        settings = _settings(tmp_path, use_corrected)
        self.path = tmp_path / "state.db"
        self.receiver = Gateway(settings)
        self.processor = LogProcessor(settings)
        self.evaluator = EvaluationWorker(settings)
        self.store = SqliteStateStore(str(self.path))
        self.seq: dict[str, int] = {}

    def hour(self, station: str, start: int, pm25: float, minutes: int = 60) -> None:
        """`minutes` readings a minute apart from `start`, then evaluated."""
        batch = []
        for i in range(minutes):
            seq = self.seq[station] = self.seq.get(station, 0) + 1
            doc = {
                "v": 1,
                "seq": seq,
                "ts": start + 60 * i + 30,
                "kind": "air",
                "values": {"pm25": pm25, "rh": 60.0},
            }
            topic = f"envnet/v1/{station}/reading"
            batch.append((topic, json.dumps(doc).encode(), seq, 1, time.time()))
        self.receiver.receive(batch)
        while self.processor.step():
            pass
        while self.evaluator.step():
            pass
        self.evaluator._save(self.evaluator.evaluator.flush)

    def aqi_alerts(self, station: str) -> list[tuple[float, str, float | None]]:
        with sqlite3.connect(self.path) as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name='alerts'").fetchone():
                return []
        found = SqliteAlertStore(self.store).search(station=station, rule="aqi_category")
        return [(a.opened_at, a.clause, a.value) for a in sorted(found, key=lambda a: a.opened_at)]

    def calibrate(self, station: str, fit: Fit, ok: bool = True) -> int:
        q = Quality(100, 0.95, 2.0, 0.1) if ok else Quality(24, 0.2, 20.0, -15.0, ("bias",))
        cal = review.save_calibration(
            self.store,
            station=station,
            reference="ref-01",
            parameter="pm25",
            period=(H0 - 14 * 86400, H0),
            fit=fit,
            quality=q,
        )
        return cal.id


LOWERS = Fit(2.0, 0.5, 10.0, 100, 0.95)  # raw 120 at RH 60 -> 40
RAISES = Fit(0.5, 0.0, 0.0, 100, 0.95)  # raw 60 -> 120


def test_without_the_setting_the_raw_values_alert_as_before(tmp_path):
    s = _Stack(tmp_path, use_corrected=False)
    s.calibrate("lo-01", LOWERS)
    s.calibrate("hi-01", RAISES)
    s.hour("lo-01", H0, 120.0)
    s.hour("lo-01", H0 + HOUR, 120.0, minutes=5)  # closes the first hour
    s.hour("hi-01", H0, 60.0)
    s.hour("hi-01", H0 + HOUR, 60.0, minutes=5)
    (alert,) = s.aqi_alerts("lo-01")
    assert alert[0] == H0 + HOUR and alert[2] > 100  # raw 120: AQI 158
    assert "values" not in alert[1]  # nothing said: the clause is as it always was
    assert s.aqi_alerts("hi-01") == []


def test_corrected_values_decide_and_the_alert_names_the_calibration(tmp_path):
    s = _Stack(tmp_path, use_corrected=True)
    lo = s.calibrate("lo-01", LOWERS)
    hi = s.calibrate("hi-01", RAISES)

    # raw over the threshold, corrected (40) under it: no alert
    s.hour("lo-01", H0, 120.0)
    s.hour("lo-01", H0 + HOUR, 120.0, minutes=5)
    assert s.aqi_alerts("lo-01") == []

    # raw under (60: AQI 82), corrected (120) over it: an alert saying so
    s.hour("hi-01", H0, 60.0)
    s.hour("hi-01", H0 + HOUR, 60.0, minutes=5)
    ((opened, clause, value),) = s.aqi_alerts("hi-01")
    assert opened == H0 + HOUR and value == 158  # IAQI of 120 µg/m³
    assert clause.endswith(f"values: corrected (calibration {hi})"), clause

    # the lowering calibration is withdrawn (the server's worker found it drifting): once the
    # cache's refresh interval has passed the evaluator uses the raw values again
    s.calibrate("lo-01", LOWERS, ok=False)
    time.sleep(1.1)
    s.hour("lo-01", H0 + HOUR + 5 * 60, 120.0, minutes=55)
    s.hour("lo-01", H0 + 2 * HOUR, 120.0, minutes=5)
    # that hour mixed 5 corrected minutes (40) and 55 raw ones (120): mean 113.3, AQI 148
    ((opened, clause, value),) = s.aqi_alerts("lo-01")
    assert opened == H0 + 2 * HOUR and value == 148
    assert clause.endswith(f"values: corrected (calibration {lo}), raw in 1 of 1 h"), clause
    # a whole raw hour: the alert escalates on the raw 120 (AQI 158) and says raw
    s.hour("lo-01", H0 + 2 * HOUR + 5 * 60, 120.0, minutes=55)
    s.hour("lo-01", H0 + 3 * HOUR, 120.0, minutes=5)
    ((opened, clause, value),) = s.aqi_alerts("lo-01")
    assert value == 158 and clause.endswith("; values: raw"), clause
