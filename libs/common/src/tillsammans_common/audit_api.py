"""The log reviewer's view of the audit trail: search it page by page, or export it as NDJSON (decision 18).

Role ``auditor`` only. The trail names cases, records and units by opaque ids and holds no child data,
so an auditor can answer "who looked at this child, on what basis" without seeing the child. Reading
the trail is itself audited. Nothing here (or anywhere in the API) updates or deletes a record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Engine, Select, select
from sqlmodel import Session, col

from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal, Role, require
from tillsammans_common.db import run_db, session_scope
from tillsammans_common.models import AuditRecord
from tillsammans_common.timestamps import UtcDatetime, UtcInput

PAGE_LIMIT = 1000
MAX_RECORD_ID = 2**31 - 1
"""The largest id the trail can hold: its id column is a 32-bit INTEGER on PostgreSQL."""
EXPORT_BATCH = 1000
NDJSON = "application/x-ndjson"
REVIEW_BASIS = "auditor"
REVIEW_PURPOSE = "log_review"
_TABLE: Any = AuditRecord.__table__  # type: ignore[attr-defined]


class AuditQuery(BaseModel):
    """Which records to return; every filter given must match (all are optional)."""

    # A misspelt filter is refused rather than ignored: ignored, it would return the whole trail.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    case_id: str | None = Field(None, max_length=64, description="Only records about this case.")
    user: str | None = Field(None, max_length=128, description="Only records of this user (e.g. 'anonymous').")
    outcome: str | None = Field(None, max_length=32,
                                description="Only this outcome: ok, denied, unauthenticated, refused, ...")
    action: str | None = Field(None, max_length=128, description="Only this action, e.g. 'meeting.read'.")
    from_: UtcInput | None = Field(None, alias="from", description="Only records at or after this time.")
    to: UtcInput | None = Field(None, description="Only records before this time.")


class AuditPageQuery(AuditQuery):
    """The filters, and which page: keyset pagination on the record id."""

    after_id: int = Field(0, ge=0, le=MAX_RECORD_ID,
                          description="Only records with a higher id: the previous page's next.")
    limit: int = Field(100, ge=1, le=PAGE_LIMIT, description="At most this many records.")


class AuditRecordPublic(BaseModel):
    """One access (or refused access) as the log reviewer sees it."""

    id: int = Field(description="Increases with every record; pass the last one seen as after_id.")
    at: UtcDatetime = Field(description="When it happened (UTC).")
    org: str = Field(description="The caller's organisation; empty when the caller was not identified.")
    user: str = Field(description="The caller: a user id, 'anonymous', or 'system:<consumer>' for a message applied.")
    role: str = Field(description="The caller's roles, comma-separated ('system' for a consumer).")
    principal_kind: str = Field(description="person, client (an integration), system, or unknown (anonymous).")
    units: str | None = Field(description="The caller's units (school, BVC, ...), comma-separated.")
    service: str | None = Field(description="The service that recorded it.")
    action: str = Field(description="What was done: a domain action, an event type, or 'METHOD /route' refused.")
    outcome: str = Field(description="ok, denied (403), unauthenticated (401), refused (a message), or the "
                                     "action's own outcome (e.g. allowed, not_found).")
    basis: str | None = Field(description="The need-to-know relation that allowed it (e.g. bba-of-unit, "
                                          "participant); null for a refusal.")
    reason: str | None = Field(description="Why it was refused: no-token, invalid-token, other-organisation, role, "
                                           "no-relation, or a message's reason code.")
    case_id: str | None = Field(description="The case (child) it concerned, an opaque id.")
    unit_id: str | None = Field(description="The child's unit it concerned.")
    record_id: str | None = Field(description="The record it concerned (meeting, mapping, concern, ...).")
    purpose: str | None = Field(description="The purpose the caller gave or the action implies.")
    protected: bool = Field(description="The child has a protected identity (skyddad identitet).")
    trace_id: str | None = Field(description="The trace of the request or message, for ops.")


class AuditPage(BaseModel):
    """A page of records, oldest first."""

    items: list[AuditRecordPublic]
    next: int | None = Field(description="Pass as after_id for the next page; null when this was the last.")


def audit_engine(request: Request) -> Engine:
    """The service's database, set by ``build_app``."""
    engine: Engine = request.app.state.infra.engine
    return engine


router = APIRouter(prefix="/audit", tags=["audit"])
Auditor = Annotated[Principal, require(Role.AUDITOR)]
AuditEngine = Annotated[Engine, Depends(audit_engine)]
Filters = Annotated[AuditQuery, Query()]


def _conditions(query: AuditQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name in ("case_id", "user", "outcome", "action"):
        value = getattr(query, name)
        if value is not None:
            conditions.append(_TABLE.c[name] == value)
    if query.from_ is not None:
        conditions.append(col(AuditRecord.at) >= query.from_)
    if query.to is not None:
        conditions.append(col(AuditRecord.at) < query.to)
    return conditions


def _page(query: AuditQuery, after_id: int, limit: int) -> Select[Any]:
    # Keyset pagination on the id: each page is a seek, however deep, and records written meanwhile
    # appear on later pages rather than shifting this one.
    return (select(_TABLE).where(*_conditions(query), col(AuditRecord.id) > after_id)
            .order_by(col(AuditRecord.id)).limit(limit))


def read_page(session: Session, query: AuditQuery, *, after_id: int, limit: int) -> list[AuditRecordPublic]:
    """Up to ``limit`` records matching ``query`` with an id above ``after_id``, oldest first."""
    rows = session.connection().execute(_page(query, after_id, limit)).mappings()
    return [AuditRecordPublic.model_validate(dict(row)) for row in rows]


def _read_and_audit(principal: Principal, query: AuditQuery, after_id: int, limit: int,
                    session: Session) -> AuditPage:
    # One more than asked tells whether another page follows.
    items = read_page(session, query, after_id=after_id, limit=limit + 1)
    more = len(items) > limit
    items = items[:limit]
    # Written after the read, so the review does not find itself; in the same transaction.
    audit(session, principal, "audit.read", case_id=query.case_id, purpose=REVIEW_PURPOSE, basis=REVIEW_BASIS)
    return AuditPage(items=items, next=items[-1].id if more and items else None)


@router.get("", summary="Search the audit trail (auditor only), oldest first, page by page")
async def list_audit_records(engine: AuditEngine, principal: Auditor,
                             query: Annotated[AuditPageQuery, Query()]) -> AuditPage:
    """Records matching every filter given, at most ``limit``, after ``after_id``."""

    def work() -> AuditPage:
        with session_scope(engine) as session:
            return _read_and_audit(principal, query, query.after_id, query.limit, session)

    return await run_db(engine, work)


def _batch(engine: Engine, query: AuditQuery, after_id: int) -> list[AuditRecordPublic]:
    with Session(engine) as session:
        return read_page(session, query, after_id=after_id, limit=EXPORT_BATCH)


async def _ndjson(engine: Engine, query: AuditQuery) -> AsyncIterator[bytes]:
    after_id = 0
    while True:
        # One short read per batch: never the whole trail in memory, and the loop serves others in between.
        items = await run_db(engine, partial(_batch, engine, query, after_id))
        if not items:
            return
        yield b"".join(item.model_dump_json().encode() + b"\n" for item in items)
        if len(items) < EXPORT_BATCH:
            return
        after_id = items[-1].id


@router.get("/export", summary="Export the audit trail as NDJSON (auditor only), oldest first",
            response_class=StreamingResponse,
            responses={200: {"description": "One AuditRecordPublic as JSON per line.",
                             "content": {NDJSON: {"schema": {"type": "string"}}}}})
async def export_audit_records(engine: AuditEngine, principal: Auditor, query: Filters) -> StreamingResponse:
    """Every record matching the filters, streamed in batches."""

    def record(session: Session) -> None:
        audit(session, principal, "audit.export", case_id=query.case_id, purpose=REVIEW_PURPOSE, basis=REVIEW_BASIS)

    # Committed before the first byte: an export that is cut off half way was still recorded.
    await run_db(engine, partial(_in_transaction, engine, record))
    return StreamingResponse(_ndjson(engine, query), media_type=NDJSON,
                             headers={"Content-Disposition": 'attachment; filename="audit.ndjson"'})


def _in_transaction(engine: Engine, work: Callable[[Session], None]) -> None:
    with session_scope(engine) as session:
        work(session)

