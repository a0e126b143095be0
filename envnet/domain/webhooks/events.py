"""An event to put in the outbox, and the events the alert engine's changes become.

    Event("station.offline", {"station": sid, "at": ts}, station=sid)
    Event("episode.changed", {"level": "orange", ...}, id=f"episode:{day}:orange")
    events_for(alert_event)   # an AlertEvent -> its webhook events

Give `id` when the same event may be emitted twice (a gateway replaying after a crash): the
outbox then enqueues it once. `station`, `district`, `severity` and `units` are what
subscription filters match on; the first three default to the data's field of that name
(district also to the station's registry entry). `units` (the responsible units of a case,
docs/cases.md) is never read from the data: an alert's `unit` there is its measurement unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envnet.domain.alerts.model import NETWORK, AlertEvent
from envnet.domain.webhooks.catalogue import EVENT_TYPES, PING

__all__ = ["NETWORK", "Event", "events_for"]


@dataclass(frozen=True, slots=True)
class Event:
    """type: one of EVENT_TYPES (or PING, to one subscription).
    data: the body's `data`; for alerts id, station, rule, parameter, severity, window, value,
        limit, standard, opened_at, state, last_value, labels... Must be plain JSON.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    station: str | None = None
    district: str | None = None
    severity: str | None = None
    id: str | None = None
    units: tuple[str, ...] | None = None  # the responsible units it concerns (cases)
    created_at: float | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES and self.type != PING:
            raise ValueError(f"unknown event type {self.type!r}; one of {', '.join(EVENT_TYPES)}")
        if not isinstance(self.data, dict):
            raise TypeError("payload must be a dict")

    def routing(self) -> tuple[str | None, str | None, str | None]:
        """(station, district, severity) the filters see, before the registry is asked."""
        station = self.station if self.station is not None else _str(self.data.get("station"))
        if station == NETWORK:
            station = None  # the engine's network-wide alerts (the episode) have no station
        district = self.district if self.district is not None else _str(self.data.get("district"))
        severity = self.severity if self.severity is not None else _str(self.data.get("severity"))
        return station, district, severity

    def routing_units(self) -> tuple[str, ...]:
        """The responsible units the units filter sees (none unless given)."""
        return tuple(dict.fromkeys(self.units or ()))


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def events_for(change: AlertEvent) -> list[Event]:
    """The webhook events of one change of the alert engine, in the order they are sent.

    Ids derive from the alert (id, transition, escalation count) or the episode (day, level),
    so the same change emitted twice is enqueued once. An offline alert opening or resolving
    is also station.offline / station.online."""
    alert = change.alert
    if alert is None:
        episode = dict(change.episode or {})
        return [
            Event(
                change.type,
                episode,
                id=f"episode:{episode.get('day')}:{episode.get('level')}",
                created_at=change.at,
            )
        ]
    data = alert.to_dict()
    transition = change.type.split(".", 1)[1]
    out = [
        Event(
            change.type,
            data,
            station=_str(data.get("station")),
            severity=_str(data.get("severity")),
            id=f"{data['id']}:{transition}:{data.get('escalations', 0)}",
            created_at=change.at,
        )
    ]
    if alert.rule == "offline" and change.type in ("alert.opened", "alert.resolved"):
        kind = "station.offline" if change.type == "alert.opened" else "station.online"
        out.append(
            Event(
                kind,
                {"station": alert.station, "at": change.at, "alert_id": alert.id},
                station=alert.station,
                id=f"{alert.id}:{kind}",
                created_at=change.at,
            )
        )
    return out
