"""GET /audit: the audit trail (envnet/store/audit.py), newest first, paged with a cursor.

It needs an API key (any configured key): it reveals who did what. There is deliberately no
route that writes, changes or deletes audit rows; rows come only from the actions they record.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from envnet.store.audit import (
    CURSOR_RE,
    MAX_LIMIT,
    AuditRow,
    ensure_schema,
    query_audit,
    record_audit,
)
from envnet.store.state import SqliteStateStore
from server.routers.bounds import MAX_UNIX_S, MIN_UNIX_S, no_unknown_params
from server.security import require_api_key

CSV_COLUMNS = ("id", "at", "at_utc", "actor", "action", "target", "detail")


class AuditEntry(BaseModel):
    id: int
    at: float = Field(description="unix time (s) of the action")
    actor: str = Field(description="API key name, console user or OS user")
    action: str = Field(description="e.g. alert.ack, station.calibrate, station.maint.start")
    target: str = Field(description="station id, alert id, webhook id ...")
    detail: dict[str, Any] = {}


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = Field(
        None, description="pass as ?cursor= for the next (older) page; null on the last page"
    )


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_csv(rows: list[AuditRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        d = r.to_dict()
        d["at_utc"] = iso_utc(r.at)
        d["detail"] = json.dumps(r.detail, ensure_ascii=False, sort_keys=True)
        w.writerow([d[c] for c in CSV_COLUMNS])
    return buf.getvalue()


_Name = Annotated[str | None, Query(min_length=1, max_length=128)]


def _UnixTime(description: str) -> Any:  # noqa: N802 - reads as a Query() type
    return Query(ge=MIN_UNIX_S, le=MAX_UNIX_S, allow_inf_nan=False, description=description)


def router(state: SqliteStateStore) -> APIRouter:
    ensure_schema(state)
    api = APIRouter(tags=["audit"])

    @api.get(
        "/audit",
        response_model=AuditPage,
        dependencies=[Depends(require_api_key), Depends(no_unknown_params)],
        responses={
            200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV with ?format=csv"},
            401: {"description": "No API key sent"},
            403: {"description": "Wrong API key, or none configured on the server"},
        },
    )
    def list_audit(
        since: Annotated[float | None, _UnixTime(description="at or after (unix s)")] = None,
        until: Annotated[float | None, _UnixTime(description="at or before (unix s)")] = None,
        actor: _Name = None,
        action: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=128,
                description="exact, or a dotted prefix: station.maint finds start and end",
            ),
        ] = None,
        target: _Name = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        cursor: Annotated[
            str | None, Query(pattern=CURSOR_RE, description="next_cursor of the previous page")
        ] = None,
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        """Who did what and when: configuration, calibration, maintenance, acknowledgements,
        webhook subscriptions, provisioning. Newest first; the page's `next_cursor` (CSV: the
        `X-Next-Cursor` header) fetches the next, older page with the same filters."""
        rows, nxt = query_audit(
            state,
            since=since,
            until=until,
            actor=actor,
            action=action,
            target=target,
            limit=limit,
            cursor=cursor,
        )
        if format == "csv":
            headers = {"X-Next-Cursor": nxt} if nxt else {}
            return Response(to_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
        return AuditPage(items=[AuditEntry(**r.to_dict()) for r in rows], next_cursor=nxt)

    return api


def record_request(request: Request, *, actor: str, action: str, target: str, **detail: Any) -> int:
    """An audit row for an API action, in the app's state store (`app.state.store`)."""
    return record_audit(
        request.app.state.store, actor=actor, action=action, target=target, detail=detail
    )


def url_for_audit(url: str) -> str:
    """A subscriber URL without what may be a credential (user info, path, query)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname or ''}{f':{p.port}' if p.port else ''}/..."
