"""A paho-mqtt publisher for tests that play a station by hand (malformed input, replays)."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Publisher:
    def __init__(
        self, port: int, client_id: str = "test-pub", username: str = "", password: str = ""
    ):
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self.c.username_pw_set(username, password)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def send(self, topic: str, payload, qos: int = 1, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self.c.publish(topic, data, qos=qos, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def reading(seq: int, ts: float, kind: str = "air", **values) -> dict:
    return {
        "v": 1,
        "seq": seq,
        "ts": ts,
        "kind": kind,
        "values": values or {"pm25": 10.0},
        "flags": {},
    }
