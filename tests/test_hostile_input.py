"""Hostile input against the real gateway process: a hypothesis property test.

Hypothesis generates batches of message *recipes* (oversized payloads, deep JSON, huge arrays,
NaN and infinities, strings for numbers, future and ancient timestamps, replays of old seq
values, topic ids that do not match the payload, random bytes, unicode, and good readings);
one paho client publishes them (QoS 1) to the real Mosquitto, the real gateway takes them.
Afterwards: the gateway is alive, every message is accounted for (received + rejected ==
published, dead letters == rejected, stored + duplicate == readings in accepted messages,
InfluxDB == stored - quarantined) and a good reading published afterwards still lands.

The contract (documented in docs/operations.md): a timestamp more than
`gateway.max_future_s` ahead or `gateway.max_age_days` behind the gateway's clock is
dead-lettered as `bad_timestamp` (unless the reading carries the clock flag); JSON nested
deeper than 32 levels is `too_deep`; a replay of an identical (station, seq, ts) is a counted
duplicate, not a rejection; a `station` key in the payload is kept as an extra field, the
topic id wins.
"""

from __future__ import annotations

import json
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_until
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from envnet.core import contract
from envnet.store.state import SqliteStateStore

MAX_PAYLOAD = 16_384  # the gateway's limit in this test (ENVNET_GATEWAY_MAX_PAYLOAD_BYTES)
BATCH = 250
EXAMPLES = 40  # 40 x 250 = 10,000 generated messages
NOW = float(int(time.time()) // 86400 * 86400 - 86400)  # yesterday: recent, and whole

# MQTT forbids wildcards in a topic name and Mosquitto disconnects a client whose topic holds
# control characters, surrogates or non-characters: those are not the gateway's to see.
TOPIC_CHARS = st.characters(exclude_characters="+#/", exclude_categories=("Cc", "Cs", "Cn", "Co"))

RECIPES = (
    "good good good good good good oversized deep_json deep_extra huge_array huge_extra_array "
    "nan_literal inf_value string_number string_seq future_ts ancient_ts far_future_ts "
    "replay replay_old_seq topic_mismatch bad_station_topic bad_subtopic random_bytes "
    "unicode_text unicode_extras not_utf8 empty bad_health"
).split()


@pytest.fixture
def envnet_env(envnet_env: dict[str, str]) -> dict[str, str]:
    # A smaller payload limit: the same code path as the default 256 KiB, less data to push.
    envnet_env["ENVNET_GATEWAY_MAX_PAYLOAD_BYTES"] = str(MAX_PAYLOAD)
    return envnet_env


recipe = st.tuples(
    st.sampled_from(RECIPES),
    st.integers(min_value=0, max_value=2**31),
    st.text(TOPIC_CHARS, min_size=1, max_size=12),
    st.binary(max_size=48),
)


class Builder:
    """Turns recipes into (topic, payload); every good reading gets a unique (station, ts)."""

    def __init__(self) -> None:
        self.n = 0
        self.sent: list[tuple[str, bytes]] = []  # accepted-looking readings, for replays

    def reading(self, **over) -> dict:
        self.n += 1
        doc = {
            "v": 1,
            "seq": self.n,
            "ts": NOW + self.n,
            "kind": "air",
            "values": {"pm25": 10.0 + self.n % 50},
            "flags": {},
        }
        doc.update(over)
        return doc

    def station(self, k: int) -> str:
        return f"hx-{k % 200:03d}"

    def build(self, r: tuple[str, int, str, bytes]) -> tuple[str, bytes]:
        kind, k, text, raw = r
        st_topic = contract.topic(self.station(k), "reading")
        dumps = json.dumps
        if kind == "good":
            t, p = st_topic, dumps(self.reading()).encode()
            self.sent.append((t, p))
            return t, p
        if kind == "oversized":
            return st_topic, b'{"v":1,"pad":"' + b"x" * (MAX_PAYLOAD + k % 5000) + b'"}'
        if kind == "deep_json":
            depth = 500 + k % 100_000
            return st_topic, (b"[" * depth + b"]" * depth)[:MAX_PAYLOAD]
        if kind == "deep_extra":
            # Shallow enough to parse, or far too deep: never near the recursion limit, where
            # the gateway's thread and this test's oracle could disagree by a few frames.
            depth = 20 + k % 180 if k % 2 else 3000 + k % 3000
            doc = dumps(self.reading())[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
            return st_topic, doc.encode()
        if kind == "huge_array":
            n = contract.MAX_BATCH + 1 + k % 500
            return st_topic, dumps([{"v": 1}] * n).encode()
        if kind == "huge_extra_array":
            return st_topic, dumps(self.reading(big=[0] * (k % 6000))).encode()
        if kind == "nan_literal":
            lit = ("NaN", "Infinity", "-Infinity")[k % 3]
            return st_topic, dumps(self.reading()).replace(
                '"pm25": ', f'"pm25": {lit}, "x": ', 1
            ).encode()
        if kind == "inf_value":  # 1e999 parses as a float infinity: a value must be finite
            return st_topic, dumps(self.reading()).replace(
                '"pm25": ', '"pm25": 1e999, "x": ', 1
            ).encode()
        if kind == "string_number":
            return st_topic, dumps(self.reading(values={"pm25": str(k % 100)})).encode()
        if kind == "string_seq":
            return st_topic, dumps(self.reading(seq=str(k))).encode()
        if kind == "future_ts":  # years ahead: bad_timestamp
            return st_topic, dumps(self.reading(ts=NOW + 10 * 365 * 86400 + self.n)).encode()
        if kind == "ancient_ts":  # 1970: bad_timestamp
            return st_topic, dumps(self.reading(ts=float(self.n))).encode()
        if kind == "far_future_ts":  # past InfluxDB's year 2262: bad_timestamp, unless flagged
            flags = {"*": "clock"} if k % 2 else {}
            t, p = st_topic, dumps(self.reading(ts=1e12 + self.n, flags=flags)).encode()
            if flags:  # stored with the gateway's receive time
                self.sent.append((t, p))
            return t, p
        if kind in ("replay", "replay_old_seq") and self.sent:
            if kind == "replay":  # an identical resend: a counted duplicate
                return self.sent[k % len(self.sent)]
            # an old seq with a new ts (a station whose counter restarted): stored as new
            t, p = self.sent[k % len(self.sent)]
            doc = json.loads(p)
            self.n += 1
            doc["ts"] = NOW + self.n
            return t, dumps(doc).encode()
        if kind == "topic_mismatch":  # payload claims another station: kept as an extra
            return st_topic, dumps(self.reading(station=self.station(k + 1))).encode()
        if kind == "bad_station_topic":
            return f"{contract.TOPIC_ROOT}{text}/reading", dumps(self.reading()).encode()
        if kind == "bad_subtopic":
            return f"{contract.TOPIC_ROOT}{self.station(k)}/{text}", b"{}"
        if kind == "random_bytes":
            return st_topic, raw
        if kind == "unicode_text":
            return st_topic, text.encode("utf-8", "surrogatepass")
        if kind == "unicode_extras":
            doc = self.reading(note=text, values={"pm25": 1.0, text[:32]: 2.0})
            return st_topic, dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
        if kind == "not_utf8":
            return st_topic, b'{"v":1,"x":"\xff\xfe' + raw + b'"}'
        if kind == "empty":
            return st_topic, b""
        if kind == "bad_health":
            body = ({"battery_v": "3.7"}, {"uptime_s": -1}, {"errors": [1]}, [])[k % 4]
            return contract.topic(self.station(k), "health"), dumps(body).encode()
        return st_topic, dumps(self.reading()).encode()  # a replay before anything was sent


def expected_readings(topic: str, payload: bytes) -> int | None:
    """Readings the gateway should store from a message; None when it should reject it."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        msg = contract.decode(topic, payload)
        if msg.sub == "reading":  # the gateway's defaults: 600 s ahead, 366 days behind
            contract.check_times(msg.body, time.time(), 600, 366 * 86400)
    except contract.Rejected:
        return None
    return len(msg.body) if msg.sub == "reading" else 0


def counters(store: SqliteStateStore, client_id: str) -> dict[str, float]:
    snap = store.get_kv(f"gateway:{client_id}:metrics") or {}
    return snap.get("metrics") or {}


def total(m: dict[str, float], name: str) -> float:
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def test_hostile_messages_are_rejected_counted_and_never_crash(
    gateway, influxdb, mosquitto, envnet_env
):
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="hostile-pub")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    builder = Builder()
    published = {"messages": 0, "rejects": 0, "readings": 0}
    expected_rejects: list[tuple[str, bytes]] = []
    t_start = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),  # no shrinking: a failure is reported as is
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(recipe, min_size=BATCH, max_size=BATCH))
    def publish_batch(batch):
        last = None
        for r in batch:
            topic, payload = builder.build(r)
            n = expected_readings(topic, payload)
            published["messages"] += 1
            if n is None:
                published["rejects"] += 1
                expected_rejects.append((topic, payload))
            else:
                published["readings"] += n
            last = client.publish(topic, payload, qos=1)
            assert last.rc == mqtt.MQTT_ERR_SUCCESS, (topic, payload[:200], last.rc)
        last.wait_for_publish(30)

    publish_batch()
    assert published["messages"] >= 10_000
    assert gateway.p.poll() is None, gateway.output()[-3000:]

    store = SqliteStateStore(envnet_env["ENVNET_STORE_PATH"])
    client_id = envnet_env["ENVNET_MQTT_CLIENT_ID"]

    def accounted():
        m = counters(store, client_id)
        seen = total(m, "envnet_messages_received_total") + total(
            m, "envnet_messages_rejected_total"
        )
        return m if seen >= published["messages"] else None

    m = wait_until(accounted, 40, 0.5, what="the gateway's counters to cover every message")
    received = total(m, "envnet_messages_received_total")
    rejected = total(m, "envnet_messages_rejected_total")
    stored = total(m, "envnet_readings_stored_total")
    duplicate = total(m, "envnet_readings_duplicate_total")
    assert received + rejected == published["messages"]

    buffer = sqlite3.connect(envnet_env["ENVNET_GATEWAY_BUFFER_PATH"])
    dead_rows = buffer.execute(
        "SELECT topic, payload, reason, detail FROM dead_letters WHERE topic NOT LIKE 'influx:%'"
    ).fetchall()
    expected = {(t, p) for t, p in expected_rejects}
    surprising = [(t, bytes(p)[:300], r, d) for t, p, r, d in dead_rows if (t, p) not in expected]
    assert rejected == published["rejects"], surprising[:5]
    assert stored + duplicate == published["readings"]

    dead = buffer.execute(
        "SELECT count(*) FROM dead_letters WHERE topic NOT LIKE 'influx:%'"
    ).fetchone()[0]
    assert dead == rejected
    reasons = {r for (r,) in buffer.execute("SELECT DISTINCT reason FROM dead_letters")}
    assert {"too_large", "bad_json", "schema", "bad_topic", "bad_timestamp", "too_deep"} <= reasons

    # Every stored reading reaches InfluxDB, except those InfluxDB refuses (dead-lettered).
    def landed():
        mm = counters(store, client_id)
        quarantined = total(mm, "envnet_influx_points_quarantined_total")
        rows = influxdb.rows("SELECT count(seq) FROM air")
        n = int(rows[0]["count"]) if rows else 0
        return (n, quarantined) if n + quarantined >= stored else None

    n_influx, quarantined = wait_until(landed, 40, 0.5, what="InfluxDB to hold every reading")
    assert n_influx + quarantined == stored
    by_reason = dict(buffer.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason"))
    print(
        f"hostile: {published['messages']} messages, {received:.0f} accepted, {rejected:.0f} "
        f"rejected {by_reason}, {stored:.0f} readings stored, {duplicate:.0f} duplicates, "
        f"{n_influx} in InfluxDB, {quarantined:.0f} quarantined"
    )

    # Still serving: one good reading afterwards lands in InfluxDB.
    good = {"v": 1, "seq": 1, "ts": NOW + 3600.5, "kind": "air", "values": {"pm25": 42.0}}
    client.publish(contract.topic("hx-after", "reading"), json.dumps(good), qos=1).wait_for_publish(
        10
    )
    wait_until(
        lambda: influxdb.rows("SELECT pm25 FROM air WHERE station='hx-after'"),
        20,
        what="a good reading after the hostile ones",
    )
    assert gateway.p.poll() is None
    assert "Traceback" not in gateway.output(), gateway.output()[-3000:]
    client.loop_stop()
    client.disconnect()
    assert time.monotonic() - t_start < 120


def test_infinite_timestamp_is_rejected_and_the_gateway_keeps_going(
    gateway, influxdb, mosquitto, envnet_env
):
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="inf-ts")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    bad = b'{"v":1,"seq":1,"ts":1e999,"kind":"air","values":{"pm25":1.0}}'
    client.publish(contract.topic("hx-inf", "reading"), bad, qos=1).wait_for_publish(10)
    good = {"v": 1, "seq": 2, "ts": NOW, "kind": "air", "values": {"pm25": 42.0}}
    client.publish(contract.topic("hx-inf", "reading"), json.dumps(good), qos=1).wait_for_publish(
        10
    )
    try:
        wait_until(
            lambda: influxdb.rows("SELECT pm25 FROM air WHERE station='hx-inf'"),
            10,
            what="the good reading after ts=1e999",
        )
        buffer = sqlite3.connect(envnet_env["ENVNET_GATEWAY_BUFFER_PATH"])
        reasons = [r for (r,) in buffer.execute("SELECT reason FROM dead_letters")]
        assert reasons == ["schema"]
    finally:
        client.loop_stop()
        client.disconnect()
