"""Property: over random sequences of case actions, alerts and clock jumps (the real store and
the scheduler's pass, in-process), no slip of one kind is issued twice for one due period and
no case closes without verification."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envnet.config import load_config
from envnet.domain.cases import TransitionError, load_policy
from envnet.store.case_schedule import CaseScheduler
from envnet.store.cases import CaseStore
from envnet.store.state import SqliteStateStore

SITE = Path(__file__).resolve().parent.parent / "envnet" / "devkit" / "sites" / "shenyang.json"
ACTIONS = ("sign", "report", "verify", "return", "reassign")

step = st.one_of(
    st.tuples(st.just("jump"), st.floats(0, 3 * 86400)),
    st.tuples(st.just("tick"), st.just(0.0)),
    st.tuples(st.sampled_from(ACTIONS), st.integers(0, 3)),
    st.tuples(st.just("open"), st.integers(0, 3)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(step, min_size=1, max_size=40), st.sampled_from(["low", "high", "critical"]))
def test_random_sequences_keep_the_invariants(steps: list, severity: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(None, environ={"ENVNET_STORE_PATH": f"{d}/e.db"})
        state = SqliteStateStore(cfg.store.path)
        cases = CaseStore(state, load_policy(), cfg)
        cases.grid.load_file(SITE)
        sched = CaseScheduler(cases)
        now = 1_000_000.0
        ids: list[str] = []
        for kind, arg in steps:
            if kind == "jump":
                now += arg
            elif kind == "open":
                c = cases.open_case(
                    rule="aqi_category",
                    parameter=f"p{len(ids)}",
                    severity=severity,
                    at=now,
                    actor="t",
                    cell="tiexi-yanfen",
                )
                ids.append(c["id"])
            elif kind in ACTIONS and ids:
                cid = ids[int(arg) % len(ids)]
                unit = "heping-nanhu-office" if kind == "reassign" else None
                try:
                    cases.act(
                        cid,
                        kind,
                        at=now,
                        actor="t",
                        unit=unit,
                        report={"text": "x"} if kind == "report" else None,
                    )
                except TransitionError:
                    pass
            sched.run_pass(now)
            sched.run_pass(now)  # a second pass at the same time issues nothing new
        rows = state.query("SELECT case_id, kind, period FROM case_slips")
        keys = [tuple(r) for r in rows]
        assert len(keys) == len(set(keys))
        issued = state.query("SELECT count(*) FROM audit WHERE action LIKE 'case.slip.%'")[0][0]
        assert issued == len(keys)
        for r in state.query("SELECT id, state, verified_at, closed_at FROM cases"):
            if r["state"] == "closed":
                assert r["verified_at"] is not None and r["verified_at"] <= r["closed_at"]
                acts = [
                    a
                    for (a,) in state.query(
                        "SELECT action FROM case_history WHERE case_id=? ORDER BY id", (r["id"],)
                    )
                ]
                assert acts.index("verified") < acts.index("closed")
            # nothing is due on or after closing
            late = state.query(
                "SELECT count(*) FROM case_slips WHERE case_id=? AND due_at >= ?",
                (r["id"], r["closed_at"] if r["closed_at"] is not None else float("inf")),
            )[0][0]
            assert late == 0
        state.close()
