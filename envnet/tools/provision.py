"""`envnet provision STATION_ID ...`: config.json, MQTT credentials and ACL, registry entry.

Writes `<out>/<id>/config.json` in the shape the firmware reads (firmware/lib/config.py),
validated against the board profile (hardware/boards/<PROFILE>.json); adds the station to
Mosquitto's password file with `mosquitto_passwd -b` and to the ACL file (the station may
write only under `envnet/v1/<id>/` and read only its own `cmd`); registers it in the state
store with its metadata. Any refusal is a ProvisionError (the command, envnet/cli/field.py,
prints it as one line on stderr and exits 2).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from envnet.core import contract
from envnet.domain.station_config import station_config
from envnet.store import audit
from envnet.store.state import SqliteStateStore

REPO = Path(__file__).resolve().parents[2]
BOARDS_DIR = REPO / "hardware" / "boards"
DEFAULT_OUT = Path("var/stations")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
WATER_CLASSES = ("I", "II", "III", "IV", "V")
STATION_CLASSES = ("micro", "city", "national", "section")


class ProvisionError(ValueError):
    """str() is the one line shown to the technician."""


def load_board(profile: str, kind: str) -> dict:
    if not profile or "/" in profile or profile.startswith("."):
        raise ProvisionError(f"bad board profile name {profile!r}")
    path = BOARDS_DIR / f"{profile}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in BOARDS_DIR.glob("*.json")))
        raise ProvisionError(f"unknown board profile {profile!r} (known: {known})")
    board = json.loads(path.read_text())
    if board.get("kind") != kind:
        raise ProvisionError(
            f"board profile {profile!r} is for {board.get('kind')} stations, not {kind}"
        )
    return board


def build_config(
    station_id: str,
    kind: str,
    board: dict,
    mqtt_url: str,
    user: str,
    password: str,
    ota_key: dict | None = None,
) -> dict:
    """config.json for a real board: intervals from the profile (health at most once a
    minute), credentials, broker, and the OTA fleet key if there is one."""
    interval = board.get("interval_s") or contract.KINDS[kind]["interval_s"]
    return station_config(
        station_id,
        kind,
        board["profile"],
        mqtt_url,
        interval_s=interval,
        sample_s=min(board.get("sample_s") or interval / 6, interval),
        health_s=max(interval * 5, 60),
        user=user,
        password=password,
        ota=ota_key or None,
    )


def acl_block(station_id: str) -> str:
    root = f"{getattr(contract, 'TOPIC_ROOT', 'envnet/v1').rstrip('/')}/{station_id}"
    return f"user {station_id}\ntopic write {root}/#\ntopic read {root}/cmd\n"


def add_password(password_file: Path, user: str, password: str) -> None:
    if not Path(MOSQUITTO_PASSWD).exists():
        raise ProvisionError("mosquitto_passwd not found (apt-get install mosquitto)")
    password_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [MOSQUITTO_PASSWD, "-b", str(password_file), user, password]
    if not password_file.exists():
        password_file.touch(mode=0o600)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise ProvisionError(f"mosquitto_passwd failed: {(r.stderr or r.stdout).strip()}")


def users_in(password_file: Path) -> set[str]:
    if not password_file.exists():
        return set()
    return {ln.split(":", 1)[0] for ln in password_file.read_text().splitlines() if ":" in ln}


def provision(
    station_id: str,
    kind: str,
    site: str,
    board_profile: str,
    out: Path,
    mqtt_url: str,
    store_path: str | Path,
    password_file: Path,
    acl_file: Path,
    meta: dict | None = None,
    actor: str | None = None,
    ota_key: dict | None = None,
    ca_file: Path | None = None,
) -> dict:
    """Do it all or refuse before writing anything. Returns the written config.

    With an mqtts:// URL the station verifies the broker against `ca_file` (mqtt.ca_file),
    copied next to its config.json as ca.pem; there is no TLS station without one.

    The audit trail gets a `station.provision` row by `actor` (default: the OS user)."""
    if not contract.STATION_ID_RE.match(station_id or ""):
        raise ProvisionError(
            f"bad station id {station_id!r}: must match {contract.STATION_ID_RE.pattern}"
        )
    if kind not in contract.KINDS:
        raise ProvisionError(f"kind must be one of {', '.join(contract.KINDS)} (got {kind!r})")
    if not site.strip():
        raise ProvisionError("--site must not be empty")
    meta = {k: v for k, v in (meta or {}).items() if v is not None}
    if meta.get("target_class") and meta["target_class"] not in WATER_CLASSES:
        raise ProvisionError(f"--target-class must be one of {', '.join(WATER_CLASSES)}")
    if meta.get("class") and meta["class"] not in STATION_CLASSES:
        raise ProvisionError(f"--class must be one of {', '.join(STATION_CLASSES)}")
    if "lat" in meta and not -90 <= meta["lat"] <= 90:
        raise ProvisionError("--lat must be within -90..90")
    if "lon" in meta and not -180 <= meta["lon"] <= 180:
        raise ProvisionError("--lon must be within -180..180")
    board = load_board(board_profile, kind)
    if urlparse(mqtt_url).scheme == "mqtts" and not (ca_file and Path(ca_file).is_file()):
        raise ProvisionError(
            "an mqtts:// broker needs mqtt.ca_file (the CA the station verifies it against)"
        )
    if not Path(MOSQUITTO_PASSWD).exists():
        raise ProvisionError("mosquitto_passwd not found (apt-get install mosquitto)")
    station_dir = out / station_id
    if (station_dir / "config.json").exists():
        raise ProvisionError(f"station {station_id} is already provisioned ({station_dir})")
    if station_id in users_in(password_file):
        raise ProvisionError(f"station {station_id} already has MQTT credentials")
    store = SqliteStateStore(store_path)
    try:
        if store.get_station_meta(station_id) is not None:
            raise ProvisionError(f"station {station_id} is already registered")
        password = secrets.token_urlsafe(18)
        # ota_key {"key": hex, "key_id": ..}: the station checks update signatures with it
        cfg = build_config(station_id, kind, board, mqtt_url, station_id, password, ota_key)
        full_meta = {
            "site": site,
            "board": board_profile,
            "interval_s": cfg["interval_s"],
            "class": "micro" if kind == "air" else "section",
            **meta,
        }
        if not store.register_station(station_id, kind, full_meta):
            raise ProvisionError(f"station {station_id} is already registered")
    finally:
        store.close()
    try:
        add_password(password_file, station_id, password)
    except ProvisionError:
        store = SqliteStateStore(store_path)  # undo the registration: all or nothing
        try:
            store.delete_station(station_id)
        finally:
            store.close()
        raise
    acl_file.parent.mkdir(parents=True, exist_ok=True)
    with open(acl_file, "a") as f:
        f.write(("\n" if acl_file.stat().st_size else "") + acl_block(station_id))
    station_dir.mkdir(parents=True, exist_ok=True)
    tmp = station_dir / "config.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds a secret
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent=1, ensure_ascii=False)
    os.replace(tmp, station_dir / "config.json")
    if cfg["mqtt"]["tls"] and ca_file:
        shutil.copyfile(ca_file, station_dir / "ca.pem")  # envnet flash puts it on the board
    audit.record_to_path(
        store_path,
        actor=actor or audit.os_user(),
        action="station.provision",
        target=station_id,
        detail={"kind": kind, "board": board_profile, "meta": full_meta, "mqtt_user": station_id},
    )
    return cfg
