"""The webhook event catalogue, as data: every event type a subscriber may receive, its label
(Chinese first, the authoritative form, English beside it) and when it is sent.

This is the one list: the outbox refuses types not in it, the API offers exactly the
subscribable ones, event bodies carry these labels, and docs/webhooks.md section 2 shows the
same table (a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventKind:
    type: str
    zh: str
    en: str
    when: str
    # False only for `ping`: sent to one subscription on request, never subscribed to.
    subscribable: bool = True


# Sent only by POST /webhooks/{id}/ping, to the one subscription asked for.
PING = "ping"

CATALOGUE: tuple[EventKind, ...] = (
    EventKind(
        "alert.opened",
        "告警(预警)",
        "alert opened",
        "a station exceeds a standard (GB 3095-2012, GB 3838-2002 target class, "
        "HJ 633-2012 AQI) or shows a fault",
    ),
    EventKind(
        "alert.escalated",
        "告警升级(催办)",
        "alert escalated (reminder)",
        "an open alert was not acknowledged in time; re-sent as a reminder at a higher severity",
    ),
    EventKind(
        "alert.acknowledged",
        "告警已确认",
        "alert acknowledged",
        "someone acknowledged the alert (`POST /alerts/{id}/ack`)",
    ),
    EventKind(
        "alert.resolved",
        "告警已解除",
        "alert resolved",
        "the values are back within the limit (after hysteresis)",
    ),
    EventKind(
        "station.offline",
        "站点离线",
        "station offline",
        "a station's last will arrived or it went silent",
    ),
    EventKind("station.online", "站点恢复在线", "station back online", "the station is back"),
    EventKind(
        "episode.changed",
        "重污染天气预警等级变化",
        "heavy-pollution episode level changed",
        "the observed heavy-pollution level (yellow / orange / red, 黄色/橙色/红色预警) changed",
    ),
    EventKind(
        PING,
        "连通性测试",
        "connectivity test",
        "only from `POST /webhooks/{id}/ping`",
        subscribable=False,
    ),
)

# What a subscription may ask for (all of them by default), in the catalogue's order.
EVENT_TYPES: tuple[str, ...] = tuple(k.type for k in CATALOGUE if k.subscribable)
# type -> (中文, English), the `label` of every body.
EVENT_LABELS: dict[str, tuple[str, str]] = {k.type: (k.zh, k.en) for k in CATALOGUE}
