# Network link: Wi-Fi (through the board layer) and one MQTT session, reconnected
# with exponential backoff plus jitter (so that a city of stations does not hammer a
# broker that just came back all in the same second). On every connect: last will
# {"state":"offline"} retained, birth {"state":"online",...} retained, subscribe to
# our cmd topic. Any OSError drops the session; the station keeps sampling and
# buffering meanwhile.
import gc
import json
import random
from time import ticks_ms, ticks_diff, ticks_add
import log
from mqtt import MQTTClient, tls_context
from contract import TOPIC_ROOT


class Link:
    def __init__(self, cfg, board, errors, birth):
        self.cfg = cfg
        self.board = board
        self.errors = errors
        self.birth = birth  # callable -> birth dict
        self.root = TOPIC_ROOT + cfg["station_id"] + "/"
        self.client = None
        self.fails = 0
        self.retry_at = ticks_ms()
        self.wifi_started = False
        self.last_error = None
        self.connects = 0
        self.tx_bytes = 0  # of closed sessions; client.tx_bytes adds the open one

    @property
    def up(self):
        return self.client is not None

    def topic(self, sub):
        return self.root + sub

    def tick(self):
        # Keep the link alive; -> one incoming (topic, payload) or None.
        if not self.board.wifi_up():
            if self.client:
                self.drop("wifi lost")
            if not self.wifi_started or self._due():
                w = self.cfg["wifi"]
                self.board.wifi_start(w["ssid"], w["password"])
                self.wifi_started = True
                self._backoff()
            return None
        if self.client is None:
            if self._due():
                self.connect()
            return None
        try:
            self.client.tick()
            return self.client.check_msg()
        except OSError as e:
            self.drop(e)
        return None

    def _due(self):
        return ticks_diff(ticks_ms(), self.retry_at) >= 0

    def _backoff(self):
        # 1, 2, 4 ... s up to backoff_max_s, each drawn from [d/2, d] ("equal jitter").
        d = min(self.cfg["backoff_max_s"], 2 ** min(self.fails, 16))
        self.fails += 1
        wait = d / 2 + random.random() * d / 2
        self.retry_at = ticks_add(ticks_ms(), int(wait * 1000))
        return wait

    def connect(self):
        m = self.cfg["mqtt"]
        gc.collect()
        self.board.fault_point("connect")
        try:
            ssl = tls_context(m["ca"]) if m["tls"] else None
        except (OSError, ValueError) as e:
            # No usable CA file: no connection at all, never an unverified one.
            self.errors["tls"] = self.errors.get("tls", 0) + 1
            self.drop("tls: CA file %s: %r" % (m["ca"], e))
            return False
        c = MQTTClient(self.cfg["station_id"], m["host"], m["port"], m["user"], m["password"],
                       keepalive=m["keepalive"], ssl=ssl)
        c.set_last_will(self.topic("status"), '{"state":"offline"}', retain=True, qos=1)
        try:
            c.connect(clean_session=True)
            self.client = c
            c.publish(self.topic("status"), json.dumps(self.birth()), retain=True, qos=1)
            c.subscribe(self.topic("cmd"), qos=1)
        except (OSError, ValueError) as e:  # ValueError: some TLS failures on some ports
            self.errors["mqtt"] = self.errors.get("mqtt", 0) + 1
            self.client = c
            self.drop(e)
            return False
        self.fails = 0
        self.connects += 1
        self.last_error = None
        log.info("mqtt connected to %s:%s%s" % (m["host"], m["port"], " (tls)" if m["tls"] else ""))
        return True

    def drop(self, why):
        if self.client:
            self.tx_bytes += self.client.tx_bytes
            self.client.close()
            self.client = None
        self.last_error = str(why)
        wait = self._backoff()
        log.warn("mqtt down (%s), retry in %.1f s" % (why, wait))
        gc.collect()

    def disconnect(self):
        # Clean goodbye before deep sleep, so the broker keeps our "online" status.
        if self.client:
            self.tx_bytes += self.client.tx_bytes
            self.client.disconnect()
            self.client = None

    def publish(self, sub, payload, retain=False):
        # QoS 1; True once the broker acknowledged it. False drops the session.
        if self.client is None:
            return False
        try:
            self.client.publish(self.topic(sub), payload, retain=retain, qos=1)
            return True
        except OSError as e:
            self.errors["pub"] = self.errors.get("pub", 0) + 1
            self.drop(e)
            return False

    def sent_bytes(self):
        return self.tx_bytes + (self.client.tx_bytes if self.client else 0)
