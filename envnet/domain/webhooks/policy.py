"""What an attempt's answer means and how long to wait before the next one.

2xx delivered; network error, timeout, 408, 429 or 5xx retried after
min(cap, base * factor**(n-1)) seconds shortened by up to `jitter` at random (a longer
Retry-After is honoured, up to the cap), and dead-lettered after `max_attempts`; any other
status (3xx redirects, 4xx such as 400, 401, 404, 410) fails at once.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from datetime import UTC
from typing import Literal, Protocol

Status = Literal["pending", "delivered", "failed", "dead"]
STATUSES: tuple[str, ...] = ("pending", "delivered", "failed", "dead")
Outcome = Literal["delivered", "retry", "failed", "dead"]
OUTCOMES: tuple[str, ...] = ("delivered", "retry", "failed", "dead")


class RetryPolicy(Protocol):
    """The retry knobs (envnet.config.WebhookSettings has them)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def backoff_base_s(self) -> float: ...
    @property
    def backoff_factor(self) -> float: ...
    @property
    def backoff_cap_s(self) -> float: ...
    @property
    def jitter(self) -> float: ...


def classify(status_code: int | None) -> Literal["delivered", "retry", "failed"]:
    """The outcome of one attempt; None means no HTTP answer (refused, reset, timeout)."""
    if status_code is None:
        return "retry"
    if 200 <= status_code < 300:
        return "delivered"
    if status_code in (408, 429) or status_code >= 500:
        return "retry"
    return "failed"


def backoff_s(attempt: int, cfg: RetryPolicy, rnd: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based) before the next one."""
    full = min(cfg.backoff_cap_s, cfg.backoff_base_s * cfg.backoff_factor ** (attempt - 1))
    return full * (1.0 - cfg.jitter * rnd())


def retry_after_s(value: str | None, now: float) -> float | None:
    """A Retry-After header (delta seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def next_step(
    status_code: int | None,
    round_attempt: int,
    retry_after: float | None,
    cfg: RetryPolicy,
    now: float,
) -> tuple[Outcome, float | None]:
    """What follows attempt number `round_attempt` (1-based, since the delivery was last
    queued) that got `status_code`: the outcome, and for "retry" when to try again."""
    outcome: Outcome = classify(status_code)
    if outcome != "retry":
        return outcome, None
    if round_attempt >= cfg.max_attempts:
        return "dead", None
    delay = backoff_s(round_attempt, cfg)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cfg.backoff_cap_s))
    return outcome, now + delay
