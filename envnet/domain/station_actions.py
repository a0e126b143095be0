"""Which audit row a station command makes: the action and its detail, secrets masked.

A command changes a station when it sets config, calibrates, enters or leaves maintenance or
reboots; the serial console (`envnet console`) and the server's MQTT commands both record it
with `station_action(request, answer, before)`. Mirrors firmware/lib/console.py parse().
Action names are listed in docs/audit.md.
"""

from __future__ import annotations

import json
from typing import Any

STATION_OPS = ("config", "calibrate", "maint", "reboot")  # the ops that change a station
SECRET_CONFIG_KEYS = ("mqtt.password", "wifi.password")  # firmware/lib/config.py SECRET


def parse_value(text: str) -> Any:
    """As the firmware's console parses a value: JSON where possible, else the bare string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def command_request(words: list[str]) -> dict[str, Any] | None:
    """The firmware request a console line makes, when it changes the station; else None.

    Mirrors firmware/lib/console.py parse() for config set, calibrate, maint and reboot."""
    words = [w for w in words if w != "--json"]
    if not words:
        return None
    op, args = words[0], words[1:]
    if op == "config" and len(args) == 3 and args[0] == "set":
        return {"op": "config", "set": {args[1]: parse_value(args[2])}}
    if op == "calibrate" and args:
        kw = {k: parse_value(v) for k, _, v in (a.partition("=") for a in args[1:])}
        return {"op": "calibrate", "sensor": args[0], "args": kw}
    if op == "maint" and len(args) == 1 and args[0] in ("on", "off"):
        return {"op": "maint", "on": args[0] == "on"}
    if op == "reboot" and not args:
        return {"op": "reboot"}
    return None


def _shown(key: str, value: Any) -> Any:
    return "***" if key in SECRET_CONFIG_KEYS or "password" in key else value


def _maint_row(on: bool, was: bool | None) -> tuple[str, dict[str, Any]] | None:
    if was is not None and bool(was) == on:
        return None  # already in (or out of) maintenance: no window starts or ends
    return ("station.maint.start" if on else "station.maint.end"), {"maint": on}


def _config_row(
    req: dict[str, Any], answer: dict[str, Any], before: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    (key, value), *_ = req["set"].items()
    if key == "maint":
        return _maint_row(bool(value), before.get("maint"))
    if answer.get("changed") == []:
        return None  # the station had that value already
    old = before.get("config", {}).get(key)
    return "station.config.set", {"key": key, "old": _shown(key, old), "new": _shown(key, value)}


def station_action(
    req: dict[str, Any], answer: dict[str, Any], before: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]] | None:
    """(action, detail) for a station command the station accepted, or None when nothing
    changed. `before` holds what was read first: {"maint": bool, "config": {key: old}}."""
    before = before or {}
    if not answer.get("ok"):
        return None
    op = req.get("op")
    if op == "config" and isinstance(req.get("set"), dict) and len(req["set"]) == 1:
        return _config_row(req, answer, before)
    if op == "config" and isinstance(req.get("set"), dict) and req["set"]:  # several keys (MQTT)
        if answer.get("changed") == []:
            return None
        shown = {k: _shown(k, v) for k, v in req["set"].items()}
        return "station.config.set", {"set": shown, "changed": answer.get("changed")}
    if op == "calibrate":
        detail = {"sensor": req.get("sensor"), "args": req.get("args") or {}}
        return "station.calibrate", {**detail, "result": answer.get("result")}
    if op == "maint" and isinstance(req.get("on"), bool):
        return _maint_row(req["on"], before.get("maint"))
    if op == "reboot":
        return "station.reboot", {}
    return None
