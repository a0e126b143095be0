"""What the server's case scheduler does on each pass, against the store:

1. `intake_alerts`: open alerts the policy says need a case open one (or link to the case
   already open for their station, rule and parameter; re-open and link a case closed within
   the policy's window). Decisions are remembered per alert and severity in `case_intake`, so
   an alert is looked at again only when its severity changes.
2. `mark_evidence`: a case whose alerts have all resolved gets `normal_since` (evidence, shown
   on the case) and stays open: only verification closes a case.
3. `issue_due_slips`: every slip `due_slips` says is due is inserted under its unique key
   (case, kind, period) with INSERT OR IGNORE inside a BEGIN IMMEDIATE transaction; only the
   process whose insert took effect records the history, the audit row and the webhook event,
   in the same transaction. Two servers, or one killed and restarted, never issue a slip twice
   and lose none (a slip due while no server ran is issued, late, on the next pass).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from envnet.domain.alerts.rules import severity_rank
from envnet.domain.cases import OPEN_STATES, DueSlip, due_slips
from envnet.store.alerts import SqliteAlertStore
from envnet.store.audit import record_audit
from envnet.store.case_queries import count_of
from envnet.store.cases import CaseError, CaseStore, clock_of, slip_view
from envnet.store.cases_schema import ensure_schema
from envnet.store.dialect import POSTGRESQL

log = logging.getLogger("envnet.cases")

SCHEDULER = "scheduler"  # the actor of what the scheduler does, in history and audit
BATCH = 500  # slips per write transaction: short enough not to hold other writers up
INFINITY = 1e300  # "now" far enough to list every slip a case could get
FAR = 1e18  # next_slip_at of a case with nothing more to come (until it changes)
_OPEN = "(" + ",".join(f"'{s}'" for s in OPEN_STATES) + ")"


class CaseScheduler:
    def __init__(self, cases: CaseStore) -> None:
        self.cases = cases
        self.state = cases.state
        SqliteAlertStore(self.state)  # the alerts table exists even before a gateway ran
        ensure_schema(self.state)

    def run_pass(self, now: float, from_alerts: bool = True) -> dict[str, int]:
        opened = self.intake_alerts(now) if from_alerts else 0
        normal = self.mark_evidence(now)
        issued = self.issue_due_slips(now)
        return {"opened": opened, "normal": normal, "slips": len(issued)}

    # -- 1. alerts -> cases -------------------------------------------------------------------
    def intake_alerts(self, now: float) -> int:
        rows = self.state.query(
            "SELECT a.id, a.station, a.rule, a.parameter, a.severity FROM alerts a"
            " LEFT JOIN case_intake ci ON ci.alert_id = a.id"
            " WHERE a.state IN ('open','acknowledged') AND a.station != '*'"
            " AND (ci.alert_id IS NULL OR ci.severity != a.severity) ORDER BY a.opened_at"
        )
        opened = 0
        for r in rows:
            try:
                opened += self._take(r, now)
            except Exception:  # one bad alert must not stop the others (logged, retried)
                log.exception("case intake of alert %s failed", r["id"])
        return opened

    def _take(self, a: Any, now: float) -> int:
        pol = self.cases.policy
        with self.state.tx() as c:
            seen = c.execute(
                "SELECT severity FROM case_intake WHERE alert_id=?", (a["id"],)
            ).fetchone()
            if seen is not None and seen[0] == a["severity"]:
                return 0  # another server took it meanwhile
            meta = self.state.get_station_meta(a["station"]) or {}
            key = (a["station"], a["rule"], a["parameter"])
            open_row = c.execute(
                "SELECT id, severity FROM cases WHERE station=? AND rule=? AND parameter=?"
                f" AND state IN {_OPEN}",
                key,
            ).fetchone()
            note, case_id, opened = "", None, 0
            if open_row is not None:  # a later alert: link it to the open case
                case_id = open_row["id"]
                self._link(c, case_id, a, open_row["severity"], now)
            elif not pol.open_cases.opens(a["rule"], a["severity"], meta.get("class")):
                note = "policy: no case"
            else:
                closed = c.execute(
                    "SELECT id FROM cases WHERE station=? AND rule=? AND parameter=?"
                    " AND state='closed' AND closed_at >= ? ORDER BY closed_at DESC LIMIT 1",
                    (*key, now - pol.reopen_window_s),
                ).fetchone()
                try:
                    case = self.cases.open_case(
                        rule=a["rule"], parameter=a["parameter"], severity=a["severity"],
                        at=now, actor=SCHEDULER, station=a["station"], alert_id=a["id"],
                        reopened_from=closed["id"] if closed else None,
                    )  # fmt: skip
                    case_id, opened = case["id"], 1
                except CaseError as e:
                    note = str(e)  # e.g. no responsible unit for the station
                    log.warning("alert %s opens no case: %s", a["id"], e)
            c.execute(
                "INSERT INTO case_intake(alert_id, severity, case_id, at, note) VALUES (?,?,?,?,?)"
                " ON CONFLICT(alert_id) DO UPDATE SET severity=excluded.severity,"
                " case_id=coalesce(excluded.case_id, case_intake.case_id), at=excluded.at,"
                " note=excluded.note",
                (a["id"], a["severity"], case_id, now, note),
            )
        return opened

    def _link(self, c: Any, case_id: str, a: Any, case_severity: str, now: float) -> None:
        new = c.execute(
            "INSERT OR IGNORE INTO case_alerts(case_id, alert_id, linked_at) VALUES (?,?,?)",
            (case_id, a["id"], now),
        ).rowcount
        worse = severity_rank(a["severity"]) > severity_rank(case_severity)
        if not new and not worse:
            return
        # A new exceedance: the readings are not back to normal (evidence is reset).
        c.execute(
            "UPDATE cases SET alert_id=?, normal_since=NULL, severity=?, updated_at=?,"
            " next_slip_at=NULL, version=version+1 WHERE id=?",
            (a["id"], a["severity"] if worse else case_severity, now, case_id),
        )
        detail = {"alert": a["id"], "severity": a["severity"]}
        c.execute(
            "INSERT INTO case_history(case_id, at, actor, action, state, detail)"
            " SELECT id, ?, ?, 'alert_linked', state, ? FROM cases WHERE id=?",
            (now, SCHEDULER, json.dumps(detail), case_id),
        )
        record_audit(self.state, actor=SCHEDULER, action="case.link", target=case_id,
                     detail=detail, at=now)  # fmt: skip

    # -- 2. evidence --------------------------------------------------------------------------
    def mark_evidence(self, now: float) -> int:
        if self.state.db.dialect == POSTGRESQL:
            ok_since = "CAST(CAST(a.data AS jsonb) ->> 'ok_since' AS REAL)"
        else:
            ok_since = "json_extract(a.data,'$.ok_since')"
        still_open = count_of("a.state IN ('open','acknowledged')")
        with self.state.tx() as c:
            rows = c.execute(
                f"SELECT c.id, max(coalesce({ok_since}, a.updated_at)) AS t"
                " FROM cases c JOIN case_alerts ca ON ca.case_id = c.id"
                " JOIN alerts a ON a.id = ca.alert_id"
                f" WHERE c.state IN {_OPEN} AND c.normal_since IS NULL"
                f" GROUP BY c.id HAVING sum({still_open}) = 0"
            ).fetchall()
            for r in rows:
                c.execute(
                    "UPDATE cases SET normal_since=?, next_slip_at=NULL, version=version+1"
                    " WHERE id=?",
                    (r["t"], r["id"]),
                )
                c.execute(
                    "INSERT INTO case_history(case_id, at, actor, action, state, detail)"
                    " SELECT id, ?, ?, 'readings_normal', state, ? FROM cases WHERE id=?",
                    (now, SCHEDULER, json.dumps({"normal_since": r["t"]}), r["id"]),
                )
        return len(rows)

    # -- 3. slips -----------------------------------------------------------------------------
    def pending(self, now: float) -> tuple[list[tuple[Any, DueSlip]], list[tuple[float, str, int]]]:
        """(case row, slip) for every slip due by `now` and not yet issued, and for each case
        looked at, when to look again (its next slip's due time, if nothing changes first).
        Only cases whose `next_slip_at` has come (or is unknown) are read."""
        q = self.state.query
        rows = q(
            f"SELECT * FROM cases WHERE state IN {_OPEN}"
            " AND (next_slip_at IS NULL OR next_slip_at <= ?)",
            (now,),
        )
        if not rows:
            return [], []
        issued: set[tuple[str, str, str]] = set()
        ids = [r["id"] for r in rows]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            issued |= {
                (r[0], r[1], r[2])
                for r in q(
                    f"SELECT case_id, kind, period FROM case_slips WHERE case_id IN ({marks})",
                    tuple(chunk),
                )
            }
        pol = self.cases.policy
        out, nxt = [], []
        for r in rows:
            case = clock_of(r)
            later = float("inf")
            for slip in due_slips(case, INFINITY, pol):  # every slip if nothing changes
                if (r["id"], slip.kind, slip.period) in issued:
                    continue
                if slip.due_at <= now:  # = due_slips(case, now): the same list, cut at now
                    out.append((r, slip))
                else:
                    later = min(later, slip.due_at)
            nxt.append((later if later != float("inf") else FAR, r["id"], r["version"]))
        return out, nxt

    def issue_due_slips(self, now: float) -> list[dict[str, Any]]:
        todo, nxt = self.pending(now)
        done: list[dict[str, Any]] = []
        parents: dict[str, str | None] = {}
        for i in range(0, len(todo), BATCH):
            with self.state.tx() as c:
                for row, slip in todo[i : i + BATCH]:
                    s = self._issue(c, row, slip, now, parents)
                    if s is not None:
                        done.append(s)
        with self.state.tx() as c:  # a case changed since we read it keeps next_slip_at NULL
            c.executemany("UPDATE cases SET next_slip_at=? WHERE id=? AND version=?", nxt)
        return done

    def _issue(
        self, c: Any, row: Any, slip: DueSlip, now: float, parents: dict[str, str | None]
    ) -> dict[str, Any] | None:
        unit = row["unit"]
        to_unit = unit
        if slip.escalate:  # 催办单 goes up: to the parent unit (the district bureau)
            if unit not in parents:
                u = self.cases.grid.unit(unit)
                parents[unit] = u["parent"] if u else None
            to_unit = parents[unit] or unit
        cur = c.execute(
            "INSERT OR IGNORE INTO case_slips(case_id, kind, period, reason, due_at, issued_at,"
            " unit, to_unit) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
            (row["id"], slip.kind, slip.period, slip.reason, slip.due_at, now, unit, to_unit),
        )
        inserted = cur.fetchone()
        if inserted is None:
            return None  # issued by another server (or an earlier pass) already
        s = slip_view(c.execute("SELECT * FROM case_slips WHERE id=?", (inserted[0],)).fetchone())
        detail = {k: s[k] for k in ("kind", "period", "reason", "due_at", "unit", "to_unit")}
        c.execute(
            "INSERT INTO case_history(case_id, at, actor, action, state, detail)"
            " VALUES (?,?,?,?,?,?)",
            (row["id"], now, SCHEDULER, f"slip.{slip.kind}", row["state"], json.dumps(detail)),
        )
        record_audit(self.state, actor=SCHEDULER, action=f"case.slip.{slip.kind}",
                     target=row["id"], detail=detail, at=now)  # fmt: skip
        case = self.cases.view(row, now)
        extra = {
            "slip": s,
            "slip_type": s["kind"],
            "slip_label": s["label"],
            "slip_zh": s["label"]["zh"],
            "slip_en": s["label"]["en"],
        }
        self.cases._event(
            c, "case.slip", case, now, f"{slip.kind}:{slip.period}", extra, to_unit=to_unit
        )
        return s
