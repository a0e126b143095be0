"""The rollout worker: applies the staged-rollout policy to the state store, sends commands.

The policy (stages, deadlines, failure threshold, when to pause, when to resend) is pure and
lives in envnet/domain/ota/rollout.py. The worker in the server process runs
`RolloutEngine.step()` every `ota.tick_s`:

1. fold what stations said (`ota` reports and `cmd/ack`, appended by the gateway to
   `ota_events`) into the targets of the active rollout;
2. for the active rollout, if running: enter the current stage (resolve its stations once),
   time out stations that did not confirm within `stage_deadline_s`, pause when the stage's
   failure rate exceeds the threshold, move to the next stage when every station of this one
   has a final answer, and pick the stations to (re)send the `ota` command to.

A step is one SQLite transaction (BEGIN IMMEDIATE), and the commands it decides on are marked
`sent` inside it, so several server processes never send the same command twice: the second
one sees the first one's decision. Commands are published after the commit; one that the
broker does not take goes back to `pending` and is tried on a later step.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from envnet.config import OtaSettings, Settings
from envnet.core import contract
from envnet.domain.ota import rollout as policy
from envnet.domain.ota.rollout import FINAL, running_version
from envnet.store.audit import record_audit
from envnet.store.ota import SqliteOtaStore
from envnet.store.state import SqliteStateStore

log = logging.getLogger("server.rollout")

CURSOR_KEY = "ota:events_cursor"
SYSTEM_ACTOR = "ota-rollout"  # the audit trail's actor for what the worker decides by itself
KEEP_EVENTS_S = 7 * 86_400


def stage_members(store: SqliteStateStore, selector: str, exclude: set[str]) -> list[str]:
    """Registered stations the selector names, minus those of earlier stages."""
    return policy.select_members(selector, store.list_stations(), exclude)


@dataclass(frozen=True, slots=True)
class Command:
    rollout_id: str
    station: str
    cmd_id: str
    payload: dict[str, Any]


class RolloutEngine:
    """The rollout state machine over the state store. No MQTT here: step() returns what to send."""

    def __init__(
        self,
        store: SqliteStateStore,
        settings: OtaSettings,
        download_base: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ota = SqliteOtaStore(store)
        self.settings = settings
        self.download_base = download_base.rstrip("/")
        self.clock = clock

    # -- one step --------------------------------------------------------------------------
    def step(self) -> list[Command]:
        with self.store.tx():
            self.fold_events()
            r = self.ota.active_rollout()
            if r is None or r["state"] != "running":
                return []
            return self._advance(r)

    def _advance(self, r: dict[str, Any]) -> list[Command]:
        now = self.clock()
        while r["state"] == "running" and r["stage"] < len(r["stages"]):
            if r["stage_started_at"] is None and not self._enter_stage(r, now):
                return []
            targets = self.ota.targets(r["id"], r["stage"])
            if self._time_out(r, targets, now):
                targets = self.ota.targets(r["id"], r["stage"])
            if self._pause_if_failing(r, targets):
                return []
            if not policy.stage_done(targets):
                return self._commands(r, targets, now)
            self._next_stage(r)
            r = self.ota.get_rollout(r["id"])  # type: ignore[assignment]
        return []

    def _enter_stage(self, r: dict[str, Any], now: float) -> bool:
        earlier = {t["station"] for t in self.ota.targets(r["id"])}
        selector = r["stages"][r["stage"]]
        members = stage_members(self.store, selector, earlier)
        if not members:
            self.pause(r["id"], policy.empty_stage_reason(selector), SYSTEM_ACTOR)
            return False
        self.ota.add_targets(r["id"], r["stage"], members)
        for sid in members:
            if running_version(self.store.get_station(sid)) == r["version"]:
                self.ota.update_target(r["id"], sid, state="confirmed", reason="already running")
        self.ota.update_rollout(r["id"], stage_started_at=now)
        r["stage_started_at"] = now
        log.info(
            "rollout %s: stage %d %r: %d stations", r["id"], r["stage"], selector, len(members)
        )
        return True

    def _time_out(self, r: dict[str, Any], targets: list[dict[str, Any]], now: float) -> int:
        n = 0
        for t in targets:
            why = policy.timed_out(t, r["stage_started_at"], r["stage_deadline_s"], now)
            if why is not None:
                self.ota.update_target(r["id"], t["station"], state="timed_out", reason=why)
                n += 1
        return n

    def _pause_if_failing(self, r: dict[str, Any], targets: list[dict[str, Any]]) -> bool:
        why = policy.pause_reason(r["stages"][r["stage"]], targets, r["failure_threshold"])
        if why is None:
            return False
        self.pause(r["id"], why, SYSTEM_ACTOR)
        return True

    def _next_stage(self, r: dict[str, Any]) -> None:
        nxt = r["stage"] + 1
        if policy.is_last_stage(r["stage"], r["stages"]):
            self.ota.update_rollout(r["id"], stage=nxt, state="completed", reason=None)
            self._audit("ota.rollout.complete", r["id"], SYSTEM_ACTOR, {"version": r["version"]})
            log.info("rollout %s: completed", r["id"])
        else:
            self.ota.update_rollout(r["id"], stage=nxt, stage_started_at=None)
            log.info("rollout %s: on to stage %d %r", r["id"], nxt, r["stages"][nxt])

    def _commands(self, r: dict[str, Any], targets: list[dict[str, Any]], now: float) -> list:
        out = []
        live = self._live(r["id"], r["stage"])
        for t in targets:
            if t["state"] in FINAL:
                continue
            station = live.get(t["station"])
            if not (station and station["status"] == "online"):
                continue  # an offline station gets it on a step after its birth message
            if not policy.command_due(t, station, r["version"], self.settings.resend_after_s, now):
                continue
            n = t["attempts"] + 1
            cmd_id, payload = policy.ota_command(r["id"], r["version"], n, self.download_base)
            self.ota.update_target(
                r["id"],
                t["station"],
                state="sent",
                cmd_id=f"{t['station']}/{cmd_id}",
                attempts=n,
                sent_at=now,
                first_sent_at=t["first_sent_at"] or now,
            )
            out.append(Command(r["id"], t["station"], cmd_id, payload))
        return out

    def _live(self, rollout_id: str, stage: int) -> dict[str, dict[str, Any]]:
        """Birth and health of the stage's stations in one query (a step holds the write lock:
        one query per station would keep the gateway waiting on a large stage)."""
        rows = self.store.query(
            "SELECT s.id, s.status, s.status_at, s.status_body, s.health, s.health_at"
            " FROM station_state s JOIN ota_targets t ON t.station = s.id"
            " WHERE t.rollout_id=? AND t.stage=?",
            (rollout_id, stage),
        )
        return {
            r["id"]: {
                "status": r["status"],
                "status_at": r["status_at"],
                "status_body": json.loads(r["status_body"]) if r["status_body"] else None,
                "health": json.loads(r["health"]) if r["health"] else None,
                "health_at": r["health_at"],
            }
            for r in rows
        }

    def publish_failed(self, cmd: Command) -> None:
        """The broker did not take the command: let a later step send it again."""
        with self.store.tx():
            t = self.ota.target_by_cmd(f"{cmd.station}/{cmd.cmd_id}")
            if t and t["state"] == "sent":
                self.ota.update_target(cmd.rollout_id, cmd.station, state="pending")

    # -- what stations said ----------------------------------------------------------------
    def fold_events(self) -> None:
        cursor = int(self.store.get_kv(CURSOR_KEY) or 0)
        events = self.ota.events_after(cursor)
        if not events:
            return
        active = self.ota.active_rollout()
        for ev in events:
            if ev["sub"] == "ota":
                self.ota.put_report(ev["station"], ev["body"], ev["at"])
                if active:
                    self._apply_report(active, ev["station"], ev["body"])
            elif ev["sub"] == "cmd/ack" and active:
                self._apply_ack(active, ev["station"], ev["body"], ev["at"])
        last = events[-1]["id"]
        self.store.put_kv(CURSOR_KEY, last)
        self.ota.prune_events(last, self.clock() - KEEP_EVENTS_S)

    def _apply_report(self, r: dict[str, Any], station: str, body: dict[str, Any]) -> None:
        if body.get("version") != r["version"] or self._target(r, station) is None:
            return
        # The station's latest word wins: it may retry after a failure, and a confirmation
        # arriving after the deadline still counts.
        self.ota.update_target(r["id"], station, state=body["state"], reason=body.get("reason"))

    def _apply_ack(self, r: dict[str, Any], station: str, body: dict[str, Any], at: float) -> None:
        t = self.ota.target_by_cmd(f"{station}/{body.get('id')}")
        if t is None or t["rollout_id"] != r["id"]:
            return  # an ack of another command (ping, config, ...) or of an older attempt
        outcome, error = policy.ack_outcome(body)
        if outcome == "acked":
            if t["state"] == "sent":
                self.ota.update_target(r["id"], station, state="acked", acked_at=at)
        elif outcome == "busy":  # stays `sent`: the command goes again after resend_after_s
            self.ota.update_target(r["id"], station, reason=error, acked_at=at)
        else:
            self.ota.update_target(r["id"], station, state=outcome, reason=error)

    def _target(self, r: dict[str, Any], station: str) -> dict[str, Any] | None:
        rows = self.store.query(
            "SELECT state FROM ota_targets WHERE rollout_id=? AND station=?", (r["id"], station)
        )
        return dict(rows[0]) if rows else None

    # -- operator actions ------------------------------------------------------------------
    def pause(self, rollout_id: str, reason: str, who: str) -> bool:
        with self.store.tx():
            r = self.ota.get_rollout(rollout_id)
            if r is None or r["state"] != "running":
                return False
            self.ota.update_rollout(rollout_id, state="paused", reason=reason)
            self._audit("ota.rollout.pause", rollout_id, who, {"reason": reason})
        log.warning("rollout %s paused by %s: %s", rollout_id, who, reason)
        return True

    def resume(self, rollout_id: str, who: str, retry_failed: bool) -> bool:
        """Run again. The current stage's failures are waived (the operator has looked at
        them), or, with retry_failed, sent the command again."""
        with self.store.tx():
            r = self.ota.get_rollout(rollout_id)
            if r is None or r["state"] != "paused":
                return False
            for t in self.ota.targets(rollout_id, r["stage"]):
                if policy.unwaived_failure(t):
                    if retry_failed:
                        self.ota.update_target(
                            rollout_id, t["station"], state="pending", first_sent_at=None
                        )
                    else:
                        self.ota.update_target(rollout_id, t["station"], waived=1)
            # Stations never reached get a fresh deadline from now.
            started = r["stage_started_at"] and self.clock()
            self.ota.update_rollout(
                rollout_id, state="running", reason=None, stage_started_at=started
            )
            self._audit("ota.rollout.resume", rollout_id, who, {"retry_failed": retry_failed})
        return True

    def cancel(self, rollout_id: str, who: str) -> bool:
        with self.store.tx():
            r = self.ota.get_rollout(rollout_id)
            if r is None or r["state"] not in ("running", "paused"):
                return False
            self.ota.update_rollout(rollout_id, state="cancelled")
            self._audit("ota.rollout.cancel", rollout_id, who, {"version": r["version"]})
        return True

    def _audit(self, action: str, rollout_id: str, who: str, detail: dict[str, Any]) -> None:
        record_audit(
            self.store, actor=who, action=action, target=f"rollout:{rollout_id}", detail=detail
        )


# -- MQTT ------------------------------------------------------------------------------------
class Commander:
    """Publishes `ota` commands on envnet/v1/{id}/cmd at QoS 1 with the server's own client."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        m = settings.mqtt
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id
        )
        if m.username:
            self.client.username_pw_set(m.username, m.password)
        url = urlparse(m.url)
        if url.scheme == "mqtts":
            self.client.tls_set(ca_certs=m.ca_file or None)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.client.connect_async(url.hostname or "127.0.0.1", port, m.keepalive)
        self.client.loop_start()

    def publish(self, station: str, payload: dict[str, Any], timeout: float = 5.0) -> bool:
        """True once the broker has the message (PUBACK)."""
        if not self.client.is_connected():
            return False
        info = self.client.publish(
            contract.topic(station, "cmd"), json.dumps(payload), qos=1, retain=False
        )
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class RolloutWorker:
    """The server's background thread: engine.step() every tick, then publish what it decided."""

    def __init__(self, engine: RolloutEngine, commander_factory: Callable[[], Commander]) -> None:
        self.engine = engine
        self._factory = commander_factory
        self._commander: Commander | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._commander = self._factory()
        self._thread = threading.Thread(target=self._run, name="ota-rollout", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run a step now (after an operator action) instead of at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)
        if self._commander:
            self._commander.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("rollout step failed; trying again next tick")
            self._wake.wait(self.engine.settings.tick_s)
            self._wake.clear()

    def run_once(self) -> int:
        sent = 0
        for cmd in self.engine.step():
            assert self._commander is not None
            if self._commander.publish(cmd.station, cmd.payload):
                sent += 1
                log.info(
                    "ota command %s -> %s (%s)", cmd.cmd_id, cmd.station, cmd.payload["version"]
                )
            else:
                self.engine.publish_failed(cmd)
        return sent
