"""A station's config.json: the one builder, for provisioned boards and simulated stations.

The shape is the firmware's (firmware/lib/config.py): REQUIRED are station_id, kind, board,
interval_s, sample_s, health_s, mqtt.host and mqtt.port; mqtt.user/password/keepalive/tls,
wifi, ntp, ota and sim are the sections it reads with defaults. The key order is stable (the
file is written as built, and tests compare it).

The timing differs by caller (a real board takes its sampling from its profile and reports
health at most once a minute; a simulated station runs compressed), so the caller gives it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

MQTT_KEEPALIVE_S = 30
NTP_HOST = "pool.ntp.org"


def mqtt_section(mqtt_url: str, user: str, password: str) -> dict[str, Any]:
    """The broker as the station sees it: mqtt://host[:1883] or mqtts://host[:8883] (TLS)."""
    url = urlparse(mqtt_url)
    tls = url.scheme == "mqtts"
    return {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or (8883 if tls else 1883),
        "user": user,
        "password": password,
        "keepalive": MQTT_KEEPALIVE_S,
        "tls": tls,
    }


def station_config(
    station_id: str,
    kind: str,
    board: str,
    mqtt_url: str,
    *,
    interval_s: float,
    sample_s: float,
    health_s: float,
    user: str = "",
    password: str = "",
    wifi_ssid: str = "",
    ota: dict[str, str] | None = None,
    sim: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """config.json as a dict; `ota` ({"key": hex, "key_id": ...}) and `sim` only when given."""
    cfg: dict[str, Any] = {
        "station_id": station_id,
        "kind": kind,
        "board": board,
        "interval_s": interval_s,
        "sample_s": sample_s,
        "health_s": health_s,
        "mqtt": mqtt_section(mqtt_url, user, password),
        "wifi": {"ssid": wifi_ssid, "password": ""},
        "ntp": {"host": NTP_HOST},
    }
    if ota is not None:
        cfg["ota"] = ota
    if sim is not None:
        cfg["sim"] = sim
    return cfg
