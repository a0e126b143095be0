"""The supervision loop (闭环督办): cases for the responsible units, their lifecycle, and the
four slips with deadlines from a policy table. Pure logic; the store is envnet/store/cases.py,
the scheduler and the API are in the server (docs/cases.md)."""

from envnet.domain.cases.lifecycle import (
    ACTIONS,
    OPEN_STATES,
    STATES,
    CaseClock,
    TransitionError,
    move,
)
from envnet.domain.cases.policy import OpenPolicy, Policy, PolicyError, Schedule, load_policy
from envnet.domain.cases.settings import CaseSettings
from envnet.domain.cases.slips import SLIP_KINDS, DueSlip, deadlines, due_slips, is_overdue

__all__ = [
    "ACTIONS",
    "OPEN_STATES",
    "SLIP_KINDS",
    "STATES",
    "CaseClock",
    "CaseSettings",
    "DueSlip",
    "OpenPolicy",
    "Policy",
    "PolicyError",
    "Schedule",
    "TransitionError",
    "deadlines",
    "due_slips",
    "is_overdue",
    "load_policy",
    "move",
]
