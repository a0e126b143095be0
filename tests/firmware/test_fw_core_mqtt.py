"""The firmware's own MQTT client on MicroPython, byte-checked against a scripted broker
(for what a real broker never does on cue: withhold a PUBACK) and run against Mosquitto."""

from __future__ import annotations

import socket
import struct
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "firmware"))
import harness  # noqa: E402


def _read_packet(conn):
    first = conn.recv(1)
    if not first:
        return None, b""
    n, shift = 0, 0
    while True:
        d = conn.recv(1)[0]
        n |= (d & 0x7F) << shift
        if not d & 0x80:
            break
        shift += 7
    body = b""
    while len(body) < n:
        body += conn.recv(n - len(body))
    return first[0], body


def _mqtt_str(b, i):
    n = struct.unpack("!H", b[i : i + 2])[0]
    return b[i + 2 : i + 2 + n], i + 2 + n


class ScriptedBroker(threading.Thread):
    """One client: CONNACK; drop the first PUBACK; SUBACK; answer one PINGREQ and then
    push a QoS 1 command, expecting its PUBACK."""

    def __init__(self):
        super().__init__(daemon=True)
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.log = []

    def run(self):
        conn, _ = self.srv.accept()
        conn.settimeout(10)
        seen_pub = 0
        while True:
            typ, body = _read_packet(conn)
            if typ is None:
                break
            t = typ & 0xF0
            if t == 0x10:
                self.log.append(("CONNECT", body))
                conn.sendall(b"\x20\x02\x00\x00")
            elif t == 0x30:
                topic, i = _mqtt_str(body, 0)
                pid = body[i : i + 2]
                self.log.append(("PUBLISH", typ, topic, struct.unpack("!H", pid)[0], body[i + 2 :]))
                seen_pub += 1
                if seen_pub >= 2:  # the first copy is "lost"; ack the DUP
                    conn.sendall(b"\x40\x02" + pid)
            elif t == 0x80:
                pid = body[:2]
                topic, i = _mqtt_str(body, 2)
                self.log.append(("SUBSCRIBE", topic, body[i]))
                conn.sendall(b"\x90\x03" + pid + b"\x01")
            elif t == 0xC0:
                self.log.append(("PINGREQ",))
                conn.sendall(b"\xd0\x00")
                topic = b"x/cmd"
                payload = b'{"id":"k","op":"ping"}'
                body = struct.pack("!H", len(topic)) + topic + b"\x00\x07" + payload
                conn.sendall(bytes([0x32, len(body)]) + body)
            elif t == 0x40:
                self.log.append(("PUBACK", struct.unpack("!H", body[:2])[0]))
            elif t == 0xE0:
                self.log.append(("DISCONNECT",))
                break
        conn.close()


CLIENT = """
from time import ticks_ms, ticks_diff, sleep_ms
from mqtt import MQTTClient
c = MQTTClient('st-1', '127.0.0.1', {port}, 'user1', 'pw1', keepalive=1, timeout_ms=700, retries=2)
c.set_last_will('w/status', '{{"state":"offline"}}', retain=True, qos=1)
print('session', c.connect())
c.publish('a/reading', 'hello', retain=True, qos=1)
print('published')
c.subscribe('x/cmd', 1)
t0 = ticks_ms()
m = None
while m is None and ticks_diff(ticks_ms(), t0) < 4000:
    c.tick()
    m = c.check_msg()
    sleep_ms(20)
print('got', m)
sleep_ms(200)
c.disconnect()
"""


def test_connect_dup_retransmit_subscribe_ping_and_incoming(tmp_path):
    b = ScriptedBroker()
    b.start()
    out = harness.run_mp(CLIENT.format(port=b.port), cwd=tmp_path)
    b.join(10)
    assert "session 0" in out and "published" in out
    assert 'got (\'x/cmd\', b\'{"id":"k","op":"ping"}\')' in out
    kinds = [e[0] for e in b.log]
    assert kinds == [
        "CONNECT",
        "PUBLISH",
        "PUBLISH",
        "SUBSCRIBE",
        "PINGREQ",
        "PUBACK",
        "DISCONNECT",
    ]
    c = b.log[0][1]
    assert c[:7] == b"\x00\x04MQTT\x04"
    flags = c[7]
    # user, password, will retain, will QoS 1, will, clean session
    assert flags == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert struct.unpack("!H", c[8:10])[0] == 1
    cid, i = _mqtt_str(c, 10)
    wt, i = _mqtt_str(c, i)
    wm, i = _mqtt_str(c, i)
    u, i = _mqtt_str(c, i)
    p, i = _mqtt_str(c, i)
    assert (cid, wt, wm, u, p) == (b"st-1", b"w/status", b'{"state":"offline"}', b"user1", b"pw1")
    _, t1, topic, pid1, payload = b.log[1]
    _, t2, _, pid2, _ = b.log[2]
    assert topic == b"a/reading" and payload == b"hello"
    assert t1 == 0x33 and t2 == 0x3B  # QoS 1 + retain; the retransmission adds DUP
    assert pid1 == pid2
    assert b.log[3] == ("SUBSCRIBE", b"x/cmd", 1)
    assert b.log[5] == ("PUBACK", 7)


def test_keepalive_holds_an_idle_session_on_mosquitto(tmp_path):
    # keepalive 1 s: Mosquitto drops a silent client after 1.5 s, so surviving 4 s of
    # idling proves the PINGREQs flow; then a QoS 1 publish still gets its PUBACK.
    with harness.broker(tmp_path) as mq:
        out = harness.run_mp(
            f"""
from time import sleep_ms
from mqtt import MQTTClient
c = MQTTClient('idle-1', '127.0.0.1', {mq.port}, keepalive=1)
c.connect()
for _ in range(200):
    c.tick()
    c.check_msg()
    sleep_ms(20)
c.publish('t/x', 'still here', qos=1)
print('ok', c.tx_bytes > 20)
""",
            cwd=tmp_path,
        )
        assert "ok True" in out
