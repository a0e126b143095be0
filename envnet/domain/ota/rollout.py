"""The staged-rollout policy: pure decisions, no store, no MQTT (docs/ota.md).

A rollout names a release and a list of stages (selectors: `canary`, a district, `all`, ...).
Per stage: every selected station is told to update; a station that has not confirmed within
the stage deadline counts as failed; the rollout pauses when the stage's failure rate exceeds
the threshold (an empty stage pauses too: it must never wave a release through to everyone);
the next stage starts when every station of this one has a final answer. server/rollout.py
applies these decisions to the state store and publishes the commands.

Targets and stations are the dicts the state store gives (envnet/store/ota.py); the target
states below are the store's vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

# A target's state (the ota_targets.state column of envnet/store/ota.py).
IN_FLIGHT = ("pending", "sent", "acked", "downloading", "verified", "switching")
FAILED = ("failed", "rolled_back", "refused", "timed_out")
FINAL = ("confirmed", *FAILED)
# The station's update is under way: a new birth message in these means it restarted.
TAKEN = ("acked", "downloading", "verified")


# -- stage selectors ---------------------------------------------------------------------------
def _district_names(meta: dict[str, Any]) -> set[str]:
    names = {str(meta[k]) for k in ("district", "district_en") if meta.get(k)}
    return names | {n.lower() for n in names}


def selects(selector: str, station_id: str, meta: dict[str, Any]) -> bool:
    """Does a stage selector name this station?

    `all`; `group:<g>` (meta.group); `district:<d>` (meta.district, or its English form);
    `station:<id>`; a bare name matches a group or a district of that name."""
    kind, sep, value = selector.partition(":")
    if not sep:
        if selector == "all":
            return True
        kind, value = "", selector
    group = meta.get("group")
    if kind == "group":
        return group == value
    if kind == "district":
        return value in _district_names(meta) or value.lower() in _district_names(meta)
    if kind == "station":
        return station_id == value
    return group == value or value in _district_names(meta)


def valid_selector(selector: str) -> bool:
    kind, sep, value = selector.partition(":")
    if not sep:
        return bool(selector)
    return kind in ("group", "district", "station") and bool(value)


def select_members(
    selector: str, stations: Iterable[dict[str, Any]], exclude: set[str]
) -> list[str]:
    """Registered stations the selector names, minus those of earlier stages."""
    return [
        s["id"]
        for s in stations
        if s["registered"] and s["id"] not in exclude and selects(selector, s["id"], s["meta"])
    ]


def running_version(station: dict[str, Any] | None) -> str | None:
    """The `fw` of the newer of the station's birth (status) and health messages."""
    if not station:
        return None
    found: list[tuple[float, str]] = []
    for body, at in (
        (station.get("status_body"), station.get("status_at")),
        (station.get("health"), station.get("health_at")),
    ):
        if body and body.get("fw") and at is not None:
            found.append((at, str(body["fw"])))
    return max(found)[1] if found else None


# -- a stage -----------------------------------------------------------------------------------
def empty_stage_reason(selector: str) -> str:
    return f"stage {selector!r} names no station"


def timed_out(
    target: dict[str, Any], stage_started_at: float, deadline_s: float, now: float
) -> str | None:
    """The reason a station in flight has failed by the deadline, or None.

    The deadline runs from the first command sent to it, or from the stage's start."""
    started = target["first_sent_at"] or stage_started_at
    if target["state"] in IN_FLIGHT and now - started > deadline_s:
        return f"no confirmation within {deadline_s:g} s (last state {target['state']})"
    return None


def unwaived_failure(target: dict[str, Any]) -> bool:
    """Failed, and not accepted by an operator's resume."""
    return target["state"] in FAILED and not target["waived"]


def pause_reason(selector: str, targets: list[dict[str, Any]], threshold: float) -> str | None:
    """Why the stage must pause (its failure rate exceeds the threshold), or None."""
    bad = [t for t in targets if unwaived_failure(t)]
    rate = len(bad) / len(targets)
    if rate <= threshold:
        return None
    why = "; ".join(f"{t['station']}: {t['state']} ({t['reason'] or '-'})" for t in bad[:5])
    return (
        f"stage {selector!r}: {len(bad)} of {len(targets)} stations failed"
        f" (rate {rate:.2f} > threshold {threshold:.2f}): {why}"
    )


def stage_done(targets: list[dict[str, Any]]) -> bool:
    """Every station of the stage has a final answer."""
    return all(t["state"] in FINAL for t in targets)


def is_last_stage(stage: int, stages: list[str]) -> bool:
    return stage + 1 >= len(stages)


# -- commands ----------------------------------------------------------------------------------
def command_due(
    target: dict[str, Any],
    station: dict[str, Any],
    version: str,
    resend_after_s: float,
    now: float,
) -> bool:
    """Is it time to send (again) the `ota` command to this online station?"""
    if target["state"] == "pending":
        return True
    if target["state"] == "sent":
        return now - (target["sent_at"] or 0) > resend_after_s
    # Took the job, then a new birth with the old version before `switching`: the station
    # restarted (a power cut) and the job died with it. Ask again; a station still busy
    # answers "in progress" and carries on.
    return (
        target["state"] in TAKEN
        and (station["status_at"] or 0) > (target["sent_at"] or 0)
        and running_version(station) != version
    )


def ota_command(
    rollout_id: str, version: str, attempt: int, download_base: str
) -> tuple[str, dict[str, Any]]:
    """(command id, payload) of attempt n (1-based) of the `ota` command."""
    cmd_id = f"ota-{rollout_id}-{attempt}"
    payload = {
        "id": cmd_id,
        "op": "ota",
        "version": version,
        "url": f"{download_base.rstrip('/')}/ota/releases/{version}/",
    }
    return cmd_id, payload


# -- what stations say -------------------------------------------------------------------------
AckOutcome = Literal["acked", "confirmed", "busy", "refused"]


def ack_outcome(body: dict[str, Any]) -> tuple[AckOutcome, str | None]:
    """What a `cmd/ack` of our command means, and the reason to record.

    acked: took the job; confirmed: already running the version; busy: an update is in
    progress (the target stays `sent`, so the command goes again after resend_after_s);
    refused: anything else."""
    if body.get("ok"):
        return "acked", None
    error = str(body.get("error") or "refused")
    if "already" in error.lower():
        return "confirmed", error
    if "in progress" in error.lower():
        return "busy", error
    return "refused", error
