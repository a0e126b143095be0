"""The delivery worker: sends the outbox's deliveries from the server process (httpx).

One thread claims due subscription heads (envnet/store/webhooks/outbox.py: in order per
subscription, under a lease), a small pool sends them, one delivery per subscription at a
time; each answer is recorded and the delivery moved on by the retry policy
(envnet/domain/webhooks/policy.py). Several server processes may run one each.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from envnet.config import WebhookSettings
from envnet.domain.webhooks.policy import retry_after_s
from envnet.domain.webhooks.signing import USER_AGENT, delivery_headers
from envnet.store.webhooks.outbox import Claim, Outbox, unwatch, watch
from server import metrics

log = logging.getLogger("envnet.webhooks")


@dataclass
class AttemptResult:
    started_at: float
    duration_ms: float
    status_code: int | None
    error: str | None
    retry_after: float | None


class DeliveryWorker:
    """Delivers the outbox from the server process: one thread that claims due subscription
    heads, a small pool that sends them (one delivery per subscription at a time)."""

    def __init__(self, outbox: Outbox, cfg: WebhookSettings) -> None:
        self.outbox = outbox
        self.cfg = cfg
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        # A claim outlives any one attempt (connect + write + read timeouts) comfortably.
        self.lease_s = 3 * cfg.timeout_s + 5.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        self._last_prune = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        try:
            n = self.outbox.release_dead_owners(self.host)
            if n:
                log.info("took over %d webhook deliveries from a server that stopped", n)
        except sqlite3.Error as e:
            log.warning("could not check stale webhook leases: %s", e)
        self._pool = ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="webhook")
        watch(self.outbox.path, self.wake)
        self._thread = threading.Thread(target=self._loop, name="webhook-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; let attempts in flight finish (each is bounded by the timeout)."""
        if self._thread is None:
            return
        unwatch(self.outbox.path, self.wake)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout if timeout is not None else self.lease_s)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.outbox.release_leases(self.owner)
        except sqlite3.Error as e:
            log.warning("could not release webhook leases: %s", e)
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
        self._thread = None
        self._pool = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            delay = self.cfg.poll_interval_s
            try:
                delay = self._tick()
            except Exception:
                log.exception("webhook worker: tick failed; retrying")
            self._wake.wait(max(0.0, min(delay, self.cfg.poll_interval_s)))
            self._wake.clear()

    def _tick(self) -> float:
        now = time.time()
        with self._inflight_lock:
            busy = set(self._inflight)
        free = self.cfg.concurrency - len(busy)
        claims = self.outbox.claim_due(self.owner, now, free, self.lease_s, busy)
        assert self._pool is not None
        for claim in claims:
            with self._inflight_lock:
                self._inflight.add(claim.subscription_id)
            self._pool.submit(self._run, claim)
        if self.cfg.keep_days and now - self._last_prune > 3600:
            self._last_prune = now
            n = self.outbox.prune(now - self.cfg.keep_days * 86400)
            if n:
                log.info("pruned %d finished webhook deliveries", n)
        with self._inflight_lock:
            busy = set(self._inflight)
        if len(busy) >= self.cfg.concurrency:
            return self.cfg.poll_interval_s  # full: a finishing attempt wakes the loop
        due = self.outbox.next_due_at(busy)
        return self.cfg.poll_interval_s if due is None else due - time.time()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                timeout=httpx.Timeout(self.cfg.timeout_s),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def attempt(self, claim: Claim) -> AttemptResult:
        """One HTTP POST of the delivery; never raises."""
        body = claim.body.encode("utf-8")
        sent_headers = delivery_headers(
            claim.secret, body, claim.event_type, claim.delivery_id, claim.attempts + 1
        )
        started = time.time()
        t0 = time.monotonic()
        code: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            with self._client().stream("POST", claim.url, content=body, headers=sent_headers) as r:
                code = r.status_code
                snippet = b""
                for chunk in r.iter_bytes():  # a little of the answer, for the attempt log
                    snippet += chunk
                    if len(snippet) >= 512 or time.monotonic() - t0 > 2 * self.cfg.timeout_s:
                        break
                if not 200 <= code < 300:
                    text = snippet[:200].decode("utf-8", "replace").strip()
                    error = f"HTTP {code}" + (f": {text}" if text else "")
                    if 300 <= code < 400 and r.headers.get("location"):
                        error = f"HTTP {code}: redirect to {r.headers['location']} not followed"
                    if code in (429, 503):
                        retry_after = retry_after_s(r.headers.get("retry-after"), time.time())
        except httpx.TimeoutException as e:
            error = f"timeout after {self.cfg.timeout_s:g} s ({type(e).__name__})"
        except httpx.ConnectError as e:
            error = f"connection failed: {e}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # a bad URL that slipped through, an SSL surprise...
            error = f"{type(e).__name__}: {e}"
        if code is not None and error is None and not 200 <= code < 300:
            error = f"HTTP {code}"
        duration_ms = (time.monotonic() - t0) * 1000
        return AttemptResult(started, duration_ms, code, error, retry_after)

    def _run(self, claim: Claim) -> None:
        try:
            res = self.attempt(claim)
            outcome = self.outbox.record_attempt(
                claim,
                self.owner,
                self.cfg,
                res.started_at,
                res.duration_ms,
                res.status_code,
                res.error,
                res.retry_after,
            )
            metrics.webhook_attempts.labels(outcome=outcome).inc()
            metrics.webhook_attempt_seconds.observe(res.duration_ms / 1000)
            level = logging.INFO if outcome == "delivered" else logging.WARNING
            log.log(
                level,
                "webhook %s %s -> %s: %s%s",
                claim.event_type,
                claim.delivery_id,
                claim.url,
                outcome,
                f" ({res.error})" if res.error else "",
            )
        except Exception:
            log.exception("webhook delivery %s: could not record the attempt", claim.delivery_id)
        finally:
            with self._inflight_lock:
                self._inflight.discard(claim.subscription_id)
            self._wake.set()
