"""The console (behind a login): sections listed in sections.py, one router each."""

from __future__ import annotations

from fastapi import APIRouter

from server.pages.console import auth
from server.pages.console.context import Console
from server.pages.console.sections import SECTIONS


def routers(console: Console) -> list[APIRouter]:
    return [auth.router(console), *(s.router(console, s.roles) for s in SECTIONS)]
