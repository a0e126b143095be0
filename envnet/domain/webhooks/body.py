"""The JSON body every subscriber of an event receives (docs/webhooks.md, section 3), and
which subscriptions want an event. Pure: the caller brings the station's registry entry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from envnet.core.standards import gb3838, hj633
from envnet.domain import registry
from envnet.domain.webhooks.catalogue import EVENT_LABELS


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _label(value: Any) -> dict[str, str] | None:
    """("中文", "English") or {"zh":..,"en":..} -> {"zh":..,"en":..}."""
    if isinstance(value, dict) and ("zh" in value or "en" in value):
        return {k: str(v) for k, v in value.items() if k in ("zh", "en") and v is not None}
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
    ):
        return {"zh": value[0], "en": value[1]}
    return None


def _parameter_label(parameter: Any) -> dict[str, str] | None:
    if not isinstance(parameter, str):
        return None
    pair = hj633.POLLUTANT_LABELS.get(parameter) or gb3838.PARAM_LABELS.get(parameter)
    return {"zh": pair[0], "en": pair[1]} if pair else None


def build_body(
    event_id: str,
    event_type: str,
    created_at: float,
    payload: dict[str, Any],
    base_url: str,
    station: str | None,
    station_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body every subscriber of this event receives (docs/webhooks.md)."""
    data = dict(payload)
    for key in [k for k in data if k.endswith("_label") or k == "category"]:
        label = _label(data[key])
        if label is not None:
            data[key] = label
    # The alert engine's X_zh / X_en pairs (category_zh, level_zh, ...) also as one label X
    # (or X_label when X is taken: the episode's "level" is "orange", its label 橙色预警).
    for key in [k for k in data if k.endswith("_zh")]:
        name = key[:-3]
        zh, en = data.get(key), data.get(f"{name}_en")
        if zh is None and en is None:
            continue
        target = name if name not in data else f"{name}_label"
        if target not in data:
            data[target] = {k: v for k, v in (("zh", zh), ("en", en)) if v is not None}
    if "parameter" in data and "parameter_label" not in data:
        label = _parameter_label(data["parameter"])
        if label:
            data["parameter_label"] = label
    if station and station_meta and "station_name" not in data:
        name_zh, name_en = registry.names(station_meta)
        if name_zh or name_en:
            data["station_name"] = {k: v for k, v in (("zh", name_zh), ("en", name_en)) if v}
    if station and "station" not in data:  # given as an argument only
        data["station"] = station
    links: dict[str, str] = {}
    if event_type.startswith("alert.") and data.get("id") is not None:
        links["self"] = f"{base_url}/alerts/{data['id']}"
    if station:
        links["station"] = f"{base_url}/stations/{station}"
    zh, en = EVENT_LABELS.get(event_type, (event_type, event_type))
    return {
        "id": event_id,
        "type": event_type,
        "created_at": iso(created_at),
        "label": {"zh": zh, "en": en},
        "data": data,
        "links": links,
    }


def matches(
    sub: dict[str, Any],
    event_type: str,
    station: str | None,
    district: str | None,
    severity: str | None,
) -> bool:
    """A subscription wants an event of one of its types; each non-empty filter (stations,
    districts, severities) must contain the event's value when the event has one. Events
    without the field (episode.changed has no station) pass that filter."""
    if event_type not in sub["events"]:
        return False
    for values, value in (
        (sub["stations"], station),
        (sub["districts"], district),
        (sub["severities"], severity),
    ):
        if values and value is not None and value not in values:
            return False
    return True
