"""Webhook delivery end to end: the real server process delivers to a real HTTP receiver on
localhost that fails on purpose (5xx, timeouts, refused connections, 410), events enqueued by
another process (this one, as the gateway would), the server killed and restarted midway."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import Proc, wait_until

from envnet.config import load_config
from envnet.devkit.services import free_port
from envnet.domain.webhooks import Event
from envnet.store.webhooks import emit

REPO = Path(__file__).resolve().parent.parent
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "bureau-shared-secret-0123456789"


# -- a receiver that misbehaves on request ------------------------------------------------------
@dataclass
class Got:
    at: float  # time.monotonic() when the request arrived
    headers: dict[str, str]
    body: bytes
    answered: int | str  # the status we answered, or "hang" / "close"

    @property
    def delivery(self) -> str:
        return self.headers["x-envnet-delivery"]

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """ThreadingHTTPServer on 127.0.0.1. `behave(n)` says what to do with the n-th request
    (0-based): an HTTP status, ("hang", seconds) to answer 200 only after that long, or "close"
    to drop the connection without an answer."""

    port: int = 0
    behave: Callable[[int], object] = lambda n: 200
    got: list[Got] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with rx._lock:
                    n = len(rx.got)
                    what = rx.behave(n)
                    rx.got.append(
                        Got(
                            time.monotonic(),
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            what if isinstance(what, int | str) else "hang",
                        )
                    )
                if what == "close":
                    self.close_connection = True
                    self.connection.close()
                    return
                if isinstance(what, tuple):
                    time.sleep(what[1])
                    what = 200
                payload = b'{"ok": false}' if what >= 300 else b""
                self.send_response(what)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # the sender hung up on a request we answer late: expected here

        self._httpd = Quiet(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Got]:
        with self._lock:
            return [g for g in self.got if isinstance(g.answered, int) and g.answered < 300]

    def count(self) -> int:
        with self._lock:
            return len(self.got)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(**kw) -> Receiver:
        r = Receiver(**kw).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


# -- the server process ------------------------------------------------------------------------
class Server:
    def __init__(self, tmp_path: Path, **webhooks: object) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNET_")}
        self.env.update(
            ENVNET_STORE_PATH=str(tmp_path / "envnet.db"),
            ENVNET_SERVER_LISTEN=f"127.0.0.1:{free_port()}",
            ENVNET_SERVER_API_KEY=KEY,
            ENVNET_SERVER_PUBLIC_URL="https://envnet.example.cn",
            ENVNET_WEBHOOKS_POLL_INTERVAL_S="0.05",
            ENVNET_WEBHOOKS_TIMEOUT_S="0.5",
        )
        for k, v in webhooks.items():
            self.env[f"ENVNET_WEBHOOKS_{k.upper()}"] = str(v)
        self.base = f"http://{self.env['ENVNET_SERVER_LISTEN']}"
        self.store = Path(self.env["ENVNET_STORE_PATH"])
        self.log = tmp_path / "server.log"
        self.proc: Proc | None = None
        # what the gateway would load: the same config, hence the same store and public URL
        self.settings = load_config(None, environ=self.env)

    def start(self) -> Server:
        self.proc = Proc(["server", "--log-level", "warning"], self.env, self.log).start()
        wait_until(
            lambda: httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200,
            20,
            0.05,
            what="server",
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, f"{self.base}{path}", headers=AUTH, timeout=5, **kw)

    def subscribe(self, url: str, **kw) -> str:
        r = self.api("POST", "/webhooks", json={"url": url, "secret": SECRET, **kw})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def deliveries(self, sub: str, **params) -> list[dict]:
        r = self.api("GET", f"/webhooks/{sub}/deliveries", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_status(self, sub: str, status: str, n: int = 1, timeout: float = 15) -> list[dict]:
        return wait_until(
            lambda: (ds := self.deliveries(sub, status=status)) and len(ds) >= n and ds,
            timeout,
            0.05,
            what=f"{n} {status} deliveries",
        )


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(**webhooks: object) -> Server:
        s = Server(tmp_path, **webhooks)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
    for s in made:
        if s.log.exists():
            assert "Traceback" not in s.log.read_text(errors="replace"), s.log.read_text()


def alert(n: int, station: str = "sy-001") -> dict:
    return {
        "id": f"al-{n}",
        "station": station,
        "rule": "gb3095.1h",
        "parameter": "no2",
        "severity": "warning",
        "window": "1h",
        "value": 200.0 + n,
        "limit": 200.0,
        "standard": "GB 3095-2012",
        "opened_at": 1714550400.0 + n,
        "state": "open",
        "last_value": 200.0 + n,
        "category": {"zh": "轻度污染", "en": "lightly polluted"},
    }


def receiver_verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """docs/webhooks.md's verify_signature, taken from the guide itself so that it stays true."""
    text = (REPO / "docs" / "webhooks.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code, "docs/webhooks.md has no python receiver example"
    ns: dict = {"__name__": "receiver_example"}
    exec(compile(code.group(1), "docs/webhooks.md", "exec"), ns)
    return ns["verify_signature"](secret, body, header)


# -- the tests ----------------------------------------------------------------------------------
def test_retries_follow_the_schedule_then_deliver(servers, receivers) -> None:
    base, factor, cap, jitter = 0.3, 2.0, 1.0, 0.2
    srv = servers(
        backoff_base_s=base, backoff_factor=factor, backoff_cap_s=cap, jitter=jitter, max_attempts=6
    ).start()
    answers = [500, 503, 502, 200]
    rx = receivers(behave=lambda n: answers[n] if n < len(answers) else 200)
    sub = srv.subscribe(rx.url, events=["alert.opened"])

    emit(srv.settings, Event("alert.opened", alert(1)))  # from another process, like the gateway
    [d] = srv.wait_status(sub, "delivered")

    got = rx.got
    assert [g.answered for g in got] == answers
    gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
    expected = [min(cap, base * factor**i) for i in range(3)]  # 0.3, 0.6, 1.0 (capped)
    print("\nmeasured retry gaps (s):", [round(g, 3) for g in gaps], "schedule:", expected)
    for gap, full in zip(gaps, expected, strict=True):
        assert full * (1 - jitter) - 0.02 <= gap <= full + 0.3, (gaps, expected)
    # one delivery: same id, same bytes, valid signature, attempt numbers counting up
    assert {g.delivery for g in got} == {d["id"]}
    assert len({g.body for g in got}) == 1
    assert [g.headers["x-envnet-attempt"] for g in got] == ["1", "2", "3", "4"]
    for g in got:
        assert g.headers["x-envnet-event"] == "alert.opened"
        assert g.headers["content-type"].startswith("application/json")
        assert receiver_verify(SECRET.encode(), g.body, g.headers["x-envnet-signature"])
    # the API shows every attempt
    assert d["attempts"] == 4 and d["last_status_code"] == 200
    assert [a["status_code"] for a in d["attempt_log"]] == answers
    assert [a["outcome"] for a in d["attempt_log"]] == ["retry"] * 3 + ["delivered"]
    body = got[-1].event
    assert body["data"]["category"] == {"zh": "轻度污染", "en": "lightly polluted"}
    assert body["links"]["self"] == "https://envnet.example.cn/alerts/al-1"
    metrics = httpx.get(f"{srv.base}/metrics").text
    assert 'envnet_webhook_deliveries{status="delivered"} 1.0' in metrics
    assert 'envnet_webhook_delivery_attempts_total{outcome="retry"} 3.0' in metrics


def test_refused_timeout_and_410_then_redeliver_dead_letter(servers, receivers) -> None:
    srv = servers(backoff_base_s=0.1, backoff_cap_s=0.4, jitter=0, max_attempts=3).start()
    closed_port = free_port()  # nothing listens here (yet)
    slow = receivers(behave=lambda n: ("hang", 1.5))  # longer than timeout_s=0.5
    gone = receivers(behave=lambda n: 410)
    s_refused = srv.subscribe(f"http://127.0.0.1:{closed_port}/hook", events=["alert.opened"])
    s_slow = srv.subscribe(slow.url, events=["alert.opened"])
    s_gone = srv.subscribe(gone.url)

    emit(srv.settings, Event("alert.opened", alert(1)))
    emit(srv.settings, Event("alert.resolved", {**alert(1), "state": "resolved"}))

    [dead] = srv.wait_status(s_refused, "dead", n=1)
    assert dead["event_type"] == "alert.opened" and dead["attempts"] == 3
    for a in dead["attempt_log"]:
        assert a["status_code"] is None and "connection failed" in a["error"]
    # a 410 fails at once: no retry, and the next event is not held back by it
    failed = srv.wait_status(s_gone, "failed", n=2)
    assert [d["last_status_code"] for d in failed] == [410, 410]
    assert all(d["attempts"] == 1 for d in failed)
    # timeouts are retried like errors, with the same delivery id every time
    [slow_dead] = srv.wait_status(s_slow, "dead", n=1, timeout=20)
    assert [a["error"].split(" after")[0] for a in slow_dead["attempt_log"]] == ["timeout"] * 3
    assert {g.delivery for g in slow.got[:3]} == {slow_dead["id"]}
    time.sleep(0.3)
    assert gone.count() == 2  # nothing retried the 410s

    # the receiver comes back on that port; the dead letter is sent again by hand
    back = receivers(port=closed_port)
    r = srv.api("POST", f"/webhooks/{s_refused}/deliveries/{dead['id']}/redeliver")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending" and r.json()["id"] == dead["id"]
    wait_until(lambda: len(back.delivered()) == 1, 10, 0.05, what="the redelivery")
    assert back.got[0].delivery == dead["id"]  # the same delivery id as before
    assert back.got[0].event["type"] == "alert.opened"
    redone = srv.api("GET", f"/webhooks/{s_refused}/deliveries/{dead['id']}").json()
    assert redone["status"] == "delivered" and redone["attempts"] == 4
    assert redone["body"] == back.got[0].event

    unknown = srv.api("POST", f"/webhooks/{s_refused}/deliveries/nope/redeliver")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


def test_in_order_across_a_crash_and_nothing_lost_or_renamed(servers, receivers) -> None:
    srv = servers(backoff_base_s=0.1, backoff_cap_s=0.3, jitter=0.25, max_attempts=100).start()
    mode = {"answer": 500}
    rx = receivers(behave=lambda n: mode["answer"])
    sub = srv.subscribe(rx.url, stations=["sy-001", "sy-002"])

    sent = [emit(srv.settings, Event("alert.opened", alert(i, "sy-001"))) for i in range(4)]
    emit(srv.settings, Event("alert.opened", alert(99, "sy-404")))  # filtered out: other station
    wait_until(lambda: rx.count() >= 3, 10, 0.02, what="a few failed attempts")
    # the head holds the rest back: only the first event has been tried
    assert {g.event["id"] for g in rx.got} == {sent[0]}

    srv.kill()  # crash between attempts
    sent += [
        emit(srv.settings, Event("station.offline", {"station": "sy-002", "n": i}))
        for i in range(3)
    ]
    mode["answer"] = 200
    srv.start()

    wait_until(lambda: len({g.event["id"] for g in rx.delivered()}) == 7, 15, 0.05, what="all 7")
    # then a crash with a request in flight: the receiver got it, the server never heard back
    mode["answer"] = ("hang", 3.0)
    sent.append(emit(srv.settings, Event("alert.resolved", {**alert(0), "state": "resolved"})))
    wait_until(lambda: rx.got[-1].event["id"] == sent[-1], 10, 0.02, what="request in flight")
    srv.kill()
    mode["answer"] = 200
    srv.start()  # takes over the dead process's lease at once, retries with the same id
    wait_until(lambda: rx.delivered()[-1].event["id"] == sent[-1], 10, 0.05, what="last event")
    assert len([g for g in rx.got if g.event["id"] == sent[-1]]) == 2  # sent twice, same id

    firsts: list[str] = []
    ids_of: dict[str, set[str]] = {}
    for g in rx.got:
        ids_of.setdefault(g.event["id"], set()).add(g.delivery)
        if isinstance(g.answered, int) and g.answered < 300 and g.event["id"] not in firsts:
            firsts.append(g.event["id"])
    assert firsts == sent  # in order, none lost, the filtered one never sent
    assert all(len(ids) == 1 for ids in ids_of.values())  # never a second delivery id
    assert len(set().union(*ids_of.values())) == len(sent)
    ds = srv.deliveries(sub, limit=500)
    assert len(ds) == len(sent) and {d["status"] for d in ds} == {"delivered"}
    assert sum(d["attempts"] for d in ds) <= rx.count()


def test_signature_verified_by_the_receiver_and_tampering_detected(servers, receivers) -> None:
    srv = servers().start()
    rx = receivers()
    sub = srv.subscribe(rx.url, events=["episode.changed"])
    emit(
        srv.store,
        Event(
            "episode.changed",
            {
                "level": "orange",
                "label": {"zh": "橙色预警(Ⅱ级)", "en": "orange warning (level II)"},
            },
        ),
    )
    r = srv.api("POST", f"/webhooks/{sub}/ping")
    assert r.status_code == 202 and r.json()["event_type"] == "ping"
    wait_until(lambda: len(rx.delivered()) == 2, 10, 0.05, what="two deliveries")
    episode, ping = rx.got
    assert ping.headers["x-envnet-event"] == "ping"
    assert "橙色预警".encode() in episode.body  # UTF-8, not \u escapes
    for g in (episode, ping):
        sig = g.headers["x-envnet-signature"]
        assert receiver_verify(SECRET.encode(), g.body, sig)
        tampered = g.body.replace(b'"type":"', b'"type":"x', 1)
        assert tampered != g.body and not receiver_verify(SECRET.encode(), tampered, sig)
        assert not receiver_verify(b"some-other-secret-abc", g.body, sig)
        assert not receiver_verify(SECRET.encode(), g.body, None)
        reencoded = json.dumps(json.loads(g.body)).encode()  # parsed and re-serialised
        assert not receiver_verify(SECRET.encode(), reencoded, sig)
    # the openssl one-liner of the guide gives the same header
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", SECRET, "-r"],
        input=episode.body,
        capture_output=True,
        check=True,
    )
    assert "sha256=" + out.stdout.split()[0].decode() == episode.headers["x-envnet-signature"]
    assert episode.headers["x-envnet-signature"] == (
        "sha256=" + hmac.new(SECRET.encode(), episode.body, hashlib.sha256).hexdigest()
    )
