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
        "告警级别升级",
        "alert severity escalated",
        "a worse reading raised an open alert's severity (an acknowledged alert re-opens); "
        "reminders and urging when time passes are case slips (`case.slip`)",
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
        "case.opened",
        "督办案件已交办",
        "case opened",
        "a case was opened from an alert (by the case policy) or by hand, and assigned to the "
        "responsible unit (docs/cases.md)",
    ),
    EventKind(
        "case.slip",
        "督办单据",
        "case slip issued",
        "a slip fell due: 提示单 notice, 预警单 warning, 督办单 supervision order or 催办单 urging "
        "(escalated to the parent unit); `slip_type` and `slip_label` say which",
    ),
    EventKind("case.signed", "案件已签收", "case signed", "the responsible unit signed the case"),
    EventKind(
        "case.reported",
        "案件已反馈",
        "case reported",
        "the unit reported its handling (text, photos, position)",
    ),
    EventKind(
        "case.verified", "案件已核查", "case verified", "the duty room verified the handling"
    ),
    EventKind(
        "case.returned",
        "案件已退回",
        "case returned",
        "the duty room returned the case for more work, with a reason",
    ),
    EventKind(
        "case.closed", "案件已办结", "case closed", "the case closed (only after verification)"
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
