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
from envnet.store.alerts import SqliteAlertStore
from envnet.store.audit import record_audit
from envnet.store.state import SqliteStateStore
from server import events
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
        return [a.to_dict() for a in found]

    @api.get("/alerts/{alert_id}")
    def get_alert(alert_id: str) -> dict[str, Any]:
        a = alerts.get_alert(alert_id)
        if a is None:
            raise HTTPException(404, f"alert {alert_id} is not known")
        return {**a.to_dict(), "history": [h.to_dict() for h in alerts.history(alert_id)]}

    @api.post("/alerts/{alert_id}/ack", dependencies=[Depends(require_api_key)])
    def ack_alert(who: ApiKeyName, alert_id: str, body: AckRequest | None = None) -> dict[str, Any]:
        body = body or AckRequest()
        if "by" not in body.model_fields_set:
            body.by = who
        with state.tx() as conn:
            try:
                ev = acknowledge(alerts, alert_id, body.by, time.time(), body.note)
            except KeyError:
                raise HTTPException(404, f"alert {alert_id} is not known") from None
            if ev is not None:
                events.emit_alert_event(settings, ev, conn=conn)
                audit_ack(state, who, alerts.get_alert(alert_id), body)
        a = alerts.get_alert(alert_id)
        return {**a.to_dict(), "changed": ev is not None}

    return api
