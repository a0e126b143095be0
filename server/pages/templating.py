"""Jinja2 templates of the pages, and the filters they share.

Autoescaping is on for every template: station names and alert notes come from outside.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from envnet.core.standards import hj633

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def make_templates(zone: str) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    tz = ZoneInfo(zone)
    env = templates.env

    def when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if ts is None:
            return "—"
        return datetime.fromtimestamp(float(ts), tz).strftime(fmt)

    def pollutant(key: str) -> tuple[str, str]:
        # Issue 17 adds real-time indicators such as o3_8h or pm25_24h: label by base name.
        base, _, window = key.partition("_")
        zh, en = hj633.POLLUTANT_LABELS.get(base, (key, key))
        return (f"{zh} {window}", f"{en} {window}") if window else (zh, en)

    def roman(cls: object) -> str:
        # A water class as the standard writes it: registry metadata may say "III", the
        # evaluator's record 3.
        if isinstance(cls, int) and 1 <= cls <= 5:
            return ("I", "II", "III", "IV", "V")[cls - 1]
        return str(cls) if cls else "—"

    env.filters["when"] = when
    env.globals["roman"] = roman
    env.globals["pollutant"] = pollutant
    env.globals["category_by_level"] = hj633.category_by_level
    env.globals["health_advice"] = hj633.health_advice
    return templates


def render(
    templates: Jinja2Templates, request: Request, name: str, ctx: dict[str, Any], status: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, ctx, status_code=status)
