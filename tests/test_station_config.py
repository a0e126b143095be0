"""The one config.json builder: the firmware's required keys, provisioned and simulated."""

from __future__ import annotations

import ast
from pathlib import Path

from envnet.devkit.sim import station_config as sim_config
from envnet.domain.station_config import station_config
from envnet.tools.provision import build_config

FIRMWARE_CONFIG = Path(__file__).resolve().parents[1] / "firmware" / "lib" / "config.py"


def _firmware_constant(name: str):
    tree = ast.parse(FIRMWARE_CONFIG.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not in {FIRMWARE_CONFIG}")


def _get(cfg: dict, key: str):
    for k in key.split("."):
        cfg = cfg[k]
    return cfg


def test_every_builder_gives_the_firmware_its_required_keys():
    required = _firmware_constant("REQUIRED")
    optional = set(_firmware_constant("DEFAULTS"))
    board = build_config("st-01", "air", {"profile": "esp32-air"}, "mqtts://b:8883", "u", "p")
    sim = sim_config("sim-air-001", "air", "mqtt://127.0.0.1:1884", 1.0)
    for cfg in (board, sim):
        for key in required:
            assert _get(cfg, key) not in (None, ""), key
        extra = set(cfg) - set(k.split(".")[0] for k in required) - optional
        assert not extra, f"keys the firmware does not read: {extra}"
    assert board["mqtt"] == {
        "host": "b",
        "port": 8883,
        "user": "u",
        "password": "p",
        "keepalive": 30,
        "tls": True,
    }
    assert sim["mqtt"]["port"] == 1884 and sim["mqtt"]["tls"] is False
    assert (board["health_s"], sim["health_s"]) == (300, 5.0)  # a board: at most once a minute
    assert "ota" not in board and sim["sim"] == {"seed": 1}


def test_optional_sections_come_last_and_only_when_given():
    cfg = station_config(
        "st-02",
        "water",
        "esp32-water",
        "mqtt://h",
        interval_s=300,
        sample_s=50,
        health_s=1500,
        ota={"key": "ab", "key_id": "fleet-1"},
    )
    assert list(cfg)[-2:] == ["ntp", "ota"] and cfg["mqtt"]["port"] == 1883
