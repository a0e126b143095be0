from __future__ import annotations

from pathlib import Path

import pytest

from envnet.config import ConfigError, load_config


def test_defaults_without_file() -> None:
    s = load_config(None, environ={})
    assert s.influx.api == "auto" and s.mqtt.url.startswith("mqtt://")


def test_env_overrides_file(tmp_path: Path) -> None:
    p = tmp_path / "envnet.toml"
    p.write_text('[influx]\napi = "v2"\nbatch_size = 10\n[server]\nlisten = "0.0.0.0:9000"\n')
    s = load_config(p, environ={"ENVNET_INFLUX_API": "v1", "ENVNET_SERVER_API_KEY": "k"})
    assert s.influx.api == "v1"  # environment wins
    assert s.influx.batch_size == 10
    assert s.server.api_key == "k"
    assert s.server_host_port == ("0.0.0.0", 9000)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("", {"ENVNET_INFLUX_API": "v3"}, "influx.api:"),
        ("", {"ENVNET_MQTT_URL": "http://x"}, "mqtt.url: must start with mqtt://"),
        ("[influx]\nbatch_size = 0\n", {}, "influx.batch_size:"),
        ("[server]\nlisten = 'nope'\n", {}, "server.listen: must be HOST:PORT"),
        ("[influx]\ntypo = 1\n", {}, "influx.typo: unknown setting"),
        ("[[broken", {}, "not valid TOML"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, toml: str, env: dict, message: str) -> None:
    p = tmp_path / "envnet.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_config(p, environ=env)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_is_one_line() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/envnet.toml", environ={})
