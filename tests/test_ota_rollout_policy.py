"""The staged-rollout policy on its own: deadlines, the failure threshold, resends, acks."""

from __future__ import annotations

from envnet.domain.ota import rollout as policy


def _t(station: str, state: str, **kw) -> dict:
    return {
        "station": station,
        "state": state,
        "waived": 0,
        "reason": None,
        "first_sent_at": None,
        "sent_at": None,
        **kw,
    }


def test_selectors_name_groups_districts_and_stations():
    meta = {"group": "canary", "district": "和平区", "district_en": "Heping"}
    assert policy.selects("all", "a", {})
    assert policy.selects("canary", "a", meta) and policy.selects("group:canary", "a", meta)
    assert policy.selects("district:heping", "a", meta) and policy.selects("和平区", "a", meta)
    assert policy.selects("station:a", "a", {}) and not policy.selects("station:b", "a", meta)
    assert not policy.valid_selector("zone:x") and not policy.valid_selector("group:")
    stations = [
        {"id": "a", "registered": True, "meta": meta},
        {"id": "b", "registered": False, "meta": meta},
        {"id": "c", "registered": True, "meta": meta},
    ]
    assert policy.select_members("canary", stations, exclude={"c"}) == ["a"]


def test_deadline_runs_from_the_first_command_or_the_stage_start():
    assert policy.timed_out(_t("a", "acked", first_sent_at=100.0), 0.0, 60, 161) is not None
    assert policy.timed_out(_t("a", "acked", first_sent_at=100.0), 0.0, 60, 160) is None
    assert policy.timed_out(_t("a", "pending"), 50.0, 60, 111) == (
        "no confirmation within 60 s (last state pending)"
    )
    assert policy.timed_out(_t("a", "confirmed"), 0.0, 60, 1e9) is None


def test_pause_only_above_the_threshold_and_waived_failures_do_not_count():
    targets = [_t("a", "failed", reason="flash"), _t("b", "confirmed"), _t("c", "sent")]
    assert policy.pause_reason("canary", targets, 0.34) is None  # 1/3 = 0.33
    why = policy.pause_reason("canary", targets, 0.2)
    assert why == (
        "stage 'canary': 1 of 3 stations failed (rate 0.33 > threshold 0.20): a: failed (flash)"
    )
    targets[0]["waived"] = 1
    assert policy.pause_reason("canary", targets, 0.0) is None
    assert not policy.stage_done(targets) and policy.stage_done(targets[:2])


def test_commands_are_resent_after_a_silence_or_a_restart_mid_update():
    online = {"status_at": 10.0, "status_body": {"fw": "1.2.0"}, "health": None}
    assert policy.command_due(_t("a", "pending"), online, "1.3.0", 300, 0)
    assert not policy.command_due(_t("a", "sent", sent_at=100.0), online, "1.3.0", 300, 400)
    assert policy.command_due(_t("a", "sent", sent_at=100.0), online, "1.3.0", 300, 401)
    reborn = {**online, "status_at": 200.0}
    assert policy.command_due(_t("a", "downloading", sent_at=100.0), reborn, "1.3.0", 300, 201)
    assert not policy.command_due(_t("a", "downloading", sent_at=100.0), online, "1.3.0", 300, 201)
    cmd_id, payload = policy.ota_command("ro-1", "1.3.0", 2, "http://s:8080/")
    assert cmd_id == "ota-ro-1-2"
    assert payload == {
        "id": "ota-ro-1-2",
        "op": "ota",
        "version": "1.3.0",
        "url": "http://s:8080/ota/releases/1.3.0/",
    }


def test_what_an_ack_means():
    assert policy.ack_outcome({"ok": True}) == ("acked", None)
    assert policy.ack_outcome({"ok": False, "error": "already running 1.3.0"})[0] == "confirmed"
    assert policy.ack_outcome({"ok": False, "error": "update in progress"})[0] == "busy"
    assert policy.ack_outcome({"ok": False}) == ("refused", "refused")
