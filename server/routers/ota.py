"""Over-the-air updates, server side: release files, releases, rollouts, per-station view.

The file routes carry no API key: a station checks every byte against the signed manifest, so
integrity does not depend on who may download. Everything that changes state needs the key.
See docs/ota.md (protocol and the server section), server/rollout.py (the worker) and
envnet/domain/ota/rollout.py (the policy).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from envnet.config import Settings
from envnet.core import contract
from envnet.domain.ota import manifest
from envnet.domain.ota.manifest import BundleError, parse_manifest
from envnet.domain.ota.rollout import FAILED, FINAL, running_version, valid_selector
from envnet.store.audit import record_audit
from envnet.store.ota import SqliteOtaStore
from envnet.store.state import SqliteStateStore
from envnet.store.webhooks import public_base_url
from server.lifespan import run_with_app
from server.rollout import Commander, RolloutEngine, RolloutWorker, stage_members
from server.security import ApiKeyName

# A release version as it appears in a URL and a directory name: the manifest rule set's
# (envnet/core/contract/ota_manifest.json), so the server takes exactly what a station would.
VERSION_PATTERN = manifest.VERSION_RE.pattern
Version = Annotated[str, Path(pattern=VERSION_PATTERN, description="release version, e.g. 1.3.0")]


_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "not known"}}
_STATE: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    409: {"description": "the rollout is not in a state that allows this"},
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "release not registered or changed on disk, a rollout is active, or a "
        "stage names no station"
    },
    422: {"description": "invalid body"},
}


def release_dir(settings: Settings, version: str) -> FsPath:
    """<releases_dir>/<version>, refusing anything that is not a plain version name."""
    if not manifest.version_ok(version):
        raise HTTPException(404, f"release {version!r} is not known")
    d = FsPath(settings.ota.releases_dir) / version
    if not (d / "manifest.json").is_file():
        raise HTTPException(404, f"release {version} is not known")
    return d


def _contained(root: FsPath, rel: str) -> FsPath:
    """root/rel, or 404 when rel would leave root (`..`, absolute, a symlink pointing out)."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise HTTPException(404, f"no file {rel!r} in this release")
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise HTTPException(404, f"no file {rel!r} in this release")
    return target


def files_router(settings: Settings) -> APIRouter:
    """The three download routes of the protocol (docs/ota.md, "HTTP")."""
    api = APIRouter(prefix="/ota/releases", tags=["ota files"])

    @api.get("/{version}/manifest.json", response_class=FileResponse, responses=_NOT_FOUND)
    def manifest(version: Version) -> FileResponse:
        d = release_dir(settings, version)
        return FileResponse(d / "manifest.json", media_type="application/json")

    @api.get("/{version}/manifest.sig", response_class=FileResponse, responses=_NOT_FOUND)
    def manifest_sig(version: Version) -> FileResponse:
        sig = release_dir(settings, version) / "manifest.sig"
        if not sig.is_file():
            raise HTTPException(404, f"release {version} has no manifest.sig")
        return FileResponse(sig, media_type="text/plain")

    @api.get("/{version}/files/{path:path}", response_class=FileResponse, responses=_NOT_FOUND)
    def release_file(version: Version, path: str) -> FileResponse:
        # FileResponse streams in chunks and sets Content-Length from stat(): a station can
        # size its staging write and stop reading at the right byte.
        target = _contained(release_dir(settings, version) / "files", path)
        return FileResponse(target, media_type="application/octet-stream")

    return api


# -- releases ----------------------------------------------------------------------------------
class ReleaseError(ValueError):
    """A bundle that must not be offered to stations; str() says what is wrong."""


HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _check_signature(raw: bytes, sig_path: FsPath, key_hex: str) -> bool:
    """True when checked with the fleet key; False when the server has no key to check with."""
    if not sig_path.is_file():
        raise ReleaseError("unsigned: manifest.sig is missing")
    sig = sig_path.read_text(encoding="ascii", errors="replace").strip()
    if not HEX64.match(sig):
        raise ReleaseError("manifest.sig is not a lowercase hex HMAC-SHA256")
    if not key_hex:
        return False
    want = hmac.new(bytes.fromhex(key_hex), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        raise ReleaseError("bad signature: manifest.sig does not match the fleet key")
    return True


def _check_files(d: FsPath, files: list[dict[str, Any]]) -> None:
    for f in files:
        p = d / "files" / f["path"]
        if not p.is_file() or p.is_symlink():
            raise ReleaseError(f"{f['path']}: missing from files/")
        if p.stat().st_size != f["size"]:
            raise ReleaseError(f"{f['path']}: {p.stat().st_size} bytes, manifest says {f['size']}")
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(65536):
                h.update(chunk)
        if h.hexdigest() != f["sha256"]:
            raise ReleaseError(f"{f['path']}: hash mismatch (file changed after signing)")


def verify_release(settings: Settings, version: str) -> tuple[str, str, bool]:
    """Check a bundle on disk: manifest, signature (with the fleet key if configured), every
    file's size and SHA-256. Returns (manifest text, its sha256, signature_checked)."""
    d = release_dir(settings, version)
    raw = (d / "manifest.json").read_bytes()
    try:  # the station's own rules (envnet/core/contract/ota_manifest.json)
        m = parse_manifest(raw, version)
    except BundleError as e:
        raise ReleaseError(str(e)) from None
    checked = _check_signature(raw, d / "manifest.sig", settings.ota.fleet_key)
    _check_files(d, m["files"])
    return raw.decode(), hashlib.sha256(raw).hexdigest(), checked


def _manifest_sha(settings: Settings, version: str) -> str | None:
    try:
        return hashlib.sha256(
            (release_dir(settings, version) / "manifest.json").read_bytes()
        ).hexdigest()
    except (HTTPException, OSError):
        return None


class Release(BaseModel):
    version: str
    registered: bool = Field(description="verified and registered: rollouts may use it")
    on_disk: bool
    registered_at: float | None = None
    registered_by: str | None = None
    signature_checked: bool | None = Field(
        None, description="the server checked manifest.sig with its fleet key (ota.fleet_key)"
    )
    changed_since_registration: bool = False
    files: int | None = None
    bytes: int | None = None
    created: float | None = None
    key_id: str | None = None
    confirm_deadline_s: float | None = None


def _release_view(settings: Settings, version: str, reg: dict[str, Any] | None) -> Release:
    on_disk_sha = _manifest_sha(settings, version)
    m: dict[str, Any] = {}
    text = reg["manifest"] if reg else None
    if text is None and on_disk_sha:
        try:
            text = (release_dir(settings, version) / "manifest.json").read_text()
        except (HTTPException, OSError):
            text = None
    try:
        m = json.loads(text) if text else {}
    except ValueError:
        m = {}
    files = m.get("files") if isinstance(m.get("files"), list) else None
    return Release(
        version=version,
        registered=reg is not None,
        on_disk=on_disk_sha is not None,
        registered_at=reg and reg["registered_at"],
        registered_by=reg and reg["registered_by"],
        signature_checked=None if reg is None else bool(reg["signature_checked"]),
        changed_since_registration=bool(reg and on_disk_sha != reg["manifest_sha256"]),
        files=len(files) if files is not None else None,
        bytes=sum(f.get("size", 0) for f in files if isinstance(f, dict)) if files else None,
        created=m.get("created"),
        key_id=m.get("key_id"),
        confirm_deadline_s=m.get("confirm_deadline_s"),
    )


def _on_disk(settings: Settings) -> list[str]:
    root = FsPath(settings.ota.releases_dir)
    if not root.is_dir():
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if manifest.version_ok(d.name) and (d / "manifest.json").is_file()
    )


# -- rollouts ----------------------------------------------------------------------------------
# all | group:<g> | district:<d> | station:<id> | a bare group or district name
SELECTOR_PATTERN = r"^(?:(?:group|district|station):)?[^:\s]{1,64}$"
Selector = Annotated[str, StringConstraints(pattern=SELECTOR_PATTERN)]


class RolloutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(pattern=VERSION_PATTERN, examples=["1.3.0"])
    stages: list[Selector] = Field(
        default_factory=lambda: ["canary", "all"],
        min_length=1,
        max_length=20,
        description="In order. `all`, `group:<g>`, `district:<d>`, `station:<id>`, or a bare "
        "name matching a group or a district; each stage leaves out stations of earlier ones.",
        examples=[["canary", "district:Heping", "all"]],
    )
    failure_threshold: float | None = Field(
        None, ge=0, le=1, description="pause when a stage's failure rate exceeds it"
    )
    stage_deadline_s: float | None = Field(
        None, gt=0, le=7 * 86_400, description="a station not confirmed by then counts as failed"
    )

    @field_validator("stages")
    @classmethod
    def _selectors(cls, v: list[str]) -> list[str]:
        for s in v:  # the pattern has said so already; keep the two in step
            if not valid_selector(s):
                raise ValueError(f"{s!r} is not a stage selector")
        return v


class GroupAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group: str | None = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$",
        description="the station's rollout group (stage selector `group:<g>`); null: none",
        examples=["canary"],
    )


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retry_failed: bool = Field(
        False,
        description="send the command again to the current stage's failed stations; otherwise "
        "their failures are accepted and the rollout goes on",
    )


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("paused by hand", max_length=500)


TargetState = Literal[
    "pending",
    "sent",
    "acked",
    "downloading",
    "verified",
    "switching",
    "confirmed",
    "failed",
    "rolled_back",
    "refused",
    "timed_out",
]


class Target(BaseModel):
    station: str
    stage: int
    state: TargetState
    reason: str | None
    attempts: int
    first_sent_at: float | None
    sent_at: float | None
    acked_at: float | None
    waived: bool
    updated_at: float


class StageView(BaseModel):
    index: int
    selector: str
    stations: int = Field(description="0 until the stage is reached")
    confirmed: int
    failed: int
    in_flight: int


class RolloutView(BaseModel):
    id: str
    version: str
    state: Literal["running", "paused", "completed", "cancelled"]
    reason: str | None = Field(description="why it is paused")
    stage: int = Field(description="index of the current stage (= len(stages) when completed)")
    stages: list[StageView]
    failure_threshold: float
    stage_deadline_s: float
    created_at: float
    created_by: str
    updated_at: float
    targets: list[Target] | None = Field(None, description="only on GET /ota/rollouts/{id}")


def _rollout_view(ota: SqliteOtaStore, r: dict[str, Any], with_targets: bool) -> RolloutView:
    targets = ota.targets(r["id"])
    stages = []
    for i, sel in enumerate(r["stages"]):
        ts = [t for t in targets if t["stage"] == i]
        stages.append(
            StageView(
                index=i,
                selector=sel,
                stations=len(ts),
                confirmed=sum(t["state"] == "confirmed" for t in ts),
                failed=sum(t["state"] in FAILED for t in ts),
                in_flight=sum(t["state"] not in FINAL for t in ts),
            )
        )
    return RolloutView(
        **{k: r[k] for k in ("id", "version", "state", "reason", "stage", "failure_threshold")},
        stages=stages,
        stage_deadline_s=r["stage_deadline_s"],
        created_at=r["created_at"],
        created_by=r["created_by"],
        updated_at=r["updated_at"],
        targets=[Target(**{**t, "waived": bool(t["waived"])}) for t in targets]
        if with_targets
        else None,
    )


# -- per station -------------------------------------------------------------------------------
class StationOta(BaseModel):
    id: str
    group: str | None
    district: str | None
    current_version: str | None = Field(description="`fw` of the newest birth or health message")
    target_version: str | None = Field(description="the version of the newest rollout naming it")
    rollout_id: str | None
    rollout_state: str | None
    update_state: str | None = Field(
        description="the station's state in that rollout (pending, sent, acked, downloading, "
        "verified, switching, confirmed, failed, rolled_back, refused, timed_out)"
    )
    reason: str | None
    sent_at: float | None
    acked_at: float | None
    updated_at: float | None
    last_report: dict[str, Any] | None = Field(
        description="the station's latest `ota` message: version, from, state, reason, ts, "
        "received_at"
    )


def _station_ota(
    s: dict[str, Any], t: dict[str, Any] | None, report: dict[str, Any] | None
) -> StationOta:
    meta = s["meta"] or {}
    return StationOta(
        id=s["id"],
        group=meta.get("group"),
        district=meta.get("district"),
        current_version=running_version(s),
        target_version=t and t["version"],
        rollout_id=t and t["rollout_id"],
        rollout_state=t and t["rollout_state"],
        update_state=t and t["state"],
        reason=(t and t["reason"]) or (report and report["reason"]),
        sent_at=t and t["sent_at"],
        acked_at=t and t["acked_at"],
        updated_at=t and t["updated_at"],
        last_report=report and {k: v for k, v in report.items() if k != "station"},
    )


# -- routes ------------------------------------------------------------------------------------
def _engine(request: Request) -> RolloutEngine:
    return request.app.state.ota_engine


def _wake(request: Request) -> None:
    worker = getattr(request.app.state, "ota_worker", None)
    if worker is not None:
        worker.wake()


def api_router(settings: Settings, store: SqliteStateStore, ota: SqliteOtaStore) -> APIRouter:
    api = APIRouter(prefix="/ota", tags=["ota"])

    @api.get("/releases", response_model=list[Release])
    def list_releases() -> list[Release]:
        """Bundles in `ota.releases_dir` and registered releases (registered: verified)."""
        reg = {r["version"]: r for r in ota.list_releases()}
        versions = sorted(set(reg) | set(_on_disk(settings)))
        return [_release_view(settings, v, reg.get(v)) for v in versions]

    @api.get("/releases/{version}", response_model=Release, responses=_NOT_FOUND)
    def get_release(version: Version) -> Release:
        reg = ota.get_release(version)
        if reg is None:
            release_dir(settings, version)  # 404 when not on disk either
        return _release_view(settings, version, reg)

    @api.post(
        "/releases/{version}",
        response_model=Release,
        status_code=201,
        responses={
            **_NOT_FOUND,
            422: {"description": "broken, unsigned or wrongly signed bundle"},
        },
    )
    def register_release(version: Version, who: ApiKeyName) -> Release:
        """Verify a bundle written by `envnet release` and make it available to rollouts."""
        try:
            text, sha, checked = verify_release(settings, version)
        except ReleaseError as e:
            raise HTTPException(422, f"release {version} refused: {e}") from None
        with store.tx():
            reg = ota.put_release(text, sha, checked, who)
            record_audit(
                store,
                actor=who,
                action="ota.release.register",
                target=f"release:{version}",
                detail={"manifest_sha256": sha, "signature_checked": checked},
            )
        return _release_view(settings, version, reg)

    @api.get("/rollouts", response_model=list[RolloutView])
    def list_rollouts(
        state: Literal["running", "paused", "completed", "cancelled"] | None = None,
    ) -> list[RolloutView]:
        return [_rollout_view(ota, r, False) for r in ota.list_rollouts(state)]

    @api.get("/rollouts/{rollout_id}", response_model=RolloutView, responses=_NOT_FOUND)
    def get_rollout(rollout_id: Annotated[str, Path(max_length=64)]) -> RolloutView:
        r = ota.get_rollout(rollout_id)
        if r is None:
            raise HTTPException(404, f"rollout {rollout_id} is not known")
        return _rollout_view(ota, r, True)

    @api.post("/rollouts", response_model=RolloutView, status_code=201, responses=_CONFLICT)
    def create_rollout(body: RolloutCreate, who: ApiKeyName, request: Request) -> RolloutView:
        """Start a staged rollout of a registered release (one active rollout at a time)."""
        rid = "ro-" + secrets.token_hex(4)
        with store.tx():
            _check_startable(settings, store, ota, body)
            ota.insert_rollout(
                {
                    "id": rid,
                    "version": body.version,
                    "stages": body.stages,
                    "failure_threshold": _or(
                        body.failure_threshold, settings.ota.failure_threshold
                    ),
                    "stage_deadline_s": _or(body.stage_deadline_s, settings.ota.stage_deadline_s),
                    "created_by": who,
                }
            )
            record_audit(
                store,
                actor=who,
                action="ota.rollout.start",
                target=f"rollout:{rid}",
                detail=body.model_dump(),
            )
        _wake(request)
        return _rollout_view(ota, ota.get_rollout(rid), True)  # type: ignore[arg-type]

    @api.post("/rollouts/{rollout_id}/pause", response_model=RolloutView, responses=_STATE)
    def pause(
        rollout_id: str, who: ApiKeyName, request: Request, body: PauseRequest | None = None
    ) -> RolloutView:
        """Stop sending the command; stations already updating carry on."""
        reason = (body or PauseRequest()).reason
        return _act(ota, rollout_id, _engine(request).pause(rollout_id, reason, who), "running")

    @api.post("/rollouts/{rollout_id}/resume", response_model=RolloutView, responses=_STATE)
    def resume(
        rollout_id: str, who: ApiKeyName, request: Request, body: ResumeRequest | None = None
    ) -> RolloutView:
        retry = (body or ResumeRequest()).retry_failed
        done = _engine(request).resume(rollout_id, who, retry)
        _wake(request)
        return _act(ota, rollout_id, done, "paused")

    @api.post("/rollouts/{rollout_id}/cancel", response_model=RolloutView, responses=_STATE)
    def cancel(rollout_id: str, who: ApiKeyName, request: Request) -> RolloutView:
        """End the rollout for good: no more commands (stations mid-update finish their step)."""
        return _act(ota, rollout_id, _engine(request).cancel(rollout_id, who), "running or paused")

    @api.put("/stations/{station_id}/group", response_model=StationOta, responses=_NOT_FOUND)
    def set_group(
        station_id: Annotated[str, Path(pattern=contract.STATION_ID_RE.pattern)],
        body: GroupAssignment,
        who: ApiKeyName,
    ) -> StationOta:
        """Put a station into a rollout group (`canary`, ...) or, with null, out of any."""
        with store.tx():
            meta = store.get_station_meta(station_id)
            if meta is None:
                raise HTTPException(404, f"station {station_id} is not registered")
            meta.pop("kind")
            before = meta.get("group")
            if body.group is None:
                meta.pop("group", None)
            else:
                meta["group"] = body.group
            store.update_station_meta(station_id, meta)
            record_audit(
                store,
                actor=who,
                action="ota.station.group",
                target=f"station:{station_id}",
                detail={"from": before, "to": body.group},
            )
        s = store.get_station(station_id)
        return _station_ota(s, ota.latest_target(station_id), ota.report(station_id))  # type: ignore[arg-type]

    @api.get("/stations", response_model=list[StationOta])
    def list_station_ota(
        state: str | None = Query(None, max_length=32, description="only this update_state"),
    ) -> list[StationOta]:
        reports, targets = ota.reports(), ota.latest_targets()
        views = [
            _station_ota(s, targets.get(s["id"]), reports.get(s["id"]))
            for s in store.list_stations()
        ]
        return [v for v in views if state is None or v.update_state == state]

    @api.get("/stations/{station_id}", response_model=StationOta, responses=_NOT_FOUND)
    def get_station_ota(
        station_id: Annotated[str, Path(pattern=contract.STATION_ID_RE.pattern)],
    ) -> StationOta:
        s = store.get_station(station_id)
        if s is None:
            raise HTTPException(404, f"station {station_id} is not known")
        return _station_ota(s, ota.latest_target(station_id), ota.report(station_id))

    return api


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _check_startable(
    settings: Settings, store: SqliteStateStore, ota: SqliteOtaStore, body: RolloutCreate
) -> None:
    reg = ota.get_release(body.version)
    if reg is None:
        raise HTTPException(
            409, f"release {body.version} is not registered: POST /ota/releases/{body.version}"
        )
    if _manifest_sha(settings, body.version) != reg["manifest_sha256"]:
        raise HTTPException(
            409, f"release {body.version} changed on disk since it was registered: register again"
        )
    active = ota.active_rollout()
    if active is not None:
        raise HTTPException(
            409,
            f"rollout {active['id']} ({active['version']}) is {active['state']}: cancel it first",
        )
    seen: set[str] = set()
    for sel in body.stages:
        members = stage_members(store, sel, seen)
        if not members:
            # 409, not 422: the request is well formed, the registry does not fit it (yet)
            raise HTTPException(409, f"stage {sel!r} names no station (beyond earlier stages)")
        seen.update(members)


def _act(ota: SqliteOtaStore, rollout_id: str, done: bool, needed: str) -> RolloutView:
    r = ota.get_rollout(rollout_id)
    if r is None:
        raise HTTPException(404, f"rollout {rollout_id} is not known")
    if not done:
        raise HTTPException(409, f"rollout {rollout_id} is {r['state']}, not {needed}")
    return _rollout_view(ota, r, True)


def install(app: FastAPI, settings: Settings, store: SqliteStateStore) -> None:
    """The /ota routes, and the rollout worker started and stopped with the app's lifespan."""
    ota = SqliteOtaStore(store)
    base = settings.ota.download_url or public_base_url(settings)
    engine = RolloutEngine(store, settings.ota, base)
    client_id = f"envnet-server-ota-{os.getpid()}-{secrets.token_hex(2)}"
    worker = RolloutWorker(engine, lambda: Commander(settings, client_id))
    app.state.ota_engine = engine
    app.state.ota_worker = worker
    app.include_router(files_router(settings))
    app.include_router(api_router(settings, store, ota))
    run_with_app(app, worker)
