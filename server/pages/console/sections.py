"""The console's sections: one nav entry and one router each.

A section is added by writing its module (a `router(console) -> APIRouter` under /console/...)
and one `Section` line below; the nav, the landing page (a user's first section) and the role
checks follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter

from envnet.store.users import Session
from server.pages.console import alerts, cases, health, rollouts
from server.pages.console.context import Console

EVERYONE_BUT_UNITS = frozenset({"duty_room", "reviewer", "admin"})
EVERYONE = EVERYONE_BUT_UNITS | {"unit"}


@dataclass(frozen=True)
class Section:
    key: str
    path: str
    label_zh: str
    label_en: str
    roles: frozenset[str]  # who sees the entry and may open the pages
    router: Callable[[Console, frozenset[str]], APIRouter]


SECTIONS: tuple[Section, ...] = (
    Section("alerts", "/console/alerts", "告警", "Alerts", EVERYONE_BUT_UNITS, alerts.router),
    Section("cases", "/console/cases", "督办案件", "Cases", EVERYONE, cases.router),
    Section(
        "health", "/console/health", "站点状态", "Station health", EVERYONE_BUT_UNITS, health.router
    ),
    Section(
        "rollouts",
        "/console/rollouts",
        "固件升级",
        "Rollouts",
        frozenset({"duty_room", "admin"}),
        rollouts.router,
    ),
)


def visible(session: Session) -> list[Section]:
    return [s for s in SECTIONS if session.user.role in s.roles]
