"""Webhook subscriptions and their deliveries, over the API; `install()` wires it all in.

Every /webhooks route needs the API key (subscriber URLs and delivery contents are not public).
See docs/webhooks.md for what a subscriber receives; the outbox is envnet/store/webhooks/, the
delivery worker server/delivery.py.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from envnet.config import Settings
from envnet.core import contract
from envnet.domain.webhooks import EVENT_TYPES, PING, Event, Outcome, Status
from envnet.store.webhooks import Conflict, Outbox, emit, public_base_url
from server import errors, metrics
from server.delivery import DeliveryWorker
from server.lifespan import run_with_app
from server.routers import audit as audit
from server.security import ApiKeyName, require_api_key

log = logging.getLogger("envnet.webhooks")

# The subscribable types of the event catalogue (envnet/domain/webhooks/catalogue.py).
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
DeliveryStatus = Status
StationId = Annotated[str, StringConstraints(pattern=contract.STATION_ID_RE.pattern)]
District = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
# A responsible unit's id (GET /units), as the cases API spells it.
UnitId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Severity = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$")]
Secret = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{16,256}$")]
WebhookId = Annotated[str, Path(min_length=1, max_length=64, description="The webhook's id")]
DeliveryId = Annotated[
    str, Path(min_length=1, max_length=64, description="The delivery's id (X-Envnet-Delivery)")
]

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# http(s)://, a host name or IPv4 address, an optional port, then any printable ASCII.
_HOST = rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}|(?:{_LABEL}\.)*{_TOP})"
URL_PATTERN = rf"^https?://{_HOST}(?::{_PORT})?(?:[/?#][!-~]*)?$"


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2000,
        pattern=URL_PATTERN,
        description="Where to POST events: an http:// or https:// URL with a host name or an "
        "IPv4 address (non-ASCII host names in their xn-- form).",
        examples=["https://hb.example.gov.cn/envnet/hook"],
    )
    secret: Secret | None = Field(
        None,
        description="Shared secret for X-Envnet-Signature (16-256 printable ASCII characters). "
        "Leave out to have one generated; it is shown once, in this call's answer.",
    )
    events: list[EventType] = Field(
        default_factory=lambda: list(EVENT_TYPES),
        min_length=1,
        max_length=len(EVENT_TYPES),
        description="Event types to receive; all by default.",
    )
    stations: list[StationId] = Field(
        default_factory=list, max_length=1000, description="Only these stations (empty: any)."
    )
    districts: list[District] = Field(
        default_factory=list, max_length=100, description="Only these districts (empty: any)."
    )
    severities: list[Severity] = Field(
        default_factory=list, max_length=20, description="Only these severities (empty: any)."
    )
    units: list[UnitId] = Field(
        default_factory=list,
        max_length=1000,
        description="Only events about these responsible units (GET /units; empty: any): a "
        "case's unit, and for a 催办单 escalated to a parent unit that unit too. Events about "
        "no unit (alerts, stations) pass this filter; choose `events` to leave them out.",
    )
    description: str = Field("", max_length=500)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        # the pattern has been checked; make sure the HTTP client reads it the same way
        try:
            url = httpx.URL(v)
        except (ValueError, httpx.InvalidURL) as e:
            raise ValueError(f"not a usable URL: {e}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v

    @field_validator("events", "stations", "districts", "severities", "units")
    @classmethod
    def _dedup(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))


class DeliveryCounts(BaseModel):
    pending: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    stations: list[str]
    districts: list[str]
    units: list[str]
    severities: list[str]
    description: str
    created_at: float = Field(description="Unix time")
    secret_hint: str = Field(description="The secret's last 4 characters")
    deliveries: DeliveryCounts


class WebhookCreated(Webhook):
    secret: str = Field(description="The signing secret: keep it, it is not shown again")


class Attempt(BaseModel):
    n: int = Field(description="1 for the first attempt of this delivery")
    at: float = Field(description="Unix time the attempt started")
    duration_ms: float
    status_code: int | None = Field(description="The receiver's HTTP status; null: no answer")
    error: str | None
    outcome: Outcome


class Delivery(BaseModel):
    id: str = Field(description="Sent as X-Envnet-Delivery; the same on every retry")
    subscription_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float | None
    last_status_code: int | None
    last_error: str | None
    created_at: float
    finished_at: float | None
    attempt_log: list[Attempt]


class DeliveryDetail(Delivery):
    body: dict[str, Any] = Field(description="The event body exactly as signed and sent")


def get_outbox(request: Request) -> Outbox:
    return request.app.state.outbox


OutboxDep = Annotated[Outbox, Depends(get_outbox)]

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[Depends(require_api_key)])

_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key sent"},
    403: {"description": "Wrong API key, or none configured on the server"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown webhook or delivery"}}


def _view(sub: dict[str, Any], counts: dict[str, int] | None) -> dict[str, Any]:
    view = {k: v for k, v in sub.items() if k != "secret"}
    view["secret_hint"] = "..." + sub["secret"][-4:]
    view["deliveries"] = counts or {}
    return view


def _sub_or_404(outbox: Outbox, webhook_id: str) -> dict[str, Any]:
    sub = outbox.get_subscription(webhook_id)
    if sub is None:
        raise HTTPException(404, f"webhook {webhook_id} is not known")
    return sub


@router.post("", status_code=201, response_model=WebhookCreated, responses=_AUTH_RESPONSES)
def create_webhook(
    body: WebhookCreate, outbox: OutboxDep, request: Request, who: ApiKeyName
) -> dict[str, Any]:
    """Subscribe a URL to events. The answer carries the signing secret (once)."""
    secret = body.secret or "whsec_" + secrets.token_hex(24)
    sub = outbox.create_subscription(
        body.url,
        secret,
        body.events,
        body.stations,
        body.districts,
        body.severities,
        body.description,
        body.units,
    )
    log.info("webhook %s subscribed: %s %s", sub["id"], body.url, ",".join(body.events))
    audit.record_request(
        request, actor=who, action="webhook.subscription.create", target=sub["id"],
        url=audit.url_for_audit(body.url), events=body.events, stations=body.stations,
        districts=body.districts, units=body.units, severities=body.severities,
        description=body.description,
    )  # fmt: skip
    return {**_view(sub, None), "secret": secret}


@router.get("", response_model=list[Webhook], responses=_AUTH_RESPONSES)
def list_webhooks(outbox: OutboxDep) -> list[dict[str, Any]]:
    counts = outbox.counts_by_subscription()
    return [_view(s, counts.get(s["id"])) for s in outbox.list_subscriptions()]


@router.get("/{webhook_id}", response_model=Webhook, responses={**_AUTH_RESPONSES, **_NOT_FOUND})
def get_webhook(webhook_id: WebhookId, outbox: OutboxDep) -> dict[str, Any]:
    return _view(_sub_or_404(outbox, webhook_id), outbox.counts(webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses={**_AUTH_RESPONSES, **_NOT_FOUND},
)
def delete_webhook(
    webhook_id: WebhookId, outbox: OutboxDep, request: Request, who: ApiKeyName
) -> Response:
    """Unsubscribe; pending deliveries are dropped with the delivery history."""
    sub = outbox.get_subscription(webhook_id)
    if sub is None or not outbox.delete_subscription(webhook_id):
        raise HTTPException(404, f"webhook {webhook_id} is not known")
    audit.record_request(
        request, actor=who, action="webhook.subscription.delete", target=webhook_id,
        url=audit.url_for_audit(sub["url"]), events=sub["events"],
    )  # fmt: skip
    log.info("webhook %s deleted", webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/ping",
    status_code=202,
    response_model=Delivery,
    responses={**_AUTH_RESPONSES, **_NOT_FOUND},
)
def ping_webhook(webhook_id: WebhookId, outbox: OutboxDep) -> dict[str, Any]:
    """Send a signed `ping` event to this webhook only, to test the receiver end to end."""
    _sub_or_404(outbox, webhook_id)
    ping = Event(PING, {"webhook_id": webhook_id})
    event_id = emit(outbox, ping, only_subscription=webhook_id)
    for d in outbox.list_deliveries(webhook_id, limit=20):
        if d["event_id"] == event_id:
            return d
    raise HTTPException(404, f"webhook {webhook_id} is not known")  # deleted meanwhile


@router.get(
    "/{webhook_id}/deliveries",
    response_model=list[Delivery],
    responses={**_AUTH_RESPONSES, **_NOT_FOUND},
)
def list_deliveries(
    webhook_id: WebhookId,
    outbox: OutboxDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Deliveries of this webhook, newest first, each with every attempt made."""
    _sub_or_404(outbox, webhook_id)
    return outbox.list_deliveries(webhook_id, status, limit)


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    responses={**_AUTH_RESPONSES, **_NOT_FOUND},
)
def get_delivery(
    webhook_id: WebhookId, delivery_id: DeliveryId, outbox: OutboxDep
) -> dict[str, Any]:
    _sub_or_404(outbox, webhook_id)
    d = outbox.get_delivery(webhook_id, delivery_id)
    if d is None:
        raise HTTPException(404, f"delivery {delivery_id} of webhook {webhook_id} is not known")
    return d


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryDetail,
    responses={
        **_AUTH_RESPONSES,
        **_NOT_FOUND,
        409: {"description": "The delivery is pending already"},
    },
)
def redeliver(
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
    outbox: OutboxDep,
    request: Request,
    who: ApiKeyName,
) -> dict[str, Any]:
    """Queue a delivered, failed or dead delivery again: same delivery id, same body, a fresh
    round of attempts."""
    _sub_or_404(outbox, webhook_id)
    try:
        d = outbox.redeliver(webhook_id, delivery_id)
    except Conflict as e:
        raise HTTPException(409, str(e)) from None
    if d is None:
        raise HTTPException(404, f"delivery {delivery_id} of webhook {webhook_id} is not known")
    log.info("webhook %s: delivery %s queued again by hand", webhook_id, delivery_id)
    audit.record_request(
        request, actor=who, action="webhook.delivery.redeliver", target=webhook_id,
        delivery=delivery_id, event_type=d.get("event_type"),
    )  # fmt: skip
    return d


def install(app: FastAPI, settings: Settings, *, max_body_bytes: int | None = None) -> None:
    """Everything of issue 5 on an app from create_app: JSON errors and the body size limit,
    /webhooks, /metrics, and the delivery worker, started and stopped with the app's lifespan.
    CORS stays off (no CORS middleware is added)."""
    outbox = Outbox(settings.store.location, base_url=public_base_url(settings))
    worker = DeliveryWorker(outbox, settings.webhooks)
    app.state.outbox = outbox
    app.state.webhook_worker = worker
    errors.install(app, max_body_bytes or errors.MAX_BODY_BYTES)
    app.include_router(router)
    metrics.install(app, settings.store.location, outbox)
    run_with_app(app, worker)
