"""A gateway killed after acknowledging a batch but before evaluating it: the next gateway
evaluates that batch from the state store's evaluation queue, exactly once.

In process, on real SQLite files: `Gateway.receive` is the log commit that precedes the broker
acknowledgement, `LogProcessor.step` the processing of the log; an evaluator dropped without
saving its state is the SIGKILL.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from envnet.config import load_config
from gateway.app import Gateway
from gateway.evaluation import EvaluationWorker
from gateway.processor import LogProcessor

T = "envnet/v1/replay-01/reading"


def _settings(tmp_path: Path):
    env = {
        "ENVNET_STORE_PATH": str(tmp_path / "state.db"),
        "ENVNET_GATEWAY_BUFFER_PATH": str(tmp_path / "buffer.db"),
        "ENVNET_INFLUX_URL": "http://127.0.0.1:9",  # never reached: the writer is not started
    }
    return load_config(None, environ=env)


class _Gateway:
    """The receiver's commit and the processor's, in process: what acknowledging means."""

    def __init__(self, tmp_path: Path) -> None:
        self.receiver = Gateway(_settings(tmp_path))
        self.processor = LogProcessor(_settings(tmp_path))

    def process(self, batch: list) -> int:
        self.receiver.receive(batch)
        n = 0
        while k := self.processor.step():
            n += k
        return n


def _gateway(tmp_path: Path) -> _Gateway:
    return _Gateway(tmp_path)


def _evaluator(tmp_path: Path) -> EvaluationWorker:
    return EvaluationWorker(_settings(tmp_path))


def _drain(ev: EvaluationWorker) -> int:
    n = 0
    while k := ev.step():
        n += k
    return n


def _batch(t0: float, pm25: list[float], mid0: int = 1) -> list:
    out = []
    for i, v in enumerate(pm25):
        doc = {"v": 1, "seq": mid0 + i, "ts": t0 + 60 * i, "kind": "air", "values": {"pm25": v}}
        out.append((T, json.dumps(doc).encode(), mid0 + i, 1, time.time()))
    return out


def _jump_alerts(tmp_path: Path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "state.db") as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name='alerts'").fetchone():
            return []  # no evaluator has run on this store yet
        return db.execute(
            "SELECT id, state FROM alerts WHERE station='replay-01' AND rule='jump'"
        ).fetchall()


def _finish(ev: EvaluationWorker) -> None:
    """What the evaluator does at each tick and on a clean stop: save, with its cursor."""
    ev._save(ev.evaluator.flush)


def test_a_batch_acknowledged_but_not_evaluated_is_evaluated_by_the_next_gateway(tmp_path):
    t0 = time.time() - 3600
    first = _gateway(tmp_path)
    assert first.process(_batch(t0, [20.0, 25.0, 900.0])) == 3  # 875 > 300: a jump
    assert _jump_alerts(tmp_path) == []
    del first  # killed: acknowledged, durable, never evaluated

    second = _evaluator(tmp_path)
    assert _drain(second) == 3
    _finish(second)
    (alert,) = _jump_alerts(tmp_path)
    assert alert[1] == "open"

    # The next evaluator finds nothing left: the jump is counted once, not again.
    third = _evaluator(tmp_path)
    assert _drain(third) == 0
    with sqlite3.connect(tmp_path / "state.db") as st:
        assert st.execute("SELECT count(*) FROM evaluation_queue").fetchone()[0] == 0
    assert _jump_alerts(tmp_path) == [alert]


def test_replay_continues_from_the_last_saved_state_without_counting_twice(tmp_path):
    t0 = time.time() - 7200
    gw, ev = _gateway(tmp_path), _evaluator(tmp_path)
    gw.process(_batch(t0, [10.0, 11.0]))
    assert _drain(ev) == 2
    _finish(ev)  # saved: the cursor is past seq 1 and 2
    saved = ev.cursor
    gw.process(_batch(t0 + 120, [12.0, 13.0], mid0=3))
    assert _drain(ev) == 2
    del ev  # killed with seq 3 and 4 evaluated but not saved

    again = _evaluator(tmp_path)
    assert again.cursor == saved > 0
    assert _drain(again) == 2  # seq 3 and 4 again, into windows restored without them
    _finish(again)
    assert _drain(_evaluator(tmp_path)) == 0


def test_partitions_are_claimed_once_and_taken_over_when_their_evaluator_stops(
    tmp_path, monkeypatch
):
    from gateway import evaluation
    from gateway.evaluation import PartitionWorkers

    monkeypatch.setattr(evaluation, "PARTITION_TAKEOVER_S", 0.5)
    env = {
        "ENVNET_STORE_PATH": str(tmp_path / "state.db"),
        "ENVNET_GATEWAY_BUFFER_PATH": str(tmp_path / "buffer.db"),
        "ENVNET_INFLUX_URL": "http://127.0.0.1:9",
        "ENVNET_GATEWAY_EVAL_PARTITIONS": "2",
    }
    settings = load_config(None, environ=env)
    a, b = PartitionWorkers(settings), PartitionWorkers(settings)
    threads = [threading.Thread(target=w.run, daemon=True) for w in (a, b)]
    try:
        threads[0].start()
        _wait(lambda: set(a.workers) == {0})
        threads[1].start()
        _wait(lambda: set(b.workers) == {1})
        time.sleep(1.5)  # nothing is orphaned: nobody takes a second partition
        assert set(a.workers) == {0} and set(b.workers) == {1}
        b.stop()  # its gateway is gone: partition 1 is free
        _wait(lambda: set(a.workers) == {0, 1}, timeout=10)
    finally:
        a.stop()
        b.stop()


def _wait(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
