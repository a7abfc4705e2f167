"""Meetings' HTTP API: thin routes over service.py."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from tillsammans_common.db import utcnow
from tillsammans_common.messaging.egress import request_permits
from tillsammans_common.policy import Access, Action, CurrentPrincipal, RecordId, allowed, on_record
from tillsammans_common.timestamps import UtcInput
from tillsammans_common.web import run_command, run_query
from tillsammans_meetings import forums, service
from tillsammans_meetings.forum_calendar import forum_calendar
from tillsammans_meetings.models import (
    AgendaItemCreate,
    AgendaItemPublic,
    AnswerCreate,
    AnswerPublic,
    ConsultationCreate,
    ConsultationDetail,
    ConsultationPublic,
    CoordinatorPut,
    FollowUpCreate,
    ForumCreate,
    ForumPublic,
    MeetingCreate,
    MeetingPublic,
    OccurrencePublic,
    PlanItemCreate,
    PlanItemPublic,
    ReceivedConsultationPublic,
    ReceivedInvitationPublic,
    ReceivedInvitationSummary,
    ReviewCreate,
)

router = APIRouter(tags=["meetings"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Repeat-safe POSTs.")]

# Who may do what (policy.py): the case's BBA, their delegates and integrations of its unit call and
# run a meeting; the one who called it and the samordningsperson read it, and the samordningsperson
# runs it. Received invitations name a child who has no case here yet, so they stay with the
# coordinators who receive them and integrations. Auditors read the audit trail, not case data.
MeetingReader = Annotated[Access, on_record(Action.MEETING_READ, service.meeting_facts, param="meeting_id")]
MeetingRunner = Annotated[Access, on_record(Action.MEETING_RUN, service.meeting_facts, param="meeting_id")]
Reviewer = Annotated[Access, allowed(Action.DISCLOSURE_REVIEW)]
ConsultationAsker = Annotated[Access, allowed(Action.CONSULTATION_ASK)]
ConsultationReader = Annotated[Access, allowed(Action.CONSULTATION_READ)]
InvitationReader = Annotated[Access, allowed(Action.RECEIVED_INVITATIONS_READ)]
# Forums and answers carry no child's identity: role rules, like consultations (decision 0027).
ForumManager = Annotated[Access, allowed(Action.FORUM_MANAGE)]
ForumReader = Annotated[Access, allowed(Action.FORUM_READ)]
ConsultationAnswerer = Annotated[Access, allowed(Action.CONSULTATION_ANSWER)]
OccurrenceDate = Annotated[date, Path(description="The occurrence's date (Europe/Stockholm), as listed by "
                                                  "GET /forums/{forum_id}/occurrences.")]


@router.post("/meetings", status_code=201, response_model=MeetingPublic,
             summary="Call a samverkansmöte and invite other organisations under consent")
async def call_meeting(request: Request, body: MeetingCreate, principal: CurrentPrincipal,
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Call a meeting; 403 consent-required names an organisation no consent covers, and nothing is written.

    Only those who work on the case may (403 otherwise, before the consent service is asked
    anything). The consent service decides each invitation from its own record before anything is
    written (503 if it does not answer), and again as each invitation leaves.
    """
    settings = request.app.state.settings
    infra = request.app.state.infra
    await run_query(infra.engine, lambda session: service.check_call(
        session, settings=settings, principal=principal, data=body))
    plan = service.plan_meeting(settings=settings, principal=principal, data=body)
    verdicts = await request_permits(infra.broker.connection, settings, plan.disclosures)
    return await run_command(
        infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: service.call_meeting(session, settings=settings, principal=principal,
                                                               data=body, plan=plan, verdicts=verdicts),
    )


@router.post("/meetings/{meeting_id}/disclosure-review", response_model=MeetingPublic,
             summary="Review the invitations about a child with protected identity (four eyes)")
async def review_disclosure(request: Request, meeting_id: RecordId, body: ReviewCreate, access: Reviewer,
                            idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Approve (queue) or reject the waiting invitations; never by the user who called the meeting (403).

    The review is recorded before anything is queued, and the consent service decides each
    invitation again, as it does for every disclosure.
    """
    settings = request.app.state.settings
    infra = request.app.state.infra
    principal = access.principal
    plan = await run_query(infra.engine, lambda session: service.plan_review(
        session, settings=settings, principal=principal, meeting_id=meeting_id, data=body))
    verdicts = await request_permits(infra.broker.connection, settings, plan.disclosures)
    return await run_command(
        infra.engine, principal=principal, idempotency_key=idempotency_key, request=request, body=body,
        status_code=200, action=lambda session: service.review_disclosure(
            session, settings=settings, principal=principal, data=body, plan=plan, verdicts=verdicts),
    )


@router.get("/meetings/{meeting_id}", response_model=MeetingPublic, summary="Read a meeting with its plan")
async def get_meeting(request: Request, access: MeetingReader) -> MeetingPublic:
    """Read one meeting with its invitations and plan items (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_meeting(
        session, access=access))


@router.put("/meetings/{meeting_id}/coordinator", response_model=MeetingPublic,
            summary="Appoint the samordningsperson (the child's wish first)")
async def appoint_coordinator(request: Request, body: CoordinatorPut, access: MeetingRunner) -> MeetingPublic:
    """Appoint the coordinator; a choice other than the child's wish needs special_reason (422 otherwise)."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.appoint_coordinator(
        session, settings=settings, access=access, data=body))


@router.post("/meetings/{meeting_id}/plan-items", status_code=201, response_model=PlanItemPublic,
             summary="Add an action to the plan")
async def add_plan_item(request: Request, body: PlanItemCreate, access: MeetingRunner,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Add a plan item; the responsible organisation must take part in the meeting."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: PlanItemPublic.model_validate(service.add_plan_item(
            session, settings=settings, access=access, data=body), from_attributes=True),
    )


@router.post("/meetings/{meeting_id}/follow-up", status_code=200, response_model=MeetingPublic,
             summary="Book the uppföljning")
async def book_follow_up(request: Request, body: FollowUpCreate, access: MeetingRunner,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Book the follow-up; 409 without a coordinator, 422 unless it is after the meeting."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, status_code=200, action=lambda session: service.book_follow_up(
            session, settings=settings, access=access, data=body),
    )


@router.post("/consultations", status_code=201, response_model=ConsultationPublic,
             summary="Ask other organisations anonymously (no identity)")
async def request_consultation(request: Request, body: ConsultationCreate, access: ConsultationAsker,
                               idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Send an anonymous consultation; a question with anything like a personnummer is refused (422)."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: ConsultationPublic.model_validate(
            service.request_consultation(session, settings=settings, principal=access.principal, data=body),
            from_attributes=True),
    )


@router.get("/consultations/received", response_model=list[ReceivedConsultationPublic],
            summary="Anonymous consultations from other organisations")
async def received_consultations(request: Request, access: ConsultationReader) -> list[ReceivedConsultationPublic]:
    """Anonymous consultations other organisations sent here, newest first."""
    return await run_query(request.app.state.infra.engine, lambda session: [
        ReceivedConsultationPublic.model_validate(row, from_attributes=True)
        for row in service.list_received_consultations(session, principal=access.principal)])


@router.get("/received-invitations", response_model=list[ReceivedInvitationSummary],
            summary="Invitations from other organisations (without identities)")
async def received_invitations(request: Request, access: InvitationReader) -> list[ReceivedInvitationSummary]:
    """Invitations other organisations sent here, newest first; open one to see the child (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.list_received_invitations(
        session, principal=access.principal))


@router.get("/received-invitations/{invitation_id}", response_model=ReceivedInvitationPublic,
            summary="One invitation from another organisation")
async def received_invitation(request: Request, invitation_id: RecordId,
                              access: InvitationReader) -> ReceivedInvitationPublic:
    """Read one received invitation (audited); withdrawn ones no longer show the child."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_received_invitation(
        session, principal=access.principal, invitation_id=invitation_id))


@router.get("/consultations/{consultation_id}", response_model=ConsultationDetail,
            summary="One of this organisation's anonymous consultations, with the answers that came back")
async def get_consultation(request: Request, consultation_id: RecordId,
                           access: ConsultationReader) -> ConsultationDetail:
    """Read a consultation this organisation asked and its answers; one naming a case only for those on the case."""
    return await run_query(request.app.state.infra.engine, lambda session: forums.get_consultation(
        session, principal=access.principal, consultation_id=consultation_id))


@router.post("/consultations/received/{consultation_id}/answer", status_code=201, response_model=AnswerPublic,
             summary="Answer an anonymous consultation (advice, or 'we can help: ask for consent and invite us')")
async def answer_consultation(request: Request, consultation_id: RecordId, body: AnswerCreate,
                              access: ConsultationAnswerer, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Answer a received consultation; the answer travels back to the asker. Anything identifying is refused (422)."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: forums.answer_consultation(
            session, settings=settings, principal=access.principal, consultation_id=consultation_id, data=body),
    )


@router.post("/forums", status_code=201, response_model=ForumPublic,
             summary="Define a recurring forum (elevhälsoteam, barnhälsogrupp) with its member organisations")
async def define_forum(request: Request, body: ForumCreate, access: ForumManager,
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Define a forum; an RRULE more often than weekly, or with no occurrence, is refused (422 naming rrule)."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: forums.define_forum(
            session, settings=settings, principal=access.principal, data=body),
    )


@router.put("/forums/{forum_id}", response_model=ForumPublic,
            summary="Change a forum: members get the new revision, a member taken out forgets it")
async def change_forum(request: Request, forum_id: RecordId, body: ForumCreate, access: ForumManager) -> ForumPublic:
    """Replace the forum's definition (the owner only: 403 at a member); the same rules as defining it."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: forums.change_forum(
        session, settings=settings, principal=access.principal, forum_id=forum_id, data=body))


@router.get("/forums", response_model=list[ForumPublic],
            summary="Forums this organisation holds or is a member of")
async def list_forums(request: Request, access: ForumReader) -> list[ForumPublic]:
    """The forums this organisation holds, then those of other organisations it is a member of."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: forums.list_forums(
        session, settings=settings, principal=access.principal))


@router.get("/forums/{forum_id}", response_model=ForumPublic, summary="One forum")
async def get_forum(request: Request, forum_id: RecordId, access: ForumReader) -> ForumPublic:
    """A forum this organisation holds or is a member of."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: forums.get_forum(
        session, settings=settings, principal=access.principal, forum_id=forum_id))


@router.get("/forums/{forum_id}/occurrences", response_model=list[OccurrencePublic],
            summary="When a forum meets, in a window of at most 366 days")
async def list_occurrences(request: Request, forum_id: RecordId, access: ForumReader,
                           start: Annotated[UtcInput | None, Query(alias="from")] = None,
                           end: Annotated[UtcInput | None, Query(alias="to")] = None) -> list[OccurrencePublic]:
    """The occurrences starting in [from, to]: from now for 180 days unless given."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: forums.list_occurrences(
        session, settings=settings, forum_id=forum_id, start=start, end=end, now=utcnow()))


@router.post("/forums/{forum_id}/occurrences/{occurrence_date}/agenda", status_code=201,
             response_model=AgendaItemPublic, summary="Put an anonymous consultation on an occurrence's agenda")
async def place_on_agenda(request: Request, forum_id: RecordId, occurrence_date: OccurrenceDate,
                          body: AgendaItemCreate, access: ForumManager,
                          idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Place one of this organisation's consultations on a future occurrence of its own forum (422 otherwise)."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: forums.place_on_agenda(
            session, settings=settings, principal=access.principal, forum_id=forum_id,
            occurrence_date=occurrence_date, data=body, now=utcnow()),
    )


@router.get("/forums/{forum_id}/occurrences/{occurrence_date}/agenda", response_model=list[AgendaItemPublic],
            summary="An occurrence's agenda: anonymous consultations, never an identity")
async def get_agenda(request: Request, forum_id: RecordId, occurrence_date: OccurrenceDate,
                     access: ForumReader) -> list[AgendaItemPublic]:
    """The consultations on an occurrence's agenda, for the forum's owner and members."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: forums.get_agenda(
        session, settings=settings, principal=access.principal, forum_id=forum_id, occurrence_date=occurrence_date))


@router.get("/forums/{forum_id}/calendar.ics", response_class=Response,
            responses={200: {"content": {"text/calendar": {"schema": {"type": "string"}}}}},
            summary="The forum's series as iCalendar (RRULE; no personal data)")
async def forum_calendar_file(request: Request, forum_id: RecordId, access: ForumReader) -> Response:
    """An iCalendar file (METHOD:REQUEST) with the forum's RRULE, its kind as summary, its room and organiser."""
    settings = request.app.state.settings
    forum = await run_query(request.app.state.infra.engine, lambda session: forums.get_forum(
        session, settings=settings, principal=access.principal, forum_id=forum_id))
    member = settings.federation.get(forum.owner_org)
    body = forum_calendar(forum, organiser_name=member.name if member else forum.owner_org, now=utcnow())
    return Response(content=body, media_type="text/calendar; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="forum-{forum.id}.ics"'})
