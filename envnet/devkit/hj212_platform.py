"""A small HJ 212-2017 platform for tests: a threaded TCP server that checks framing and CRC,
records every packet and acknowledges data packets with 9014 when their Flag asks for it.

stop() closes the listener and every connection (an outage); start() listens again on the
same port. `errors` records the packets that failed to decode, with the reason.
"""

from __future__ import annotations

import socket
import threading
import time

from envnet.domain.hj212.codec import FLAG_ACK, DecodeError, FrameReader, Packet


class TestPlatform:
    __test__ = False  # not a pytest class

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ack: bool = True) -> None:
        self.host, self.port, self.ack = host, port, ack
        self.packets: list[Packet] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.connections = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> TestPlatform:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        self.port = s.getsockname()[1]
        s.listen(8)
        self._listener = s
        t = threading.Thread(target=self._accept, args=(s,), daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        if self._listener:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self.lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(2)
        self._threads = []

    def __enter__(self) -> TestPlatform:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- queries --------------------------------------------------------------------------
    def received(self, cn: str | None = None, mn: str | None = None) -> list[Packet]:
        with self.lock:
            return [
                p for p in self.packets if (cn is None or p.cn == cn) and (mn is None or p.mn == mn)
            ]

    def request(self, cn: str, mn: str, qn: str, cp: dict[str, str] | None = None) -> None:
        """Send a request packet (e.g. 1011) to every connected field unit."""
        pkt = Packet(cn=cn, st="22", mn=mn, qn=qn, flag=4 | FLAG_ACK, cp=cp or {}).encode()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            c.sendall(pkt)

    # -- server ---------------------------------------------------------------------------
    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with self.lock:
                self._conns.append(conn)
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        reader = FrameReader()
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                conn.close()
                return
            for item in reader.feed(data):
                if isinstance(item, DecodeError):
                    with self.lock:
                        self.errors.append(str(item))
                    continue
                with self.lock:
                    self.packets.append(item)
                if self.ack and item.needs_ack and item.cn.startswith(("2", "3")):
                    ack = Packet(
                        cn="9014", st="91", pw=item.pw, mn=item.mn, qn=item.qn, flag=4, cp={}
                    )
                    try:
                        conn.sendall(ack.encode())
                    except OSError:
                        return


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = check()
        if r:
            return r
        time.sleep(0.05)
    return check()
