"""Alert evaluation in the stream: windows, rules as data, the lifecycle engine, its store.

Pure logic: the only I/O goes through the AlertStore the caller passes in."""

from envnet.domain.alerts.engine import Evaluator
from envnet.domain.alerts.lifecycle import acknowledge
from envnet.domain.alerts.model import (
    AlertEvent,
    IndexRecord,
    StationInfo,
    index_summary,
    latest_indices,
    summary_key,
)
from envnet.domain.alerts.repository import (
    Alert,
    AlertStore,
    DailyAqi,
    HistoryEntry,
    InMemoryAlertStore,
)
from envnet.domain.alerts.rules import RULES, SEVERITIES, AlertSettings

__all__ = [
    "RULES",
    "SEVERITIES",
    "Alert",
    "AlertEvent",
    "AlertSettings",
    "AlertStore",
    "DailyAqi",
    "Evaluator",
    "HistoryEntry",
    "InMemoryAlertStore",
    "IndexRecord",
    "StationInfo",
    "acknowledge",
    "index_summary",
    "latest_indices",
    "summary_key",
]
