"""GET /alerts, GET /alerts/{id} (with history), POST /alerts/{id}/ack.

Alerts are opened, escalated and resolved by the gateway's evaluator; people acknowledge them
here. An acknowledgement, its history entry and its webhook event commit together.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from envnet.config import Settings
from envnet.domain.alerts import RULES, SEVERITIES, acknowledge
from envnet.domain.webhooks import events_for
from envnet.store import review
from envnet.store.alerts import SqliteAlertStore
from envnet.store.audit import record_audit
from envnet.store.state import SqliteStateStore
from envnet.store.webhooks import emit
from server.routers.bounds import MAX_UNIX_S, MIN_UNIX_S
from server.security import ApiKeyName, require_api_key


class AckRequest(BaseModel):
    by: str = Field(
        "api",
        min_length=1,
        max_length=64,
        description="who acknowledges; when left out, the name of the API key used",
    )
    note: str | None = Field(None, max_length=1000)


def audit_ack(state: SqliteStateStore, who: str, alert: Any, body: AckRequest) -> None:
    """The audit row of an acknowledgement (same transaction); actor = the API key's name."""
    record_audit(
        state,
        actor=who,
        action="alert.ack",
        target=alert.id,
        detail={
            "by": body.by,
            "note": body.note,
            "station": alert.station,
            "rule": alert.rule,
            "parameter": alert.parameter,
            "severity": alert.severity,
        },
        at=alert.acknowledged_at,
    )


def acknowledge_alert(
    settings: Settings,
    state: SqliteStateStore,
    alerts: SqliteAlertStore,
    alert_id: str,
    who: str,
    body: AckRequest,
) -> bool:
    """Acknowledge as `who` (API key name or console user): the change, its history, its
    webhook events and the audit row in one transaction. -> whether anything changed.
    KeyError for an unknown alert. The API route and the console's form both call this."""
    with state.tx() as conn:
        ev = acknowledge(alerts, alert_id, body.by, time.time(), body.note)
        if ev is None:
            return False
        for event in events_for(ev):
            emit(settings, event, conn=conn)
        audit_ack(state, who, alerts.get_alert(alert_id), body)
    return True


def router(settings: Settings, state: SqliteStateStore) -> APIRouter:
    alerts = SqliteAlertStore(state)
    api = APIRouter(tags=["alerts"])

    @api.get("/alerts")
    def list_alerts(
        state_: Literal["open", "acknowledged", "resolved"] | None = Query(None, alias="state"),
        station: str | None = Query(None, max_length=32),
        severity: Literal[tuple(SEVERITIES)] | None = None,  # type: ignore[valid-type]
        rule: Literal[tuple(RULES)] | None = None,  # type: ignore[valid-type]
        since: float | None = Query(
            None,
            ge=MIN_UNIX_S,
            le=MAX_UNIX_S,
            allow_inf_nan=False,
            description="opened at or after (unix s)",
        ),
        until: float | None = Query(
            None,
            ge=MIN_UNIX_S,
            le=MAX_UNIX_S,
            allow_inf_nan=False,
            description="opened at or before (unix s)",
        ),
        limit: int = Query(500, ge=1, le=5000),
    ) -> list[dict[str, Any]]:
        found = alerts.search(state_, station, severity, rule, since, until, limit)
        marks = review.alert_marks(state, [a.id for a in found])
        # review_marks: the active invalidations that marked the alert (docs/review.md)
        return [{**a.to_dict(), "review_marks": marks.get(a.id, [])} for a in found]

    @api.get("/alerts/{alert_id}")
    def get_alert(alert_id: str) -> dict[str, Any]:
        a = alerts.get_alert(alert_id)
        if a is None:
            raise HTTPException(404, f"alert {alert_id} is not known")
        return {
            **a.to_dict(),
            "review_marks": review.alert_marks(state, [alert_id]).get(alert_id, []),
            "history": [h.to_dict() for h in alerts.history(alert_id)],
        }

    @api.post("/alerts/{alert_id}/ack", dependencies=[Depends(require_api_key)])
    def ack_alert(who: ApiKeyName, alert_id: str, body: AckRequest | None = None) -> dict[str, Any]:
        body = body or AckRequest()
        if "by" not in body.model_fields_set:
            body.by = who
        try:
            changed = acknowledge_alert(settings, state, alerts, alert_id, who, body)
        except KeyError:
            raise HTTPException(404, f"alert {alert_id} is not known") from None
        a = alerts.get_alert(alert_id)
        assert a is not None  # acknowledge_alert() raised KeyError for an unknown id
        return {**a.to_dict(), "changed": changed}

    return api
