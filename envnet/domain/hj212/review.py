"""Reviewers' invalidations applied to the samples of an HJ 212 window (pure).

The uplink aggregates samples (ts, values, flags) into hour and day data (gateway/uplink.py
`aggregate`). A value inside an invalidated hour, of a parameter the invalidation covers, gets
the QC flag of the invalidation's reason (codes.REVIEW_FLAGS) in place of its own, so the
aggregation treats it as it treats any flagged value: the hour goes out with the reviewed flag
(M, C or D) and the day leaves the hour out of its valid hours and its mean. The same function
serves windows closed after the review and corrections of windows sent before it, so both
send the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from envnet.domain.hj212 import codes
from envnet.domain.review.invalidation import covers

Sample = tuple[float, dict, dict]  # (ts, {parameter: value}, {parameter or "*": QC flag})
WHOLE_NOT_EVALUATED = ("maint", "cal")  # a whole-reading flag that flags every value


@dataclass(frozen=True, slots=True)
class Span:
    """One active invalidation as the uplink needs it."""

    hour_start: int
    hour_end: int
    parameters: tuple[str, ...]
    reason: str

    @property
    def flag(self) -> str:
        return codes.REVIEW_FLAGS.get(self.reason, "fault")


def reviewed(samples: Iterable[Sample], spans: Sequence[Span]) -> list[Sample]:
    """The samples with the invalidated values flagged (the others unchanged)."""
    if not spans:
        return list(samples)
    out: list[Sample] = []
    for ts, values, flags in samples:
        hits = [s for s in spans if s.hour_start <= ts < s.hour_end]
        if not hits:
            out.append((ts, values, flags))
            continue
        new = dict(flags)
        whole = new.get("*")
        if whole in WHOLE_NOT_EVALUATED:
            # spread the whole-reading flag over the values, so one value can be overridden
            del new["*"]
            for p in values:
                new[p] = whole
        for span in hits:
            for p in values:
                if covers(span.parameters, p):
                    new[p] = span.flag
        out.append((ts, values, new))
    return out
