"""Release bundles and the server fixture for the OTA server tests (tests/test_ota_*.py).

`make_release` writes a bundle exactly as docs/ota.md ("Bundle") describes it, so these tests
do not depend on how `envnet release` compiles firmware; the e2e test uses the real builder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

FLEET_KEY = "5eed" * 16  # 32 bytes, hex


def sign(manifest_bytes: bytes, key_hex: str = FLEET_KEY) -> str:
    return hmac.new(bytes.fromhex(key_hex), manifest_bytes, hashlib.sha256).hexdigest()


def make_release(
    releases_dir: Path,
    version: str,
    files: dict[str, bytes] | None = None,
    key_hex: str = FLEET_KEY,
    confirm_deadline_s: int = 300,
) -> Path:
    """<releases_dir>/<version>/ with manifest.json, manifest.sig and files/."""
    files = files or {"main.py": b"print('hello')\n", "lib/station.mpy": bytes(range(256)) * 8}
    d = releases_dir / version
    entries = []
    for rel, data in files.items():
        p = d / "files" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        entries.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {
        "v": 1,
        "version": version,
        "created": int(time.time()),
        "key_id": "fleet-1",
        "confirm_deadline_s": confirm_deadline_s,
        "files": entries,
    }
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    (d / "manifest.json").write_bytes(raw)
    (d / "manifest.sig").write_text(sign(raw, key_hex))
    return d


class StandIn:
    """A station that speaks the OTA protocol of docs/ota.md with paho and httpx: birth with
    `fw`, an `ota` command acked at once, the bundle downloaded and checked (signature and
    every hash), then the reports a real station sends. `behaviour` decides how it ends:
    `ok` (reboot into the new version: new birth, then `confirmed`), `crash` (`rolled_back`),
    `silent` (acks and downloads, then never confirms) or `power_cut` (restarts on the old
    version during the first download, forgetting the job)."""

    def __init__(
        self,
        port: int,
        station_id: str,
        fw: str = "1.2.0",
        behaviour: str = "ok",
        key_hex: str = FLEET_KEY,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.id, self.fw, self.behaviour, self.key_hex = station_id, fw, behaviour, key_hex
        self.port = port
        self.commands: list[dict] = []
        self.reports: list[dict] = []
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=station_id)
        self.c.will_set(self._t("status"), json.dumps({"state": "offline"}), qos=1, retain=True)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message

    def _t(self, sub: str) -> str:
        return f"envnet/v1/{self.id}/{sub}"

    def start(self) -> StandIn:
        self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        return self

    def stop(self) -> None:
        """Go away cleanly but say so, as a station powering down would (will: offline)."""
        self.c.publish(self._t("status"), json.dumps({"state": "offline"}), qos=1, retain=True)
        self.c.loop_stop()
        self.c.disconnect()

    def _birth(self) -> None:
        body = {"state": "online", "kind": "air", "fw": self.fw, "interval_s": 60}
        self.c.publish(self._t("status"), json.dumps(body), qos=1, retain=True)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self._t("cmd"), qos=1)
        self._birth()

    def _on_message(self, client, userdata, msg) -> None:
        import threading

        cmd = json.loads(msg.payload)
        self.commands.append(cmd)
        if cmd.get("op") != "ota":
            return
        if cmd["version"] == self.fw:
            self._ack(cmd, False, "already running that version")
            return
        self._ack(cmd, True)
        threading.Thread(target=self._update, args=(cmd,), daemon=True).start()

    def _ack(self, cmd: dict, ok: bool, error: str | None = None) -> None:
        body = {"id": cmd["id"], "ok": ok, **({"error": error} if error else {})}
        self.c.publish(self._t("cmd/ack"), json.dumps(body), qos=1)

    def report(self, version: str, state: str, reason: str = "") -> None:
        body = {
            "v": 1,
            "version": version,
            "from": self.fw,
            "state": state,
            "reason": reason,
            "ts": time.time(),
        }
        self.reports.append(body)
        self.c.publish(self._t("ota"), json.dumps(body), qos=1).wait_for_publish(10)

    def _update(self, cmd: dict) -> None:
        import httpx

        v, url = cmd["version"], cmd["url"]
        self.report(v, "downloading")
        if self.behaviour == "power_cut":
            # Power lost mid-download: it boots the old version again (a new birth), the
            # job forgotten. Next time it works.
            self.behaviour = "ok"
            time.sleep(0.5)
            self._birth()
            return
        try:
            raw = httpx.get(url + "manifest.json", timeout=10).content
            sig = httpx.get(url + "manifest.sig", timeout=10).text.strip()
            if not hmac.compare_digest(sign(raw, self.key_hex), sig):
                self.report(v, "failed", "bad signature")
                return
            for f in json.loads(raw)["files"]:
                data = httpx.get(url + "files/" + f["path"], timeout=10).content
                if hashlib.sha256(data).hexdigest() != f["sha256"]:
                    self.report(v, "failed", f"hash mismatch on {f['path']}")
                    return
        except httpx.HTTPError as e:
            self.report(v, "failed", f"download error: {e}")
            return
        self.report(v, "verified")
        self.report(v, "switching")
        if self.behaviour == "crash":
            self.report(v, "rolled_back", "crash on boot: ImportError: no module named 'sps30'")
        elif self.behaviour == "ok":
            self.reboot_and_confirm(v)

    def reboot_and_confirm(self, version: str) -> None:
        """Run the new version: birth with the new `fw`, then `confirmed` (from the old one)."""
        old, self.fw = self.fw, version
        self._birth()
        body = {
            "v": 1,
            "version": version,
            "from": old,
            "state": "confirmed",
            "reason": "",
            "ts": time.time(),
        }
        self.reports.append(body)
        self.c.publish(self._t("ota"), json.dumps(body), qos=1).wait_for_publish(10)
