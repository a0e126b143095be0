"""The evaluation queue, partitioned by station, in the state store every gateway shares.

The log processor (gateway/processor.py) appends what the alert evaluator must see (reading
rows, one item per station and run of readings; status and health bodies; each station's in
log order) in the same state-store transaction as the
station-state updates and its own cursor. Each item carries its partition,
`crc32(station) % gateway.eval_partitions`: every message of a station lands in one
partition, and exactly one evaluator (gateway/evaluation.py) reads a partition at a time, in id
order. So N gateways on one shared subscription evaluate each station in one place, in the
order its messages were committed, and give the alerts one gateway gives.

With one partition (the default) this is the single gateway's queue, as before.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import NamedTuple

from envnet.store.schema import STATE_DB
from envnet.store.state import SqliteStateStore

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS evaluation_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    part INTEGER NOT NULL,
    sub TEXT NOT NULL,
    station TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluation_queue_by_part ON evaluation_queue(part, id);
"""
EVAL_QUEUE = STATE_DB.register(
    "evaluation_queue",
    module=__name__,
    tables=("evaluation_queue",),
    migrations=(SCHEMA_V1,),
)


class Queued(NamedTuple):
    id: int
    sub: str
    station: str
    body: str  # JSON: the gateway's reading rows, or the status / health body
    received_at: float


def partition_of(station: str, partitions: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    return zlib.crc32(station.encode()) % partitions if partitions > 1 else 0


class EvaluationQueue:
    def __init__(self, store: SqliteStateStore, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"eval_partitions must be at least 1 (got {partitions})")
        self.store = store
        self.partitions = partitions
        store.db.ensure(EVAL_QUEUE)

    def add(self, items: Iterable[tuple[str, str, str, float]]) -> None:
        """(sub, station, body, received_at) items; joins the caller's transaction."""
        rows = [
            (partition_of(st, self.partitions), sub, st, body, at) for sub, st, body, at in items
        ]
        if rows:
            with self.store.tx() as c:
                # PostgreSQL: several gateways append at once; holding each partition's lock
                # to the commit makes a partition's ids visible in id order, so an evaluator
                # reading "id > cursor" skips none (SQLite: one writer anyway, a no-op).
                self.store.db.order_lock("evaluation_queue", {r[0] for r in rows})
                c.executemany(
                    "INSERT INTO evaluation_queue(part, sub, station, body, received_at)"
                    " VALUES (?,?,?,?,?)",
                    rows,
                )

    def read(self, part: int, after_id: int, limit: int) -> list[Queued]:
        rows = self.store.query(
            "SELECT id, sub, station, body, received_at FROM evaluation_queue"
            " WHERE part=? AND id > ? ORDER BY id LIMIT ?",
            (part, after_id, limit),
        )
        return [Queued(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def last_id(self, part: int) -> int:
        rows = self.store.query(
            "SELECT coalesce(max(id), 0) FROM evaluation_queue WHERE part=?", (part,)
        )
        return int(rows[0][0])

    def purge(self, part: int, up_to_id: int) -> int:
        with self.store.tx() as c:
            return c.execute(
                "DELETE FROM evaluation_queue WHERE part=? AND id <= ?", (part, up_to_id)
            ).rowcount
