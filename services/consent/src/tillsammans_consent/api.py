"""Consent's HTTP API: thin routes over service.py.

Access (policy.py): a consent is part of the child's case, so recording, withdrawing and reading one
is for the case's BBA, the colleagues the BBA delegated the case to, and integrations of its unit.
The auditor reads the disclosure decisions and the audit trail, never a consent's identity or
grantors. Any role that discloses may ask for a decision, which carries no identity.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session

from tillsammans_common.messaging.consent_replica import Decision
from tillsammans_common.policy import Access, Action, CurrentPrincipal, RecordId, allowed, facts_of_case, on_record
from tillsammans_common.settings import ORG_ID
from tillsammans_common.web import run_command, run_query
from tillsammans_consent import service
from tillsammans_consent.models import (
    ConsentAmend,
    ConsentCreate,
    ConsentDetail,
    ConsentPublic,
    ConsentWithdraw,
    DecisionFilter,
    DecisionRecordPublic,
    DecisionRequest,
    ReplicaPublic,
)

router = APIRouter(tags=["consent"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Repeat-safe POSTs.")]
ConsentReader = Annotated[Access, on_record(Action.CASE_READ, service.consent_facts, param="consent_id")]
ConsentWorker = Annotated[Access, on_record(Action.CASE_WORK, service.consent_facts, param="consent_id")]
CaseReader = Annotated[Access, on_record(Action.CASE_READ, facts_of_case, param="case_id")]
DecisionAsker = Annotated[Access, allowed(Action.DISCLOSURE_ASK)]
ReplicaReader = Annotated[Access, allowed(Action.REPLICAS_READ)]
Auditor = Annotated[Access, allowed(Action.AUDIT_READ)]
NDJSON = "application/x-ndjson"


@router.post("/consents", status_code=201, response_model=ConsentPublic,
             summary="Record a consent (samtycke) for this organisation to disclose")
async def grant_consent(request: Request, body: ConsentCreate, principal: CurrentPrincipal,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Record a consent in a case the caller works on (403 otherwise) and replicate it; 422 names any rule broken."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: ConsentPublic.of(
            service.grant_consent(session, settings=settings, principal=principal, data=body)),
    )


@router.post("/consents/{consent_id}/withdraw", response_model=ConsentPublic, summary="Withdraw a consent")
async def withdraw_consent(request: Request, consent_id: RecordId, body: ConsentWithdraw, access: ConsentWorker,
                           idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Withdraw a consent at any time; 409 if it already is withdrawn.

    Answers only once no message under the consent can leave any more: new permits are refused
    from the commit on, and permits given just before it are waited out (their lease at most).
    """
    settings = request.app.state.settings
    engine = request.app.state.infra.engine
    withdrawn: list[str] = []

    def withdraw(session: Session) -> ConsentPublic:
        consent = service.withdraw_consent(session, settings=settings, access=access, data=body)
        withdrawn.append(consent.id)
        return ConsentPublic.of(consent)

    response = await run_command(
        engine, principal=access.principal, idempotency_key=idempotency_key, request=request,
        body=body, status_code=200, action=withdraw,
    )
    # The revision withdrawn may be a newer one than the path names (withdrawal stops every revision).
    for withdrawn_id in withdrawn or [consent_id]:
        await _until_no_open_leases(engine, withdrawn_id, limit=settings.disclosure_lease_seconds)
    return response


@router.post("/consents/{consent_id}/amend", status_code=201, response_model=ConsentPublic,
             summary="Amend a consent: a new revision replaces it")
async def amend_consent(request: Request, consent_id: RecordId, body: ConsentAmend, access: ConsentWorker,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Record amended terms (narrower or wider) as a new revision naming the old, which is withdrawn.

    422 names any rule broken (the rules of a new consent), 409 when the consent is no longer in
    force. Answers, like a withdrawal, once nothing under the old revision can leave any more.
    """
    settings = request.app.state.settings
    engine = request.app.state.infra.engine
    response = await run_command(
        engine, principal=access.principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: ConsentPublic.of(
            service.amend_consent(session, settings=settings, access=access, data=body)),
    )
    await _until_no_open_leases(engine, consent_id, limit=settings.disclosure_lease_seconds)
    return response


async def _until_no_open_leases(engine: Engine, consent_id: str, *, limit: float) -> None:
    # A permit's lease is bounded, so this wait is too; reports of sent messages usually end it at once.
    deadline = time.monotonic() + limit + 1.0
    while time.monotonic() < deadline:
        open_until = await run_query(engine, lambda session: service.open_lease_deadline(
            session, consent_id=consent_id))
        if open_until is None:
            return
        await asyncio.sleep(0.005)


@router.get("/consents/{consent_id}", response_model=ConsentDetail, summary="Read a consent")
async def get_consent(request: Request, access: ConsentReader) -> ConsentDetail:
    """Read one consent with the child's identity, grantors and history (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_consent(
        session, access=access))


@router.get("/consents/{consent_id}/text", summary="The consent's text, to print and sign",
            response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
async def consent_text(request: Request, access: ConsentReader) -> PlainTextResponse:
    """What the grantors agreed to in plain Swedish: the parties, the information, purpose and period (audited)."""
    text = await run_query(request.app.state.infra.engine, lambda session: service.consent_text_of(
        session, access=access))
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


@router.get("/cases/{case_id}/consents", response_model=list[ConsentPublic], summary="The consents of a case")
async def case_consents(request: Request, access: CaseReader) -> list[ConsentPublic]:
    """Every consent recorded in a case, newest first (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: [
        ConsentPublic.of(consent) for consent in service.case_consents(session, access=access)])


@router.post("/decisions", response_model=Decision, summary="May an organisation disclose this now?")
async def decide(request: Request, body: DecisionRequest, access: DecisionAsker) -> Decision:
    """Decide from this organisation's consents and its replicas; a POST so no identity is in the URL."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.decide_disclosure(
        session, settings=settings, principal=access.principal, data=body))


@router.get("/replicas", response_model=list[ReplicaPublic], summary="Consents replicated to this organisation")
async def replicas(request: Request, access: ReplicaReader,
                   disclosing_org: Annotated[str | None, Query(pattern=ORG_ID.pattern)] = None) -> list[ReplicaPublic]:
    """Consents other organisations recorded naming this one (pseudonymous; audited)."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: [
        ReplicaPublic.of(grant) for grant in service.replicas(session, settings=settings, principal=access.principal,
                                                              disclosing_org=disclosing_org)])


Filters = Annotated[DecisionFilter, Query()]


@router.get("/disclosure-decisions", response_model=list[DecisionRecordPublic],
            summary="Every answer of the disclosure gate (auditors)")
async def disclosure_decisions(request: Request, filters: Filters, access: Auditor) -> list[DecisionRecordPublic]:
    """Permits and denials, oldest first, each naming the consent and version it rests on (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: [
        DecisionRecordPublic.model_validate(row)
        for row in service.list_decisions(session, principal=access.principal, filters=filters)])


@router.get("/disclosure-decisions/export", summary="Export disclosure decisions as NDJSON (auditors)",
            response_class=Response, responses={200: {"content": {NDJSON: {}}}})
async def export_disclosure_decisions(request: Request, filters: Filters, access: Auditor) -> Response:
    """The same records as ``GET /disclosure-decisions``, one JSON object per line (audited)."""
    rows = await run_query(request.app.state.infra.engine, lambda session: [
        DecisionRecordPublic.model_validate(row).model_dump_json()
        for row in service.list_decisions(session, principal=access.principal, filters=filters)])
    return Response("".join(f"{row}\n" for row in rows), media_type=NDJSON,
                    headers={"Content-Disposition": 'attachment; filename="disclosure-decisions.ndjson"'})
