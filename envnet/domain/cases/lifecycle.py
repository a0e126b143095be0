"""A case's states and the moves between them, as pure functions over its timestamps.

    assigned --sign--> signed --report--> reported --verify--> verified -> closed
                                   ^                    |
                       handling <--+------return--------+     (handling --report--> reported)

Only verification (by the duty room) closes a case; readings returning to normal are kept as
evidence (`normal_since`) and never move the state. `reassign` gives the case to another unit
and starts a new cycle (it must be signed again); `return` starts a new cycle of handling.
Each cycle has its own signing and reporting deadlines (slips.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

CaseState = Literal["assigned", "signed", "handling", "reported", "verified", "closed"]
STATES: tuple[str, ...] = ("assigned", "signed", "handling", "reported", "verified", "closed")
OPEN_STATES: tuple[str, ...] = ("assigned", "signed", "handling", "reported")
Action = Literal["sign", "report", "verify", "return", "reassign"]
ACTIONS: tuple[str, ...] = ("sign", "report", "verify", "return", "reassign")

# action -> (states it may start from, state it leads to)
MOVES: dict[str, tuple[frozenset[str], str]] = {
    "sign": (frozenset({"assigned"}), "signed"),
    "report": (frozenset({"signed", "handling"}), "reported"),
    "verify": (frozenset({"reported"}), "closed"),  # through "verified", recorded on the way
    "return": (frozenset({"reported"}), "handling"),
    "reassign": (frozenset({"assigned", "signed", "handling"}), "assigned"),
}


class TransitionError(ValueError):
    """The move is not allowed from the case's state; str() says why (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class CaseClock:
    """What the lifecycle and the slip schedule read of a case (all unix seconds)."""

    id: str
    rule: str
    severity: str
    state: str
    opened_at: float
    cycle: int = 0
    cycle_started_at: float = 0.0
    signed_at: float | None = None
    reported_at: float | None = None
    verified_at: float | None = None
    closed_at: float | None = None
    normal_since: float | None = None  # evidence only: values back within the limit


def move(case: CaseClock, action: str, at: float) -> tuple[CaseClock, list[str]]:
    """The case after `action` at `at`, and the states it passed through (for history,
    audit and events: verify passes "verified" then "closed")."""
    if action not in MOVES:
        raise TransitionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    sources, target = MOVES[action]
    if case.state not in sources:
        allowed = ", ".join(sorted(sources))
        raise TransitionError(
            f"case {case.id} is {case.state}: {action} needs a case that is {allowed}"
        )
    if action == "sign":
        return replace(case, state=target, signed_at=at), ["signed"]
    if action == "report":
        return replace(case, state=target, reported_at=at), ["reported"]
    if action == "verify":
        return replace(case, state=target, verified_at=at, closed_at=at), ["verified", "closed"]
    if action == "return":
        nxt = replace(
            case, state=target, cycle=case.cycle + 1, cycle_started_at=at, reported_at=None
        )
        return nxt, ["returned", "handling"]
    nxt = replace(  # reassign: a new unit signs again
        case,
        state=target,
        cycle=case.cycle + 1,
        cycle_started_at=at,
        signed_at=None,
        reported_at=None,
    )
    return nxt, ["reassigned"]
