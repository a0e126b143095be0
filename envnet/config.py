"""envnet configuration: one TOML file, every key overridable as ENVNET_<SECTION>_<KEY>.

A missing or wrong setting stops start-up with one line that names the key, for example
`envnet: config error: influx.api: must be one of auto, v1, v2 (got 'v3')`.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from envnet.domain.alerts.rules import AlertSettings
from envnet.domain.cases.settings import CaseSettings
from envnet.domain.reports.settings import ReportSettings, TargetSettings
from envnet.domain.review.settings import ReviewSettings
from envnet.domain.settings_json import json_if_text

ENV_PREFIX = "ENVNET_"


class ConfigError(ValueError):
    """A setting is missing or wrong; str() is the one line shown to the operator."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "envnet-gateway"
    username: str = ""
    password: str = ""
    keepalive: int = Field(30, ge=5, le=3600)
    # MQTT 5 shared-subscription group; empty means a plain subscription (one gateway).
    shared_group: str = ""
    # MQTT 5 (shared_group set) only: how long the broker keeps a gateway's session, and the
    # messages it has handed it but not had acknowledged, after its connection drops; the
    # gateway resumes it (clean start off). MQTT 3.1.1 sessions (one gateway) never expire.
    session_expiry_s: int = Field(7 * 86400, ge=0, le=0xFFFFFFFF)
    # mqtts:// only: the CA that signed the broker's certificate (empty: the system's CAs),
    # and a client certificate + key when the broker requires one (require_certificate).
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        if not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError(f"must start with mqtt:// or mqtts:// (got {v!r})")
        return v

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable_file(cls, v: str) -> str:
        if v and not Path(v).is_file():
            raise ValueError("no such file")
        return v

    @model_validator(mode="after")
    def _cert_and_key(self) -> MqttSettings:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together (set both or neither)")
        return self


class InfluxSettings(_Section):
    url: str = "http://127.0.0.1:8086"
    # auto: ask the server's /ping for its version; v2 write API on 1.8+, 2.x, 3.x, else v1 /write.
    api: Literal["auto", "v1", "v2"] = "auto"
    database: str = "envnet"
    retention_policy: str = ""
    bucket: str = ""
    org: str = "envnet"
    token: str = ""
    username: str = ""
    password: str = ""
    batch_size: int = Field(5000, ge=1, le=100_000)
    flush_interval_s: float = Field(0.5, gt=0, le=60)
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {v!r})")
        return v.rstrip("/")


class StoreSettings(_Section):
    # The state store (stations, health, alerts, outbox). SQLite here; see envnet/store/state.py.
    path: str = "var/envnet.db"
    # Gateways on several machines share one state store on PostgreSQL instead
    # ("postgresql://user@host/envnet"; docs/operations.md, Scale-out). Empty: SQLite at path.
    url: str = ""

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        if v and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"must start with postgresql:// (got {v.split('@')[-1]!r})")
        return v

    @property
    def location(self) -> str:
        """What the stores open: the PostgreSQL URL when set, else the SQLite file."""
        return self.url or self.path


class GatewaySettings(_Section):
    # The durable receive buffer: a reading is acknowledged to the broker only once it is here.
    buffer_path: str = "var/gateway-buffer.db"
    # Written readings stay this long so that replays within it are recognised as duplicates.
    keep_written_hours: float = Field(48.0, ge=0)
    max_payload_bytes: int = Field(262_144, ge=256)
    # Readings from stations not in the registry are stored (nothing lost) and counted.
    accept_unregistered: bool = True
    metrics_port: int = Field(0, ge=0, le=65535)
    # A synced clock cannot be minutes ahead or a year behind: such readings are dead-lettered
    # as bad_timestamp (clock-flagged readings are exempt: the gateway stamps those itself).
    max_future_s: float = Field(600.0, ge=0)
    max_age_days: float = Field(366.0, gt=0)
    # Raw messages as received, kept this long so any stored value traces back to its bytes.
    # At least a year by default (issue 18): a reviewer must be able to trace any figure of
    # the year back to its bytes; docs/review.md gives the storage it costs per station.
    raw_retention_days: float = Field(366.0, ge=0)
    # Alert evaluation as a child process (a core of its own) or a thread of the gateway.
    evaluator: Literal["process", "thread"] = "process"
    # The message log every received message is committed to before it is acknowledged
    # (empty: beside buffer_path, "<buffer>-log.db"). Its rows are kept raw_retention_days.
    log_path: str = ""
    # Alert evaluation is split by station into this many partitions; every gateway sharing
    # one state store (and one MQTT shared subscription) must use the same number.
    eval_partitions: int = Field(1, ge=1, le=256)


class ServerSettings(_Section):
    listen: str = "127.0.0.1:8080"
    # The key named "admin"; more keys, each with a name the audit trail records, in api_keys.
    api_key: str = ""
    # name -> key (TOML table); ENVNET_SERVER_API_KEYS="duty-room:KEY1,ops:KEY2" or JSON.
    api_keys: dict[str, str] = Field(default_factory=dict)
    public_url: str = ""
    # What each named key may do (docs/cases.md, docs/review.md): name -> "duty_room",
    # "reviewer", "admin" or "unit:<unit id>" (a unit sees and acts on its own cases only). A
    # key not listed here keeps the rights it always had (admin). ENVNET_SERVER_KEY_ROLES takes
    # "duty-room:duty_room,heping:unit:hp-bureau" or JSON.
    key_roles: dict[str, str] = Field(default_factory=dict)

    @field_validator("key_roles", mode="before")
    @classmethod
    def _parse_roles(cls, v):
        return parse_api_keys(v) if isinstance(v, str) else v

    @field_validator("key_roles")
    @classmethod
    def _check_roles(cls, v: dict[str, str]) -> dict[str, str]:
        for name, role in v.items():
            kind, _, unit = role.partition(":")
            if kind not in KEY_ROLES or (kind == "unit") != bool(unit.strip()):
                raise ValueError(
                    f"role of {name!r} must be one of duty_room, reviewer, admin, unit:<unit id>"
                    f" (got {role!r})"
                )
        return v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, v):
        return parse_api_keys(v) if isinstance(v, str) else v

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, v: dict[str, str]) -> dict[str, str]:
        return check_api_keys(v)

    @model_validator(mode="after")
    def _admin_key_unique(self) -> ServerSettings:
        if self.api_key and self.api_key in self.api_keys.values():
            raise ValueError("api_keys: a named key equals server.api_key (the 'admin' key)")
        unknown = sorted(set(self.key_roles) - set(self.api_keys) - {"admin"})
        if unknown:
            raise ValueError(f"key_roles: no key named {', '.join(unknown)} in server.api_keys")
        return self

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"must be HOST:PORT (got {v!r})")
        return v


KEY_ROLES = ("duty_room", "reviewer", "admin", "unit")
API_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def parse_api_keys(v: str) -> dict[str, str]:
    """`name:key,name:key` (or a JSON object) -> {name: key}."""
    v = v.strip()
    if v.startswith("{"):
        return json_if_text(v)
    out: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in v.split(","))):
        name, sep, key = item.partition(":")
        if not sep:
            raise ValueError("must be NAME:KEY[,NAME:KEY...] (an item has no ':')")
        if name.strip() in out:
            raise ValueError(f"the name {name.strip()!r} appears twice")
        out[name.strip()] = key.strip()
    return out


def check_api_keys(v: dict[str, str]) -> dict[str, str]:
    for name, key in v.items():
        if not API_KEY_NAME_RE.match(name):
            raise ValueError(f"bad key name {name!r}: letters, digits, _ . @ - (up to 64)")
        if name == "admin":
            raise ValueError("'admin' is the name of server.api_key; choose another name")
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"the key named {name!r} is empty or contains white space")
    if len(set(v.values())) != len(v):
        raise ValueError("two names share one key: each name needs its own key")
    return v


class WebhookSettings(_Section):
    # Delivery of signed webhooks from the persisted outbox (envnet/store/webhooks/;
    # docs/webhooks.md).
    # Attempt n (1-based) that fails retryably waits min(cap, base * factor**(n-1)), shortened
    # at random by up to `jitter` (a fraction); after max_attempts the delivery is dead-lettered.
    max_attempts: int = Field(20, ge=1, le=100)
    backoff_base_s: float = Field(5.0, gt=0, le=86_400)
    backoff_factor: float = Field(2.0, ge=1, le=10)
    backoff_cap_s: float = Field(3600.0, gt=0, le=86_400)
    jitter: float = Field(0.25, ge=0, le=1)
    timeout_s: float = Field(10.0, gt=0, le=300)
    # Deliveries in flight at once (to different subscriptions; one subscription is in order).
    concurrency: int = Field(8, ge=1, le=256)
    # How often the server looks for events other processes (the gateway) put in the outbox.
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    # Finished deliveries (delivered, failed, dead) stay inspectable this long; 0 keeps all.
    keep_days: float = Field(30.0, ge=0)


class OtaSettings(_Section):
    # Over-the-air updates, server side (docs/ota.md). Bundles written by `envnet release`.
    releases_dir: str = "var/releases"
    # The fleet key (hex) the server checks manifest.sig with; empty: signatures are not
    # checked on the server (the stations always check them).
    fleet_key: str = ""
    # Base URL stations download from; empty: server.public_url, else http://<server.listen>.
    download_url: str = ""
    # A stage pauses when (failed + rolled_back + timed out) / stations in the stage exceeds it.
    failure_threshold: float = Field(0.2, ge=0, le=1)
    # A station that has not confirmed this long after it was sent the command counts as failed.
    stage_deadline_s: float = Field(1800.0, gt=0, le=7 * 86_400)
    # Resend the command to a station that neither acked nor reported after this long.
    resend_after_s: float = Field(300.0, gt=0, le=86_400)
    # How often the rollout worker looks at the state store.
    tick_s: float = Field(2.0, gt=0, le=600)

    @field_validator("fleet_key")
    @classmethod
    def _hex(cls, v: str) -> str:
        try:
            bytes.fromhex(v)
        except ValueError:
            raise ValueError("must be hex") from None
        return v.lower()


class PagesSettings(_Section):
    # The web pages (docs/pages.md): public pages without a key, the console behind a login.
    enabled: bool = True
    # Session cookies carry Secure (sent over HTTPS only). Set false only for plain http on
    # localhost (the demo, the tests); production serves the console over HTTPS.
    cookie_secure: bool = True
    session_hours: float = Field(12.0, gt=0, le=24 * 30)
    # Login throttling: after `login_max_failures` failed logins for one user name, or from
    # one client address, within `login_window_s`, further attempts are refused until the
    # window has passed (a correct password included).
    login_max_failures: int = Field(5, ge=1, le=1000)
    login_window_s: float = Field(900.0, gt=0, le=86_400)
    # Public pages reload themselves this often (seconds).
    refresh_s: int = Field(60, ge=5, le=3600)
    city_zh: str = "沈阳市"
    city_en: str = "Shenyang"


class StandardsSettings(_Section):
    edition: Literal["2012"] = "2012"
    # Which PM concentration enters the real-time PM IAQI: "1h" the hourly mean (default),
    # "24h" the 24-hour moving mean; both are published. docs/standards.md gives the source.
    realtime_pm: Literal["1h", "24h"] = "1h"


class UplinkPlatform(_Section):
    # One HJ 212-2017 platform (docs/hj212.md). stations maps envnet station id -> MN.
    name: str
    host: str
    port: int = Field(ge=1, le=65535)
    password: str = ""
    stations: dict[str, str] = Field(default_factory=dict)
    ack: bool = True  # Flag asks the platform for a 9014 data ack
    send: list[Literal["2011", "2051", "2061", "2031"]] = ["2011", "2051", "2061", "2031"]


class UplinkSettings(_Section):
    outbox_path: str = "var/uplink.db"
    client_id: str = "envnet-uplink"
    minute_s: int = Field(600, ge=60, le=3600)  # period of 2051 "minute" data
    close_grace_s: float = Field(120.0, ge=0, le=3600)
    ack_timeout_s: float = Field(10.0, gt=0, le=300)
    backoff_max_s: float = Field(60.0, gt=0, le=3600)
    # A list of tables in TOML; ENVNET_UPLINK_PLATFORMS takes the same as JSON.
    platforms: list[UplinkPlatform] = []

    @field_validator("platforms", mode="before")
    @classmethod
    def _json(cls, v):
        return json_if_text(v)


class Settings(_Section):
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    store: StoreSettings = StoreSettings()
    gateway: GatewaySettings = GatewaySettings()
    server: ServerSettings = ServerSettings()
    webhooks: WebhookSettings = WebhookSettings()
    ota: OtaSettings = OtaSettings()
    standards: StandardsSettings = StandardsSettings()
    pages: PagesSettings = PagesSettings()  # docs/pages.md
    uplink: UplinkSettings = UplinkSettings()
    alerts: AlertSettings = AlertSettings()
    reports: ReportSettings = ReportSettings()  # docs/reports.md
    targets: TargetSettings = TargetSettings()  # plan targets, docs/reports.md
    cases: CaseSettings = CaseSettings()  # the supervision loop, docs/cases.md
    review: ReviewSettings = ReviewSettings()  # data review and calibration, docs/review.md

    @property
    def server_host_port(self) -> tuple[str, int]:
        host, _, port = self.server.listen.rpartition(":")
        return host, int(port)


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    """ENVNET_INFLUX_API=v1 -> {"influx": {"api": "v1"}} for every known section and key."""
    out: dict[str, dict[str, str]] = {}
    for section, field in Settings.model_fields.items():
        model = field.annotation
        for key in model.model_fields:  # type: ignore[union-attr]
            name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            if name in environ:
                out.setdefault(section, {})[key] = environ[name]
    return out


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown setting"
    elif "input" in e and not isinstance(e["input"], dict) and "api_key" not in key:
        msg = f"{msg} (got {e['input']!r})"
    return f"{key}: {msg}"


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate."""
    environ = dict(os.environ) if environ is None else environ
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
    for section, values in _env_overrides(environ).items():
        sect = data.setdefault(section, {})
        if not isinstance(sect, dict):
            raise ConfigError(f"{section}: must be a table")
        sect.update(values)
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_first_error(e)) from None
