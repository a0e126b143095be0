"""The MQTT contract v1 (topics and payloads), validated with pydantic.

The facts (topic root, station id pattern, parameter names, units, plausible ranges, flags) are
data in envnet/core/contract/v1.json, which the firmware ships too. This module only reads them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
)

Number = StrictInt | StrictFloat


@cache
def spec() -> dict[str, Any]:
    return json.loads(resources.files("envnet.core.contract").joinpath("v1.json").read_text())


def vectors_dir():
    return resources.files("envnet.core.contract").joinpath("vectors")


SPEC = spec()
TOPIC_ROOT: str = SPEC["topic_root"]
STATION_ID_RE = re.compile(SPEC["station_id_pattern"])
KINDS: dict[str, dict] = SPEC["kinds"]
PARAM_FLAGS = frozenset(SPEC["flags"])
READING_FLAGS = frozenset(SPEC["reading_flags"])
SUBTOPICS = frozenset(SPEC["topics"])


def topic(station_id: str, sub: str) -> str:
    return f"{TOPIC_ROOT}{station_id}/{sub}"


class Rejected(Exception):
    """A message that breaks the contract. `reason` is a short stable code used in metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Reading(BaseModel):
    """One averaged reading. Unknown keys are kept (extra='allow') and stored."""

    model_config = ConfigDict(extra="allow")

    v: Literal[1]
    seq: StrictInt = Field(ge=0, lt=2**63)
    # Finite and before InfluxDB's last representable instant (year 2262).
    ts: Number = Field(ge=0, lt=9_000_000_000)
    kind: Literal["air", "water"]
    values: dict[str, Number] = Field(min_length=1)
    flags: dict[str, str] = Field(default_factory=dict)

    @field_validator("values")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for name, x in v.items():
            if not name or len(name) > 32:
                raise ValueError(f"bad parameter name {name!r}")
            if isinstance(x, float) and not math.isfinite(x):
                raise ValueError(f"{name} is not a finite number")
        return v

    @field_validator("flags")
    @classmethod
    def _known_flags(cls, v: dict[str, str]) -> dict[str, str]:
        for name, flag in v.items():
            allowed = READING_FLAGS if name == "*" else PARAM_FLAGS
            if flag not in allowed:
                raise ValueError(f"flag {flag!r} on {name!r} is not one of {sorted(allowed)}")
        return v

    @property
    def clock_unsynced(self) -> bool:
        return self.flags.get("*") == "clock"

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Status(BaseModel):
    model_config = ConfigDict(extra="allow")
    state: Literal["online", "offline"]


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    battery_v: Number | None = None
    rssi_dbm: Number | None = None
    uptime_s: Number | None = Field(None, ge=0)
    heap_free: Number | None = Field(None, ge=0)
    reset_cause: str | None = None
    fw: str | None = None
    buffered: StrictInt | None = Field(None, ge=0)
    dropped: StrictInt | None = Field(None, ge=0)
    errors: dict[str, Number] = Field(default_factory=dict)


class CmdAck(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | StrictInt
    ok: bool
    error: str | None = None


OTA_STATES: tuple[str, ...] = tuple(SPEC["ota_states"])


class OtaReport(BaseModel):
    """One step of an over-the-air update, station -> server on `ota` (docs/ota.md)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)
    v: Literal[1]
    version: str = Field(min_length=1, max_length=64)
    # "from" is a Python keyword: the field is from_ here, "from" on the wire and in
    # model_dump() (serialize_by_alias).
    from_: str | None = Field(None, alias="from", max_length=64)
    state: Literal[tuple(OTA_STATES)]  # type: ignore[valid-type]
    # Not length-limited: a crash reason may carry a traceback; the store keeps its start.
    reason: str | None = None
    ts: Number | None = Field(None, ge=0, lt=9_000_000_000)


@dataclass(frozen=True, slots=True)
class Message:
    station: str
    sub: str  # reading | status | health | cmd/ack | ota
    body: Any  # list[Reading] | Status | Health | CmdAck | OtaReport


def parse_topic(topic_name: str) -> tuple[str, str]:
    if not topic_name.startswith(TOPIC_ROOT):
        raise Rejected("bad_topic", f"topic {topic_name!r} is not under {TOPIC_ROOT}")
    station, _, sub = topic_name[len(TOPIC_ROOT) :].partition("/")
    if not STATION_ID_RE.match(station):
        raise Rejected(
            "bad_topic", f"station id {station!r} does not match {STATION_ID_RE.pattern}"
        )
    if sub not in SUBTOPICS or sub == "cmd":
        raise Rejected("bad_topic", f"unexpected subtopic {sub!r} from station {station}")
    return station, sub


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(payload: bytes) -> Any:
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise Rejected("bad_json", "payload is not UTF-8") from None
    except RecursionError:
        raise Rejected("too_deep", f"JSON nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise Rejected("bad_json", str(e)) from None
    if _may_nest_deep(payload) and _depth_exceeds(doc, MAX_DEPTH):
        raise Rejected("too_deep", f"JSON nests deeper than {MAX_DEPTH} levels")
    return doc


def _schema_error(e: ValidationError) -> Rejected:
    err = e.errors()[0]
    # Drop pydantic's union-branch names ("int", "float") so the path reads like the payload.
    loc = [str(p) for p in err["loc"] if p not in ("int", "float", "str")]
    where = ".".join(loc) or "payload"
    return Rejected("schema", f"{where}: {err['msg']}")


MAX_BATCH = 1000  # readings in one replay array; a station's ring buffer is far smaller


def _readings(doc: Any) -> list[Reading]:
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise Rejected("schema", "empty reading array")
    if len(items) > MAX_BATCH:
        raise Rejected("schema", f"reading array of {len(items)} exceeds {MAX_BATCH}")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("v", 1) != 1:
            raise Rejected(
                "unsupported_version", f"reading v={item.get('v')!r}; this gateway speaks v1"
            )
        try:
            out.append(Reading.model_validate(item))
        except ValidationError as e:
            r = _schema_error(e)
            if len(items) > 1:
                r = Rejected(r.reason, f"[{i}] {r.detail}")
            raise r from None
    return out


_MODELS: dict[str, type[BaseModel]] = {
    "status": Status,
    "health": Health,
    "cmd/ack": CmdAck,
    "ota": OtaReport,
}


MAX_DEPTH = 32  # nesting of objects and arrays; a reading needs 3


def _depth_exceeds(doc: Any, limit: int) -> bool:
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _may_nest_deep(payload: bytes) -> bool:
    """Cheap pre-check: fewer brackets than the limit cannot nest beyond it."""
    return payload.count(b"{") + payload.count(b"[") > MAX_DEPTH


def _fast_reading(payload: bytes) -> list[Reading] | None:
    """The common case, one well-formed reading, parsed and validated in one pass by
    pydantic-core (5x faster than json.loads + model_validate). Anything it does not accept
    goes the slow way, which gives the precise reason; NaN and infinities, which pydantic's
    JSON parser would read, never pass the model's own validators."""
    if payload[:1] != b"{" or _may_nest_deep(payload):
        return None
    try:
        return [Reading.model_validate_json(payload)]
    except ValidationError:
        return None


class FastReading(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One well-formed reading as msgspec decodes it: what `decode_fast` returns in place of
    `Reading` for the common case. It has the attributes and properties the gateway reads
    (v, seq, ts, kind, values, flags, clock_unsynced, extras); a payload with unknown keys,
    or anything the checks below doubt, is decoded by pydantic instead."""

    v: Literal[1]
    seq: Annotated[int, msgspec.Meta(ge=0)]
    ts: int | float
    kind: Literal["air", "water"]
    values: Annotated[dict[str, int | float], msgspec.Meta(min_length=1)]
    flags: dict[str, str] = {}

    @property
    def clock_unsynced(self) -> bool:
        return self.flags.get("*") == "clock"

    @property
    def extras(self) -> dict[str, Any]:
        return {}


_FAST_DECODER = msgspec.json.Decoder(FastReading)


def _fast_ok(r: FastReading) -> bool:
    """Reading's own validators (ranges, _finite, _known_flags), as plain checks."""
    if r.seq >= 2**63 or not (0 <= r.ts < 9_000_000_000) or isinstance(r.ts, bool):
        return False
    for name, x in r.values.items():
        if not name or len(name) > 32 or (isinstance(x, float) and not math.isfinite(x)):
            return False
    for name, flag in r.flags.items():
        if flag not in (READING_FLAGS if name == "*" else PARAM_FLAGS):
            return False
    return True


def _fastest_reading(payload: bytes) -> list[FastReading] | None:
    """msgspec: parse and validate a single reading in one C pass (about 7x pydantic's
    validate_json, see docs/performance.md). None: let the exact path decide and explain."""
    if payload[:1] != b"{" or _may_nest_deep(payload):
        return None
    try:
        r = _FAST_DECODER.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return [r] if _fast_ok(r) else None


def decode_fast(topic_name: str, payload: bytes) -> Message:
    """`decode`, for the gateway's hot path: a well-formed single reading comes back as a
    `FastReading` (duck-typed like `Reading`) without building a pydantic model. Every
    message decode() rejects is rejected here with the same reason and detail."""
    station, sub = parse_topic(topic_name)
    if sub == "reading":
        fast = _fastest_reading(payload)
        if fast is not None:
            return Message(station, sub, fast)
    return _decode_parsed(station, sub, payload)


def decode(topic_name: str, payload: bytes) -> Message:
    """Validate one MQTT message; raise Rejected(reason, detail) when it breaks the contract."""
    station, sub = parse_topic(topic_name)
    return _decode_parsed(station, sub, payload)


def _decode_parsed(station: str, sub: str, payload: bytes) -> Message:
    if sub == "reading":
        fast = _fast_reading(payload)
        if fast is not None:
            return Message(station, sub, fast)
    doc = parse_json(payload)
    if sub == "reading":
        return Message(station, sub, _readings(doc))
    try:
        return Message(station, sub, _MODELS[sub].model_validate(doc))
    except ValidationError as e:
        raise _schema_error(e) from None


def check_times(readings: list[Reading], now: float, max_future_s: float, max_age_s: float) -> None:
    """Refuse timestamps no synced station can produce. A clock-flagged reading is exempt: its
    ts is only an estimate, and the gateway stores its own receive time instead."""
    for i, r in enumerate(readings):
        if r.clock_unsynced:
            continue
        where = f"[{i}] " if len(readings) > 1 else ""
        if r.ts > now + max_future_s:
            raise Rejected(
                "bad_timestamp",
                f"{where}ts {r.ts} is {r.ts - now:.0f} s in the future"
                f" (limit {max_future_s:.0f} s); a station without a synced clock"
                ' must flag its readings "*": "clock"',
            )
        if r.ts < now - max_age_s:
            raise Rejected(
                "bad_timestamp",
                f"{where}ts {r.ts} is {(now - r.ts) / 86400:.0f} days old"
                f" (limit {max_age_s / 86400:.0f} days)",
            )


def param_spec(kind: str, name: str) -> dict | None:
    return KINDS.get(kind, {}).get("params", {}).get(name)


def out_of_range(kind: str, name: str, value: float) -> bool:
    """True when a value is outside the physically plausible range of the contract."""
    p = param_spec(kind, name)
    return p is not None and not (p["min"] <= value <= p["max"])
