# Minimal MQTT 3.1.1 client for MicroPython: CONNECT (user/password, last will),
# PUBLISH QoS 0/1 (retained; QoS 1 waits for PUBACK and retransmits with DUP),
# SUBSCRIBE, PINGREQ keepalive and a non-blocking check for incoming messages.
# Written after umqtt.simple (small, blocking) and Peter Hinch's mqtt_as (timeouts,
# retransmission, liveness checks), without their asyncio and reconnect logic: the
# caller (net.py) owns reconnects and backoff. Every failure raises OSError
# (MQTTError), after which the caller must close() and connect again.
import socket
import struct
import select
from time import ticks_ms, ticks_diff
from micropython import const

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)

_INBOX_MAX = const(4)  # incoming messages held while we wait for an ack


class MQTTError(OSError):
    pass


def _str(b, s):
    # Append an MQTT UTF-8 string (2-byte length prefix).
    if isinstance(s, str):
        s = s.encode()
    b.extend(struct.pack("!H", len(s)))
    b.extend(s)


def _header(b, typ, n):
    # Fixed header: type byte and the variable-length "remaining length".
    b.append(typ)
    while True:
        d = n & 0x7F
        n >>= 7
        b.append(d | 0x80 if n else d)
        if not n:
            return


def tls_context(ca_path):
    # TLS that verifies the broker: its certificate must chain to the CA in ca_path (one
    # certificate, PEM or DER) and carry the name we dial (wrap_socket's server_hostname is
    # checked against its subjectAltNames). There is no unverified fallback: without a
    # readable CA this raises (OSError / ValueError) and the caller does not connect.
    import ssl
    with open(ca_path, "rb") as f:
        ca = f.read()
    if ca[:5] == b"-----":
        # PEM -> DER: not every mbedTLS build parses PEM (the unix port's does not).
        from binascii import a2b_base64
        parts = ca.split(b"-----")  # '', 'BEGIN CERTIFICATE', body, 'END CERTIFICATE', ...
        if len(parts) < 4:
            raise ValueError("bad PEM")
        ca = a2b_base64(b"".join(parts[2].split()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca)
    return ctx


class MQTTClient:
    def __init__(self, client_id, host, port=1883, user=None, password=None,
                 keepalive=30, ssl=None, timeout_ms=5000, retries=2):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user or None
        self.password = password or None
        self.keepalive = keepalive
        self.ssl = ssl  # an ssl.SSLContext (tls_context()), or None for plain TCP
        self.timeout_ms = timeout_ms
        self.retries = retries  # DUP retransmissions of a QoS 1 PUBLISH
        self.sock = None
        self._poll = None
        self.pid = 0
        self.will = None
        self.inbox = []
        self.dropped_in = 0
        self._acked_rc = 0
        self._last_tx = 0
        self._ping_at = None
        self.rx_bytes = 0
        self.tx_bytes = 0

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.will = (topic, msg, retain, qos)

    # --- connection -------------------------------------------------------------
    def connect(self, clean_session=True):
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        s = socket.socket()
        self.sock = s
        s.settimeout(self.timeout_ms / 1000)
        s.connect(addr)
        if self.ssl:
            # Handshake under the same socket timeout; a bad certificate, a name the
            # certificate does not carry or a plain-TCP peer raise OSError/ValueError here.
            try:
                s = self.ssl.wrap_socket(s, server_hostname=self.host)
            except ValueError as e:  # mbedTLS's reason can span lines: keep log lines whole
                raise MQTTError("tls: " + " ".join(str(e).split()))
            self.sock = s
        flags = 0x02 if clean_session else 0
        body = bytearray(b"\x00\x04MQTT\x04\x00")
        body.extend(struct.pack("!H", self.keepalive))
        _str(body, self.client_id)
        if self.will:
            t, m, r, q = self.will
            flags |= 0x04 | (q & 3) << 3 | (0x20 if r else 0)
            _str(body, t)
            _str(body, m)
        if self.user:
            flags |= 0x80
            _str(body, self.user)
            if self.password:
                flags |= 0x40
                _str(body, self.password)
        body[7] = flags
        pkt = bytearray()
        _header(pkt, _CONNECT, len(body))
        pkt.extend(body)
        self._write(pkt)
        del pkt, body
        typ, b = self._read_packet()
        if typ != _CONNACK or len(b) != 2:
            raise MQTTError("no _CONNACK")
        if b[1]:
            # 1 protocol, 2 id rejected, 3 unavailable, 4 bad user/password, 5 not authorised
            raise MQTTError("_CONNACK refused %d" % b[1])
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)
        self._ping_at = None
        return b[0] & 1  # session present

    def close(self):
        # Drop the TCP connection without DISCONNECT: the broker then publishes the will,
        # which is exactly what a crash or power cut looks like.
        s, self.sock, self._poll = self.sock, None, None
        if s:
            try:
                s.close()
            except OSError:
                pass

    def disconnect(self):
        # Clean goodbye (deep sleep): the broker discards the will.
        try:
            self._write(b"\xe0\x00")
        except OSError:
            pass
        self.close()

    # --- outgoing ---------------------------------------------------------------
    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def publish(self, topic, msg, retain=False, qos=0):
        if isinstance(msg, str):
            msg = msg.encode()
        if isinstance(topic, str):
            topic = topic.encode()
        pid = self._next_pid() if qos else 0
        hdr = bytearray()
        _header(hdr, _PUBLISH | qos << 1 | (1 if retain else 0),
                2 + len(topic) + (2 if qos else 0) + len(msg))
        _str(hdr, topic)
        if qos:
            hdr.extend(struct.pack("!H", pid))
        for attempt in range(self.retries + 1):
            if attempt:
                hdr[0] |= 0x08  # DUP: same packet id, the broker may have it already
            self._write(hdr)
            self._write(msg)
            if not qos or self._wait(_PUBACK, pid):
                return pid
        raise MQTTError("no _PUBACK")

    def subscribe(self, topic, qos=1):
        pid = self._next_pid()
        body = bytearray(struct.pack("!H", pid))
        _str(body, topic)
        body.append(qos)
        pkt = bytearray()
        _header(pkt, _SUBSCRIBE, len(body))
        pkt.extend(body)
        self._write(pkt)
        if not self._wait(_SUBACK, pid):
            raise MQTTError("no _SUBACK")
        if self._acked_rc == 0x80:
            raise MQTTError("subscribe refused")

    def ping(self):
        self._write(b"\xc0\x00")
        self._ping_at = ticks_ms()

    def tick(self):
        # Keepalive: ping after keepalive/2 of silence from us; a broker that has not
        # answered a ping within keepalive is dead even if TCP has not noticed yet.
        if not self.keepalive:
            return
        now = ticks_ms()
        if self._ping_at is not None:
            if ticks_diff(now, self._ping_at) > self.keepalive * 1000:
                raise MQTTError("ping timeout")
        elif ticks_diff(now, self._last_tx) >= self.keepalive * 500:
            self.ping()

    # --- incoming ---------------------------------------------------------------
    def check_msg(self):
        # Non-blocking: (topic, payload) of one incoming PUBLISH, or None.
        if self.inbox:
            return self.inbox.pop(0)
        while self._ready(0):
            typ, b = self._read_packet()
            m = self._handle(typ, b)
            if m:
                return m
        return None

    def _ready(self, timeout_ms):
        if self._poll is None:
            raise MQTTError("not connected")
        for _, ev in self._poll.poll(timeout_ms):
            if ev & select.POLLIN:
                return True
            if ev & (select.POLLHUP | select.POLLERR):
                raise MQTTError("connection lost")
        return False

    def _wait(self, want, pid):
        # Read packets until the ack `want` for `pid` arrives or timeout_ms passes.
        # Messages that arrive meanwhile are queued for check_msg().
        t0 = ticks_ms()
        while True:
            left = self.timeout_ms - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                return False
            if not self._ready(left):
                continue
            typ, b = self._read_packet()
            if typ == want and len(b) >= 2 and struct.unpack("!H", b[:2])[0] == pid:
                self._acked_rc = b[2] if len(b) > 2 else 0
                return True
            m = self._handle(typ, b)
            if m:
                if len(self.inbox) >= _INBOX_MAX:
                    self.inbox.pop(0)
                    self.dropped_in += 1
                self.inbox.append(m)

    def _handle(self, typ, b):
        t = typ & 0xF0
        if t == _PINGRESP:
            self._ping_at = None
        elif t == _PUBLISH:
            n = struct.unpack("!H", b[:2])[0]
            topic = bytes(b[2:2 + n]).decode()
            i = 2 + n
            qos = (typ >> 1) & 3
            if qos:
                pid = b[i:i + 2]
                i += 2
                self._write(b"\x40\x02" + bytes(pid))
            return topic, bytes(b[i:])
        # Late PUBACK/SUBACK of a retransmitted packet and anything else: ignore.
        return None

    # --- wire -------------------------------------------------------------------
    def _write(self, buf):
        if self.sock is None:
            raise MQTTError("not connected")
        mv = memoryview(buf)
        n = 0
        while n < len(buf):
            w = self.sock.write(mv[n:])
            if not w:
                raise MQTTError("write failed")
            n += w
        self.tx_bytes += n
        self._last_tx = ticks_ms()

    def _read(self, n):
        b = bytearray(n)
        mv = memoryview(b)
        got = 0
        while got < n:
            r = self.sock.readinto(mv[got:])
            if not r:
                raise MQTTError("connection closed")
            got += r
        self.rx_bytes += n
        return b

    def _read_packet(self):
        if self.sock is None:
            raise MQTTError("not connected")
        typ = self._read(1)[0]
        n = 0
        shift = 0
        while True:
            d = self._read(1)[0]
            n |= (d & 0x7F) << shift
            if not d & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("bad length")
        return typ, (self._read(n) if n else b"")
