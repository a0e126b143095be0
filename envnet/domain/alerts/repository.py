"""What the alert engine needs from the state store, and an in-memory store for tests.

The engine talks to storage only through `AlertStore`, so the SQLite state store (one gateway)
and a PostgreSQL one (several gateways, stream partitioned by station) are swaps. Every method
is keyed so that a station's evaluation touches only that station's rows, plus the shared
per-day AQI table the city-wide episode reads.

Alert fields (docs/design.md: id, station, rule, parameter, severity, window, value, limit,
standard, opened_at, state, last value; plus edition and labels):

| field | meaning |
|---|---|
| id | uuid4 hex, stable for the alert's life |
| station | station id; "*" for the network-wide episode alert (never a valid station id) |
| rule | rule id from rules.RULES, e.g. "air_limit", "offline" |
| parameter | the field the rule watched: "pm25", "aqi", "nh3n", "battery_v", "status" ... |
| severity | "low" < "medium" < "high" < "critical"; the highest reached while open |
| window | averaging window: "1h", "8h", "24h"; "instant" for per-message checks |
| value | the value that opened the alert or last escalated it |
| limit, limit_op | the threshold and how a compliant value relates to it ("<=", ">=") |
| unit | unit of value and limit |
| standard, clause | designation and clause applied, e.g. "GB 3095-2012", "Table 1, Grade II, ..." |
| edition | `standards.edition` that produced it, e.g. "2012" |
| category_zh, category_en | AQI category or water class of the value, when there is one |
| opened_at | observation time of the first bad value (data time for window rules) |
| state | "open" -> "acknowledged" -> "resolved"; an escalation re-opens an acknowledged alert |
| last_value, last_at | latest evaluated value and its observation time |
| ok_since | start of the current within-limit run (hysteresis); None while still bad |
| created_at, updated_at | wall-clock times of insert and last change |
| acknowledged_at, acknowledged_by, resolved_at | lifecycle stamps |
| escalations | how many times severity rose |

History: one `HistoryEntry` per lifecycle event (opened, escalated, acknowledged, resolved).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

AlertState = Literal["open", "acknowledged", "resolved"]
OPEN_STATES: tuple[str, ...] = ("open", "acknowledged")


@dataclass(slots=True)
class Alert:
    id: str
    station: str
    rule: str
    parameter: str
    severity: str
    window: str
    value: float | None
    limit: float | None
    standard: str
    opened_at: float
    state: AlertState
    last_value: float | None
    last_at: float
    clause: str = ""
    edition: str = ""
    limit_op: str = "<="
    unit: str = ""
    category_zh: str | None = None
    category_en: str | None = None
    ok_since: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    escalations: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.station, self.rule, self.parameter)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    alert_id: str
    at: float  # wall-clock time of the event
    event: str  # opened | escalated | acknowledged | resolved
    state: str  # state after the event
    severity: str
    value: float | None
    by: str | None = None  # who acknowledged
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DailyAqi(NamedTuple):
    station: str
    station_class: str  # micro | city | national | section
    aqi: int


class AlertStore(Protocol):
    """Storage the engine needs. Implementations must keep at most one alert in an open state
    (open or acknowledged) per (station, rule, parameter), e.g. with a partial unique index."""

    def get_open_alert(self, station: str, rule: str, parameter: str) -> Alert | None:
        """The alert in state open or acknowledged for this key, if any."""
        ...

    def get_alert(self, alert_id: str) -> Alert | None: ...

    def list_open_alerts(self, station: str | None = None) -> list[Alert]:
        """Alerts in state open or acknowledged, of one station or of all."""
        ...

    def insert_alert(self, alert: Alert) -> None: ...

    def update_alert(self, alert_id: str, changes: Mapping[str, Any]) -> None:
        """Set only the named fields, so that the engine's update of last_value never
        overwrites an acknowledgement the server wrote in between."""
        ...

    def append_history(self, entry: HistoryEntry) -> None: ...

    def history(self, alert_id: str) -> list[HistoryEntry]:
        """Entries of one alert, oldest first."""
        ...

    def load_state(self, key: str) -> dict[str, Any] | None:
        """A JSON-compatible blob saved with save_state (window and rule state per station)."""
        ...

    def save_state(self, key: str, state: dict[str, Any]) -> None: ...

    def put_daily_aqi(self, day: str, station: str, station_class: str, aqi: int) -> None:
        """Upsert one station's daily AQI for a China Standard Time day ("2026-01-15")."""
        ...

    def daily_aqis(self, day: str) -> list[DailyAqi]: ...


@dataclass
class InMemoryAlertStore:
    """AlertStore in dicts, for unit tests. Copies on the way in and out, like a database."""

    alerts: dict[str, Alert] = field(default_factory=dict)
    entries: list[HistoryEntry] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    daily: dict[str, dict[str, DailyAqi]] = field(default_factory=dict)

    def get_open_alert(self, station: str, rule: str, parameter: str) -> Alert | None:
        for a in self.alerts.values():
            if a.key == (station, rule, parameter) and a.state in OPEN_STATES:
                return copy.copy(a)
        return None

    def get_alert(self, alert_id: str) -> Alert | None:
        a = self.alerts.get(alert_id)
        return copy.copy(a) if a else None

    def list_open_alerts(self, station: str | None = None) -> list[Alert]:
        return [
            copy.copy(a)
            for a in self.alerts.values()
            if a.state in OPEN_STATES and (station is None or a.station == station)
        ]

    def insert_alert(self, alert: Alert) -> None:
        if self.get_open_alert(*alert.key) is not None:
            raise ValueError(f"an open alert already exists for {alert.key}")
        self.alerts[alert.id] = copy.copy(alert)

    def update_alert(self, alert_id: str, changes: Mapping[str, Any]) -> None:
        self.alerts[alert_id] = dataclasses.replace(self.alerts[alert_id], **changes)

    def append_history(self, entry: HistoryEntry) -> None:
        self.entries.append(entry)

    def history(self, alert_id: str) -> list[HistoryEntry]:
        return [e for e in self.entries if e.alert_id == alert_id]

    def load_state(self, key: str) -> dict[str, Any] | None:
        s = self.states.get(key)
        return copy.deepcopy(s) if s is not None else None

    def save_state(self, key: str, state: dict[str, Any]) -> None:
        # A JSON round trip, as a database would do: non-JSON state fails here, in tests.
        self.states[key] = json.loads(json.dumps(state, allow_nan=False))

    def put_daily_aqi(self, day: str, station: str, station_class: str, aqi: int) -> None:
        self.daily.setdefault(day, {})[station] = DailyAqi(station, station_class, aqi)

    def daily_aqis(self, day: str) -> list[DailyAqi]:
        return list(self.daily.get(day, {}).values())
