"""Timestamps no synced station can produce are refused, and messages are kept as received in
the message log (gateway.raw_retention_days) so any stored value traces back to its bytes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

from conftest import wait_until
from mqtt_helpers import Publisher, reading

from gateway.buffer import Buffer, RawMessage
from gateway.log import MessageLog, Received, log_path_for

T = "envnet/v1/sy-air-007/reading"


def test_bad_timestamps_are_refused_unless_clock_flagged_and_raw_bytes_are_kept(
    mosquitto, influxdb, gateway, envnet_env
):
    now = time.time()
    future = reading(2, now + 3600, pm25=2.0)
    ancient = reading(3, now - 400 * 86400, pm25=3.0)
    flagged = reading(4, now + 3600, pm25=4.0)
    flagged["flags"] = {"*": "clock"}  # an unsynced clock: stored at the receive time
    good = b'{"v":1, "seq":1, "ts":%d, "kind":"air", "values":{"pm25":1.5}, "flags":{}}' % (
        now - 30
    )
    pub = Publisher(mosquitto.port)
    try:
        for payload in (good, future, ancient, flagged):
            pub.send(T, payload)
        rows = wait_until(
            lambda: (r := influxdb.rows("SELECT pm25, seq FROM air")) and len(r) == 2 and r,
            20,
            what="the good and the clock-flagged reading",
        )
    finally:
        pub.close()
    assert sorted(r["seq"] for r in rows) == [1, 4]
    flagged_row = next(r for r in rows if r["seq"] == 4)
    # Stored at our receive time, not an hour ahead.
    assert abs(flagged_row["time"] - now) < 120

    buf = envnet_env["ENVNET_GATEWAY_BUFFER_PATH"]
    with sqlite3.connect(buf) as c:
        dead = c.execute("SELECT reason, detail FROM dead_letters ORDER BY id").fetchall()
    assert [r for r, _ in dead] == ["bad_timestamp", "bad_timestamp"]
    assert "in the future" in dead[0][1] and "days old" in dead[1][1]

    # The raw bytes of what was accepted, exactly as sent, found by seq from the CLI.
    out = subprocess.run(
        [sys.executable, "-m", "envnet.cli", "raw", "sy-air-007", "--seq", "1"],
        env={**envnet_env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    msg = json.loads(line)
    assert msg["topic"] == T and msg["utf-8"].encode() == good
    # Every message as received, the refused ones too (their reasons are the dead letters).
    raw = MessageLog(log_path_for(buf)).raw_messages("sy-air-007")
    assert [json.loads(r["payload"])["seq"] for r in raw] == [1, 2, 3, 4]


def test_raw_messages_are_purged_after_their_retention(tmp_path):
    buf = Buffer(tmp_path / "b.db")
    now = time.time()
    old = RawMessage(now - 10 * 86400, "s1", "envnet/v1/s1/reading", b"{}")
    new = RawMessage(now - 60, "s1", "envnet/v1/s1/reading", b"{}")
    buf.store([], [], now, [old, new])
    assert buf.purge_raw(7 * 86400) == 1
    assert [r["received_at"] for r in buf.raw_messages("s1")] == [new.received_at]


def test_the_log_is_trimmed_behind_every_consumer_and_the_retention(tmp_path):
    log = MessageLog(tmp_path / "log.db")
    now = time.time()
    t = "envnet/v1/s1/reading"
    log.register_consumer("a")
    log.register_consumer("b")
    log.append(
        [Received(now - 10 * 86400, "s1", t, b"1"), Received(now - 9 * 86400, "s1", t, b"2")]
    )
    log.append([Received(now - 60, "s1", t, b"3")])
    assert log.trim(7 * 86400) == 0  # nobody has read anything
    log.set_cursor("a", 3)
    assert log.trim(7 * 86400) == 0  # b holds everything back
    log.set_cursor("b", 1)
    log.set_cursor("a", 2)  # a cursor never goes back
    assert log.cursors() == {"a": 3, "b": 1}
    assert log.trim(7 * 86400) == 1  # behind b, and old enough
    log.set_cursor("b", 3)
    assert log.trim(7 * 86400) == 1  # the third is within the retention
    assert [r["payload"] for r in log.raw_messages("s1")] == [b"3"]
    assert log.trim(0) == 1
