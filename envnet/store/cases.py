"""Cases of the supervision loop in the state store: open, move, read.

Every change of a case commits together with its history entry, its audit row
(envnet/store/audit.py) and its webhook event (envnet/store/webhooks emit), or not at all.
The slip scheduler's part (alert intake, evidence, due slips) is envnet/store/case_schedule.py;
the list and ranking queries are envnet/store/case_queries.py. Tables: cases_schema.py.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import replace
from typing import Any

from envnet.config import Settings
from envnet.domain.cases import (
    OPEN_STATES,
    SLIP_KINDS,
    CaseClock,
    Policy,
    TransitionError,
    deadlines,
    is_overdue,
    move,
)
from envnet.domain.webhooks import Event
from envnet.store.audit import ensure_schema as ensure_audit_schema
from envnet.store.audit import record_audit
from envnet.store.cases_schema import ensure_schema
from envnet.store.database import IntegrityError
from envnet.store.grid import Grid
from envnet.store.state import SqliteStateStore
from envnet.store.webhooks import emit, prepare

# state a move passes through -> its webhook event
STATE_EVENTS = {
    "signed": "case.signed",
    "reported": "case.reported",
    "verified": "case.verified",
    "returned": "case.returned",
    "closed": "case.closed",
}
CASE_COLUMNS = (
    "id, station, rule, parameter, severity, state, unit, district, cell, title, opened_at,"
    " opened_by, cycle, cycle_started_at, signed_at, reported_at, verified_at, closed_at,"
    " normal_since, sign_due_at, report_due_at, alert_id, reopened_from, updated_at"
)


class CaseError(ValueError):
    """Bad input (unknown unit, cell, station...): HTTP 422 with str()."""


class NotFound(KeyError):
    pass


def clock_of(row: Any) -> CaseClock:
    return CaseClock(
        id=row["id"],
        rule=row["rule"],
        severity=row["severity"],
        state=row["state"],
        opened_at=row["opened_at"],
        cycle=row["cycle"],
        cycle_started_at=row["cycle_started_at"],
        signed_at=row["signed_at"],
        reported_at=row["reported_at"],
        verified_at=row["verified_at"],
        closed_at=row["closed_at"],
        normal_since=row["normal_since"],
    )


class CaseStore:
    def __init__(self, state: SqliteStateStore, policy: Policy, settings: Settings) -> None:
        self.state = state
        self.policy = policy
        self.settings = settings
        ensure_schema(state)
        ensure_audit_schema(state)
        prepare(settings)  # the outbox tables, so events can join our transactions
        self.grid = Grid(state)

    # -- reading ------------------------------------------------------------------------------
    def row(self, case_id: str) -> sqlite3.Row | None:
        rows = self.state.query(f"SELECT {CASE_COLUMNS} FROM cases WHERE id=?", (case_id,))
        return rows[0] if rows else None

    def view(self, row: Any, now: float) -> dict[str, Any]:
        d = {k: row[k] for k in row.keys()}
        d["overdue"] = is_overdue(clock_of(row), now, self.policy)
        return d

    def get(self, case_id: str, now: float) -> dict[str, Any] | None:
        row = self.row(case_id)
        return None if row is None else self.view(row, now)

    def detail(self, case_id: str, now: float) -> dict[str, Any] | None:
        """The case with its slips, history, linked alerts and evidence (reports, readings)."""
        row = self.row(case_id)
        if row is None:
            return None
        d = self.view(row, now)
        q = self.state.query
        d["slips"] = [
            slip_view(r)
            for r in q("SELECT * FROM case_slips WHERE case_id=? ORDER BY due_at, id", (case_id,))
        ]
        d["history"] = [
            {**dict(r), "detail": json.loads(r["detail"])}
            for r in q("SELECT * FROM case_history WHERE case_id=? ORDER BY id", (case_id,))
        ]
        d["alerts"] = [
            {"id": r["alert_id"], "linked_at": r["linked_at"], "state": r["state"]}
            for r in q(
                "SELECT ca.alert_id, ca.linked_at, a.state FROM case_alerts ca"
                " LEFT JOIN alerts a ON a.id = ca.alert_id WHERE ca.case_id=? ORDER BY linked_at",
                (case_id,),
            )
        ]
        reports = q("SELECT * FROM case_reports WHERE case_id=? ORDER BY id", (case_id,))
        d["evidence"] = {
            "reports": [{**dict(r), "photos": json.loads(r["photos"])} for r in reports],
            # Readings back to normal are shown here, and never close the case.
            "normal_since": row["normal_since"],
        }
        return d

    # -- changing -----------------------------------------------------------------------------
    def _history(
        self, c: sqlite3.Connection, case_id: str, at: float, actor: str, action: str, state: str,
        detail: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        c.execute(
            "INSERT INTO case_history(case_id, at, actor, action, state, detail)"
            " VALUES (?,?,?,?,?,?)",
            (case_id, at, actor, action, state, json.dumps(detail or {}, ensure_ascii=False)),
        )

    def _event(
        self, c: sqlite3.Connection, kind: str, case: dict[str, Any], at: float, key: str,
        extra: dict[str, Any] | None = None, to_unit: str | None = None,
    ) -> None:  # fmt: skip
        """The case's webhook event; subscriptions filtering by unit see the case's unit and,
        for a slip escalated to the parent unit, that unit too (`to_unit`)."""
        data = {**case, "case_id": case["id"], **(extra or {})}
        units = tuple(u for u in (case.get("unit"), to_unit) if u)
        emit(
            self.settings,
            Event(
                kind,
                data,
                station=case.get("station"),
                district=case.get("district"),
                severity=case.get("severity"),
                units=units,
                id=f"{kind}:{case['id']}:{key}",
                created_at=at,
            ),
            conn=c,
        )

    def open_case(
        self,
        *,
        rule: str,
        parameter: str,
        severity: str,
        at: float,
        actor: str,
        station: str | None = None,
        unit: str | None = None,
        cell: str | None = None,
        title: str = "",
        alert_id: str | None = None,
        reopened_from: str | None = None,
    ) -> dict[str, Any]:
        """A new case assigned to `unit` (or the unit responsible for `cell`, or for the
        station's cell / district). Raises CaseError for an unknown unit, cell or station, and
        when the (station, rule, parameter) already has a case not closed."""
        district = None
        if cell is not None:
            c_row = self.grid.cell(cell)
            if c_row is None:
                raise CaseError(f"unknown cell {cell!r}")
            district = c_row["district"]
            unit = unit or c_row["unit"]
        if station is not None:
            meta = self.state.get_station_meta(station)
            if meta is None:
                raise CaseError(f"unknown station {station!r}")
            s_unit, s_cell, s_district = self.grid.responsible(meta)
            unit, cell, district = unit or s_unit, cell or s_cell, district or s_district
        if unit is None:
            raise CaseError("no responsible unit: give unit or cell, or map the station to a cell")
        u_row = self.grid.unit(unit)
        if u_row is None:
            raise CaseError(f"unknown unit {unit!r}")
        district = district or u_row["district"]
        case_id = uuid.uuid4().hex[:16]
        clock = CaseClock(case_id, rule, severity, "assigned", at, 0, at)
        sign_due, report_due = deadlines(clock, self.policy)
        with self.state.tx() as c:
            try:
                c.execute(
                    "INSERT INTO cases(id, station, rule, parameter, severity, state, unit,"
                    " district, cell, title, opened_at, opened_by, cycle, cycle_started_at,"
                    " sign_due_at, report_due_at, alert_id, reopened_from, updated_at)"
                    " VALUES (?,?,?,?,?,'assigned',?,?,?,?,?,?,0,?,?,?,?,?,?)",
                    (
                        case_id, station, rule, parameter, severity, unit, district, cell, title,
                        at, actor, at, sign_due, report_due, alert_id, reopened_from, at,
                    ),
                )  # fmt: skip
            except IntegrityError:  # the open-case unique index (either engine)
                raise CaseError(
                    f"station {station} already has an open case for {rule}/{parameter}"
                ) from None
            if alert_id is not None:
                c.execute(
                    "INSERT OR IGNORE INTO case_alerts(case_id, alert_id, linked_at)"
                    " VALUES (?,?,?)",
                    (case_id, alert_id, at),
                )
            detail = {"unit": unit, "cell": cell, "district": district, "alert": alert_id,
                      "reopened_from": reopened_from, "policy": self.policy.version}  # fmt: skip
            self._history(c, case_id, at, actor, "opened", "assigned", detail)
            record_audit(
                self.state, actor=actor, action="case.open", target=case_id, detail=detail, at=at
            )
            case = self.view(self.row(case_id), at)
            self._event(c, "case.opened", case, at, "0")
        return case

    def act(
        self,
        case_id: str,
        action: str,
        *,
        at: float,
        actor: str,
        detail: dict[str, Any] | None = None,
        report: dict[str, Any] | None = None,
        unit: str | None = None,
    ) -> dict[str, Any]:
        """sign | report | verify | return | reassign, with history, audit and events.
        Raises NotFound, TransitionError (the state does not allow it) or CaseError."""
        if action == "reassign":
            if not unit or self.grid.unit(unit) is None:
                raise CaseError(f"unknown unit {unit!r}")
        with self.state.tx() as c:
            row = self.row(case_id)
            if row is None:
                raise NotFound(case_id)
            old = clock_of(row)
            new, passed = move(old, action, at)
            if action == "reassign" and unit == row["unit"]:
                raise TransitionError(f"case {case_id} is already assigned to {unit}")
            sign_due, report_due = deadlines(new, self.policy)
            if action == "verify":
                new = replace(new, state="closed")
            c.execute(
                "UPDATE cases SET state=?, cycle=?, cycle_started_at=?, signed_at=?,"
                " reported_at=?, verified_at=?, closed_at=?, sign_due_at=?, report_due_at=?,"
                " unit=coalesce(?, unit), updated_at=?, next_slip_at=NULL,"
                " version=version+1 WHERE id=?",
                (
                    new.state, new.cycle, new.cycle_started_at, new.signed_at, new.reported_at,
                    new.verified_at, new.closed_at, sign_due, report_due,
                    unit if action == "reassign" else None, at, case_id,
                ),
            )  # fmt: skip
            if report is not None:
                c.execute(
                    "INSERT INTO case_reports(case_id, cycle, at, actor, text, lat, lon, photos)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (
                        case_id, new.cycle, at, actor, report["text"], report.get("lat"),
                        report.get("lon"), json.dumps(report.get("photos") or []),
                    ),
                )  # fmt: skip
            info = {**(detail or {}), "from": old.state, "cycle": new.cycle}
            if action == "reassign":
                info |= {"from_unit": row["unit"], "to_unit": unit}
            case = self.view(self.row(case_id), at)
            for i, st in enumerate(passed):
                self._history(
                    c, case_id, at, actor, st, new.state if st != "verified" else st, info
                )
                record_audit(
                    self.state, actor=actor, action=f"case.{action}" if i == 0 else f"case.{st}",
                    target=case_id, detail={**info, "state": st}, at=at,
                )  # fmt: skip
                if st in STATE_EVENTS:
                    self._event(c, STATE_EVENTS[st], case, at, f"{new.cycle}:{at!r}", info)
        return case

    def record_refusal(self, case_id: str, actor: str, action: str, why: str, at: float) -> None:
        """The audit row of a refused action (a unit acting on another unit's case)."""
        record_audit(
            self.state,
            actor=actor,
            action=f"case.{action}.refused",
            target=case_id,
            detail={"reason": why},
            at=at,
        )

    def put_photo(self, sha256: str, content_type: str, size: int, at: float) -> None:
        with self.state.tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO case_photos(sha256, content_type, size, created_at)"
                " VALUES (?,?,?,?)",
                (sha256, content_type, size, at),
            )

    def photo(self, sha256: str) -> dict[str, Any] | None:
        rows = self.state.query("SELECT * FROM case_photos WHERE sha256=?", (sha256,))
        return dict(rows[0]) if rows else None


def slip_view(r: Any) -> dict[str, Any]:
    d = dict(r)
    zh, en = SLIP_KINDS[d["kind"]]
    d["label"] = {"zh": zh, "en": en}
    return d


__all__ = ["OPEN_STATES", "CaseError", "CaseStore", "NotFound", "TransitionError", "clock_of"]
