"""The gateway's validation against the shared contract vectors (the firmware tests use the
same folder), plus the details of the topic rules."""

from __future__ import annotations

import base64
import json

import pytest

from envnet.core import contract


def _vectors() -> list[dict]:
    d = contract.vectors_dir()
    return [json.loads(f.read_text()) for f in sorted(d.iterdir()) if f.name.endswith(".json")]


def _payload(v: dict) -> bytes:
    if "payload" in v:
        return json.dumps(v["payload"], ensure_ascii=False).encode()
    if "payload_raw" in v:
        return v["payload_raw"].encode()
    return base64.b64decode(v["payload_b64"])


VECTORS = _vectors()


def test_there_are_vectors_of_both_kinds():
    assert {v["expect"] for v in VECTORS} == {"accept", "reject"}
    assert len(VECTORS) >= 20


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: dict) -> None:
    if vector["expect"] == "accept":
        msg = contract.decode(vector["topic"], _payload(vector))
        assert msg.station == vector["topic"].split("/")[2]
    else:
        with pytest.raises(contract.Rejected) as e:
            contract.decode(vector["topic"], _payload(vector))
        assert e.value.reason == vector["reason"], str(e.value)


def test_unknown_fields_are_kept() -> None:
    v = next(v for v in VECTORS if v["name"] == "unknown_fields_kept")
    (r,) = contract.decode(v["topic"], _payload(v)).body
    assert r.extras == {"fw": "0.1.0", "site_note": "pole 3"}
    assert r.values["lux"] == 300


@pytest.mark.parametrize("depth", [contract.MAX_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_rejected_not_crashing(depth: int) -> None:
    deep = b"[" * depth + b"]" * depth
    with pytest.raises(contract.Rejected) as e:
        contract.decode("envnet/v1/sy-air-001/reading", deep)
    assert e.value.reason == "too_deep"


def test_nesting_up_to_the_limit_is_kept_as_an_extra() -> None:
    doc = b'{"v":1,"seq":1,"ts":1,"kind":"air","values":{"pm25":1},"x":'
    inner = contract.MAX_DEPTH - 1  # the reading itself is the first level
    msg = contract.decode("envnet/v1/sy-air-001/reading", doc + b"[" * inner + b"]" * inner + b"}")
    assert "x" in msg.body[0].extras


def test_station_cannot_publish_commands_to_itself() -> None:
    with pytest.raises(contract.Rejected) as e:
        contract.decode("envnet/v1/sy-air-001/cmd", b"{}")
    assert e.value.reason == "bad_topic"


def test_out_of_range_uses_contract_table() -> None:
    assert contract.out_of_range("air", "co", 800.0)  # CO sent in ug/m3 instead of mg/m3
    assert not contract.out_of_range("air", "co", 0.8)
    assert not contract.out_of_range("air", "lux", 1e9)  # unknown parameters have no range


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_decode_fast_agrees_with_decode(vector: dict) -> None:
    """The gateway's msgspec path accepts what decode accepts, with the same values, and
    rejects what it rejects with the same reason and detail."""
    topic, payload = vector["topic"], _payload(vector)
    try:
        slow = contract.decode(topic, payload)
    except contract.Rejected as e:
        with pytest.raises(contract.Rejected) as fast_e:
            contract.decode_fast(topic, payload)
        assert (fast_e.value.reason, fast_e.value.detail) == (e.reason, e.detail)
        return
    fast = contract.decode_fast(topic, payload)
    assert (fast.station, fast.sub) == (slow.station, slow.sub)
    if slow.sub == "reading":
        for f, s in zip(fast.body, slow.body, strict=True):
            for attr in ("v", "seq", "ts", "kind", "values", "flags", "clock_unsynced", "extras"):
                assert getattr(f, attr) == getattr(s, attr), attr
                assert type(getattr(f, attr)) is type(getattr(s, attr)), attr


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1,"seq":1,"ts":1,"kind":"air","values":{"pm25":1e999}}',  # inf
        b'{"v":1,"seq":9223372036854775808,"ts":1,"kind":"air","values":{"pm25":1}}',
        b'{"v":1,"seq":1,"ts":9000000000,"kind":"air","values":{"pm25":1}}',
        b'{"v":1,"seq":1,"ts":true,"kind":"air","values":{"pm25":1}}',
        b'{"v":1,"seq":1,"ts":1,"kind":"air","values":{"":1}}',
        b'{"v":1,"seq":1,"ts":1,"kind":"air","values":{"pm25":1},"flags":{"pm25":"odd"}}',
        b'{"v":1,"seq":1,"ts":1,"kind":"air","values":{"pm25":1},"flags":{"*":"range"}}',
        b'{"v":1,"seq":1,"ts":1,"kind":"air","values":{"pm25":true}}',
    ],
)
def test_decode_fast_rejects_what_the_validators_reject(payload: bytes) -> None:
    topic = "envnet/v1/sy-air-001/reading"
    with pytest.raises(contract.Rejected) as slow:
        contract.decode(topic, payload)
    with pytest.raises(contract.Rejected) as fast:
        contract.decode_fast(topic, payload)
    assert (fast.value.reason, fast.value.detail) == (slow.value.reason, slow.value.detail)
