"""Raising the review worker's alerts: the alert lifecycle over the state store's alert
tables, its webhook events and the change in one transaction (as POST /alerts/{id}/ack does,
server/routers/alerts.py), so an alert never exists without its event."""

from __future__ import annotations

import time

from envnet.config import Settings
from envnet.domain.alerts.lifecycle import Lifecycle
from envnet.domain.alerts.model import AlertEvent
from envnet.domain.alerts.rules import Observation
from envnet.domain.webhooks import events_for
from envnet.store.alerts import SqliteAlertStore
from envnet.store.state import SqliteStateStore
from envnet.store.webhooks import emit


class AlertSink:
    def __init__(self, settings: Settings, store: SqliteStateStore) -> None:
        self.settings = settings
        self.store = store
        self.lifecycle = Lifecycle(
            SqliteAlertStore(store), settings.alerts, settings.standards.edition
        )

    def observe(self, station: str, obs: Observation) -> list[AlertEvent]:
        """Open, update or resolve the station's alert of (obs.rule, obs.parameter)."""
        with self.store.tx() as conn:
            events = self.lifecycle.apply(station, obs, time.time(), None)
            for ev in events:
                for event in events_for(ev):
                    emit(self.settings, event, conn=conn)
        return events
