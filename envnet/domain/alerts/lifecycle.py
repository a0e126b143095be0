"""The alert lifecycle over a store: at most one open alert per (station, rule, parameter).

A bad observation opens one (alert.opened) or, when its severity is higher than the alert's,
escalates it (alert.escalated; an acknowledged alert returns to open, so a person looks
again). A person acknowledges (alert.acknowledged). The alert resolves (alert.resolved) only
once values have stayed within the limit for the rule's hold time; any bad value in between
restarts the hold. The evaluator (engine.py) decides what is observed; this module decides
what that does to the alerts, and the server's acknowledgement uses it too.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from envnet.domain.alerts.model import AlertEvent
from envnet.domain.alerts.repository import Alert, AlertStore, HistoryEntry
from envnet.domain.alerts.rules import AlertSettings, Observation, severity_rank

OpenKeys = set[tuple[str, str]]  # (rule, parameter) of a station's open alerts


class Lifecycle:
    def __init__(self, store: AlertStore, settings: AlertSettings, edition: str) -> None:
        self.store = store
        self.settings = settings
        self.edition = edition

    def apply(
        self, station: str, obs: Observation, wall: float, open_keys: OpenKeys | None
    ) -> list[AlertEvent]:
        """One observation of (station, rule, parameter): open, escalate, keep, or resolve its
        alert. open_keys, when given, is the caller's cache of the station's open alerts: a
        good observation with nothing open then costs no store read (the hot path)."""
        key = (obs.rule, obs.parameter)
        if not obs.bad and open_keys is not None and key not in open_keys:
            return []  # the common case: fine, and nothing open to resolve
        alert = self.store.get_open_alert(station, obs.rule, obs.parameter)
        if open_keys is not None:
            (open_keys.add if alert else open_keys.discard)(key)
        if obs.bad:
            if alert is None:
                return [self.open(station, obs, wall, open_keys)]
            if severity_rank(obs.severity) > severity_rank(alert.severity):
                return [self.escalate(alert, obs, wall)]
            self.store.update_alert(
                alert.id,
                {
                    "last_value": obs.value,
                    "last_at": obs.at,
                    "ok_since": None,
                    "updated_at": wall,
                },
            )
            return []
        if alert is None:
            return []
        ok_since = alert.ok_since if alert.ok_since is not None else obs.at - obs.span_s
        if obs.at - ok_since >= self.settings.hold(obs.rule):
            return [self.resolve(alert, obs.value, obs.at, wall, open_keys)]
        self.store.update_alert(
            alert.id,
            {
                "last_value": obs.value,
                "last_at": obs.at,
                "ok_since": ok_since,
                "updated_at": wall,
            },
        )
        return []

    def open(
        self, station: str, obs: Observation, wall: float, open_keys: OpenKeys | None = None
    ) -> AlertEvent:
        alert = Alert(
            id=uuid.uuid4().hex,
            station=station,
            rule=obs.rule,
            parameter=obs.parameter,
            severity=obs.severity,
            window=obs.window,
            value=obs.value,
            limit=obs.limit,
            standard=obs.standard,
            opened_at=obs.at,
            state="open",
            last_value=obs.value,
            last_at=obs.at,
            clause=obs.clause,
            edition=obs.edition or self.edition,
            limit_op=obs.limit_op,
            unit=obs.unit,
            category_zh=obs.category_zh,
            category_en=obs.category_en,
            created_at=wall,
            updated_at=wall,
        )
        self.store.insert_alert(alert)
        self.history(alert, "opened", wall)
        if open_keys is not None:
            open_keys.add((obs.rule, obs.parameter))
        return AlertEvent("alert.opened", wall, alert)

    def escalate(self, alert: Alert, obs: Observation, wall: float) -> AlertEvent:
        changes: dict[str, Any] = {
            "severity": obs.severity,
            "value": obs.value,
            "limit": obs.limit,
            "limit_op": obs.limit_op,
            "clause": obs.clause,
            "category_zh": obs.category_zh,
            "category_en": obs.category_en,
            "last_value": obs.value,
            "last_at": obs.at,
            "ok_since": None,
            "state": "open",
            "updated_at": wall,
            "escalations": alert.escalations + 1,
        }
        self.store.update_alert(alert.id, changes)
        alert = replace(alert, **changes)
        self.history(alert, "escalated", wall)
        return AlertEvent("alert.escalated", wall, alert)

    def resolve(
        self,
        alert: Alert,
        value: float | None,
        at: float,
        wall: float,
        open_keys: OpenKeys | None = None,
    ) -> AlertEvent:
        changes: dict[str, Any] = {
            "state": "resolved",
            "resolved_at": wall,
            "last_value": value,
            "last_at": at,
            "updated_at": wall,
        }
        self.store.update_alert(alert.id, changes)
        alert = replace(alert, **changes)
        self.history(alert, "resolved", wall)
        if open_keys is not None:
            open_keys.discard((alert.rule, alert.parameter))
        return AlertEvent("alert.resolved", wall, alert)

    def history(self, alert: Alert, event: str, wall: float) -> None:
        self.store.append_history(
            HistoryEntry(alert.id, wall, event, alert.state, alert.severity, alert.last_value)
        )


def acknowledge(
    store: AlertStore, alert_id: str, by: str, at: float, note: str | None = None
) -> AlertEvent | None:
    """A person acknowledges an open alert (the server's POST /alerts/{id}/ack).

    Returns None when it is already acknowledged or resolved (idempotent); raises KeyError
    for an unknown id. Usable without an Evaluator: it only needs the store.
    """
    alert = store.get_alert(alert_id)
    if alert is None:
        raise KeyError(alert_id)
    if alert.state != "open":
        return None
    changes: dict[str, Any] = {
        "state": "acknowledged",
        "acknowledged_at": at,
        "acknowledged_by": by,
        "updated_at": at,
    }
    store.update_alert(alert_id, changes)
    alert = replace(alert, **changes)
    store.append_history(
        HistoryEntry(
            alert.id,
            at,
            "acknowledged",
            alert.state,
            alert.severity,
            alert.last_value,
            by=by,
            note=note,
        )
    )
    return AlertEvent("alert.acknowledged", at, alert)
