"""Meetings' HTTP API: thin routes over service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from tillsammans_common.auth import Principal, Role, require
from tillsammans_common.messaging.egress import request_permits
from tillsammans_common.web import run_command, run_query
from tillsammans_meetings import service
from tillsammans_meetings.models import (
    ConsultationCreate,
    ConsultationPublic,
    CoordinatorPut,
    FollowUpCreate,
    MeetingCreate,
    MeetingPublic,
    PlanItemCreate,
    PlanItemPublic,
    ReceivedConsultationPublic,
    ReceivedInvitationPublic,
    ReceivedInvitationSummary,
    ReviewCreate,
)

router = APIRouter(tags=["meetings"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Repeat-safe POSTs.")]

# Who may do what. The BBA calls and runs the meeting, a samordningsperson of this organisation
# may run it too, and integrations act for the journal systems. Received invitations name the
# child, so they stay with those who organise meetings here; anonymous consultations and this
# organisation's own meetings are open to its professionals as well. Auditors read the audit log,
# not case data.
CALLERS = (Role.BBA, Role.COORDINATOR, Role.INTEGRATION)
RUNNERS = (Role.BBA, Role.COORDINATOR)
MEETING_READERS = (Role.BBA, Role.COORDINATOR, Role.PROFESSIONAL, Role.INTEGRATION)
INVITATION_READERS = (Role.BBA, Role.COORDINATOR, Role.INTEGRATION)
CONSULTATION_READERS = (Role.BBA, Role.COORDINATOR, Role.PROFESSIONAL, Role.INTEGRATION)


@router.post("/meetings", status_code=201, response_model=MeetingPublic,
             summary="Call a samverkansmöte and invite other organisations under consent")
async def call_meeting(request: Request, body: MeetingCreate, idempotency_key: IdempotencyKey = None,
                       principal: Principal = require(*CALLERS)) -> JSONResponse:
    """Call a meeting; 403 consent-required names an organisation no consent covers, and nothing is written.

    The consent service decides each invitation from its own record before anything is written
    (503 if it does not answer), and again as each invitation leaves.
    """
    settings = request.app.state.settings
    infra = request.app.state.infra
    plan = service.plan_meeting(settings=settings, principal=principal, data=body)
    verdicts = await request_permits(infra.broker.connection, settings, plan.disclosures)
    return await run_command(
        infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: service.call_meeting(session, settings=settings, principal=principal,
                                                               data=body, plan=plan, verdicts=verdicts),
    )


@router.post("/meetings/{meeting_id}/disclosure-review", response_model=MeetingPublic,
             summary="Review the invitations about a child with protected identity (four eyes)")
async def review_disclosure(request: Request, meeting_id: str, body: ReviewCreate,
                            idempotency_key: IdempotencyKey = None,
                            principal: Principal = require(Role.REVIEWER)) -> JSONResponse:
    """Approve (queue) or reject the waiting invitations; never by the user who called the meeting (403).

    The review is recorded before anything is queued, and the consent service decides each
    invitation again, as it does for every disclosure.
    """
    settings = request.app.state.settings
    infra = request.app.state.infra
    plan = await run_query(infra.engine, lambda session: service.plan_review(
        session, settings=settings, principal=principal, meeting_id=meeting_id, data=body))
    verdicts = await request_permits(infra.broker.connection, settings, plan.disclosures)
    return await run_command(
        infra.engine, principal=principal, idempotency_key=idempotency_key, request=request, body=body,
        status_code=200, action=lambda session: service.review_disclosure(
            session, settings=settings, principal=principal, data=body, plan=plan, verdicts=verdicts),
    )


@router.get("/meetings/{meeting_id}", response_model=MeetingPublic, summary="Read a meeting with its plan")
async def get_meeting(request: Request, meeting_id: str,
                      principal: Principal = require(*MEETING_READERS)) -> MeetingPublic:
    """Read one meeting with its invitations and plan items (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_meeting(
        session, principal=principal, meeting_id=meeting_id))


@router.put("/meetings/{meeting_id}/coordinator", response_model=MeetingPublic,
            summary="Appoint the samordningsperson (the child's wish first)")
async def appoint_coordinator(request: Request, meeting_id: str, body: CoordinatorPut,
                              principal: Principal = require(*RUNNERS)) -> MeetingPublic:
    """Appoint the coordinator; a choice other than the child's wish needs special_reason (422 otherwise)."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.appoint_coordinator(
        session, settings=settings, principal=principal, meeting_id=meeting_id, data=body))


@router.post("/meetings/{meeting_id}/plan-items", status_code=201, response_model=PlanItemPublic,
             summary="Add an action to the plan")
async def add_plan_item(request: Request, meeting_id: str, body: PlanItemCreate,
                        idempotency_key: IdempotencyKey = None,
                        principal: Principal = require(*RUNNERS)) -> JSONResponse:
    """Add a plan item; the responsible organisation must take part in the meeting."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: PlanItemPublic.model_validate(service.add_plan_item(
            session, settings=settings, principal=principal, meeting_id=meeting_id, data=body), from_attributes=True),
    )


@router.post("/meetings/{meeting_id}/follow-up", status_code=200, response_model=MeetingPublic,
             summary="Book the uppföljning")
async def book_follow_up(request: Request, meeting_id: str, body: FollowUpCreate,
                         idempotency_key: IdempotencyKey = None,
                         principal: Principal = require(*RUNNERS)) -> JSONResponse:
    """Book the follow-up; 409 without a coordinator, 422 unless it is after the meeting."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, status_code=200, action=lambda session: service.book_follow_up(
            session, settings=settings, principal=principal, meeting_id=meeting_id, data=body),
    )


@router.post("/consultations", status_code=201, response_model=ConsultationPublic,
             summary="Ask other organisations anonymously (no identity)")
async def request_consultation(request: Request, body: ConsultationCreate, idempotency_key: IdempotencyKey = None,
                               principal: Principal = require(*CALLERS)) -> JSONResponse:
    """Send an anonymous consultation; a question with anything like a personnummer is refused (422)."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: ConsultationPublic.model_validate(service.request_consultation(
            session, settings=settings, principal=principal, data=body), from_attributes=True),
    )


@router.get("/consultations/received", response_model=list[ReceivedConsultationPublic],
            summary="Anonymous consultations from other organisations")
async def received_consultations(request: Request, principal: Principal = require(*CONSULTATION_READERS)
                                 ) -> list[ReceivedConsultationPublic]:
    """Anonymous consultations other organisations sent here, newest first."""
    return await run_query(request.app.state.infra.engine, lambda session: [
        ReceivedConsultationPublic.model_validate(row, from_attributes=True)
        for row in service.list_received_consultations(session, principal=principal)])


@router.get("/received-invitations", response_model=list[ReceivedInvitationSummary],
            summary="Invitations from other organisations (without identities)")
async def received_invitations(request: Request, principal: Principal = require(*INVITATION_READERS)
                               ) -> list[ReceivedInvitationSummary]:
    """Invitations other organisations sent here, newest first; open one to see the child (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.list_received_invitations(
        session, principal=principal))


@router.get("/received-invitations/{invitation_id}", response_model=ReceivedInvitationPublic,
            summary="One invitation from another organisation")
async def received_invitation(request: Request, invitation_id: str,
                              principal: Principal = require(*INVITATION_READERS)) -> ReceivedInvitationPublic:
    """Read one received invitation (audited); withdrawn ones no longer show the child."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_received_invitation(
        session, principal=principal, invitation_id=invitation_id))
