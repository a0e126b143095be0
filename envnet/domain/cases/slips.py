"""The four slips (提示单 / 预警单 / 督办单 / 催办单) and when they are due: `due_slips`.

Pure: a case's timestamps, the time now and the policy in; the slips due by now out, each
with the due period it belongs to. The scheduler inserts them under a unique key
(case, kind, period), so evaluating the same case twice, in two processes or after a restart,
never issues one twice, and a slip due while no scheduler ran is issued when one runs again.

Each slip is judged against the case's history at its due time, not only its state now: a
supervision order for signing is due when signing was not done by the deadline, even if the
unit signed since (late) and the scheduler was down in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from envnet.domain.cases.lifecycle import CaseClock
from envnet.domain.cases.policy import Policy

# kind -> (中文, English); the order is the escalation ladder.
SLIP_KINDS: dict[str, tuple[str, str]] = {
    "notice": ("提示单", "notice"),
    "warning": ("预警单", "warning"),
    "supervision": ("督办单", "supervision order"),
    "urging": ("催办单", "urging"),
}


@dataclass(frozen=True, slots=True)
class DueSlip:
    kind: str  # one of SLIP_KINDS
    period: str  # unique per case and kind: "0", "c0.sign", "c1.report", "c0.sign.2"
    due_at: float
    reason: str  # "exceedance", "persists", "sign", "report"
    escalate: bool = False  # urging goes to the parent unit

    @property
    def label(self) -> tuple[str, str]:
        return SLIP_KINDS[self.kind]


def _late(done_at: float | None, due: float) -> bool:
    return done_at is None or done_at > due


def deadlines(case: CaseClock, policy: Policy) -> tuple[float | None, float]:
    """(signing deadline or None when this cycle needs no signing, reporting deadline)."""
    s = policy.schedule(case.rule, case.severity)
    start = case.cycle_started_at or case.opened_at
    needs_sign = case.signed_at is None or case.signed_at >= start
    return (start + s.sign_within_s if needs_sign else None), start + s.report_within_s


def due_slips(case: CaseClock, now: float, policy: Policy) -> list[DueSlip]:
    """Every slip of `case` due at or before `now`, in due order.

    - notice: at opening + notice_after_s;
    - warning: at opening + warning_after_s, when the readings were not back to normal by then;
    - supervision: at this cycle's signing (or reporting) deadline, when not signed (reported)
      by then;
    - urging: urge_after_s after a supervision order and every urge_every_s after that, up to
      urge_max, while still not signed (reported) at that time; escalated to the parent unit.
    Nothing is due at or after the case closed."""
    s = policy.schedule(case.rule, case.severity)
    out: list[DueSlip] = []

    def add(slip: DueSlip) -> None:
        if slip.due_at <= now and (case.closed_at is None or slip.due_at < case.closed_at):
            out.append(slip)

    add(DueSlip("notice", "0", case.opened_at + s.notice_after_s, "exceedance"))
    warn_at = case.opened_at + s.warning_after_s
    if _late(case.normal_since, warn_at):
        add(DueSlip("warning", "0", warn_at, "persists"))
    sign_due, report_due = deadlines(case, policy)
    phases: list[tuple[str, float, float | None]] = []
    if sign_due is not None:
        phases.append(("sign", sign_due, case.signed_at))
    phases.append(("report", report_due, case.reported_at))
    for step, due, done_at in phases:
        if not _late(done_at, due):
            continue
        period = f"c{case.cycle}.{step}"
        add(DueSlip("supervision", period, due, step))
        for k in range(int(s.urge_max)):
            at = due + s.urge_after_s + k * s.urge_every_s
            if _late(done_at, at):
                add(DueSlip("urging", f"{period}.{k + 1}", at, step, escalate=True))
    out.sort(key=lambda d: (d.due_at, d.kind))
    return out


def is_overdue(case: CaseClock, now: float, policy: Policy) -> bool:
    """Signing or reporting is past its deadline in the current cycle (GET /cases?overdue)."""
    if case.state not in ("assigned", "signed", "handling"):
        return False
    sign_due, report_due = deadlines(case, policy)
    if case.state == "assigned" and sign_due is not None and sign_due <= now:
        return True
    return report_due <= now
