"""Meetings' HTTP API: thin routes over service.py."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session

from tillsammans_common.db import utcnow
from tillsammans_common.messaging.egress import request_permits
from tillsammans_common.policy import Access, Action, CurrentPrincipal, RecordId, allowed, on_record
from tillsammans_common.timestamps import UtcInput
from tillsammans_common.web import run_command, run_query
from tillsammans_meetings import follow_ups, forums, service, sip
from tillsammans_meetings.calendar import MEDIA_TYPE as CALENDAR
from tillsammans_meetings.calendar import forum_calendar
from tillsammans_meetings.models import (
    AcceptInvitation,
    AgendaItemCreate,
    AgendaItemPublic,
    AnswerCreate,
    AnswerPublic,
    CancelMeeting,
    ConsultationCreate,
    ConsultationDetail,
    ConsultationPublic,
    CoordinatorPut,
    DeclineInvitation,
    FollowUpCreate,
    FollowUpsPublic,
    ForumCreate,
    ForumPublic,
    MeetingCreate,
    MeetingPublic,
    OccurrencePublic,
    OverallResponsibilityPut,
    PlanItemCreate,
    PlanItemPublic,
    PlanItemStatusPut,
    ReceivedConsultationPublic,
    ReceivedInvitationPublic,
    ReceivedInvitationSummary,
    ReceivedPlanPublic,
    ReceivedPlanSummary,
    ReviewCreate,
    ScheduleMeeting,
    SipPlanPublic,
)
from tillsammans_meetings.models import (
    Meeting as MeetingRow,
)

log = logging.getLogger(__name__)
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
# The invited organisation answers through its coordinators and integrations (who read its received
# invitations); the calendar file is also for the people it named as participants.
InvitationAnswerer = Annotated[Access, allowed(Action.INVITATION_ANSWER)]
InvitationCalendarReader = Annotated[Access, on_record(Action.RECEIVED_INVITATION_CALENDAR,
                                                       service.received_invitation_facts, param="invitation_id")]
CALENDAR_RESPONSE = {200: {"description": "An iCalendar object (RFC 5545/5546) with no personal data in it.",
                           "content": {CALENDAR: {"schema": {"type": "string"}}}}}


def _calendar(body: bytes) -> Response:
    return Response(content=body, media_type=CALENDAR,
                    headers={"Content-Disposition": 'inline; filename="meeting.ics"'})


ReceivedPlanReader = Annotated[Access, allowed(Action.RECEIVED_PLANS_READ)]
ReceivedPlanReporter = Annotated[Access, allowed(Action.RECEIVED_PLAN_REPORT)]


async def _share_plan(request: Request, access: Access) -> None:
    """Put the meeting's changed plan (a SIP's) to its participants, under consent decided now.

    After the change committed: a consent service that does not answer leaves the plan pending, and
    the follow-up scheduler shares it on its next pass.
    """
    settings = request.app.state.settings
    infra = request.app.state.infra

    def participating(session: Session, meeting: MeetingRow) -> set[str]:
        return service.participants(session, settings=settings, meeting=meeting)

    try:
        await sip.share_plans(engine=infra.engine, connection=infra.broker.connection, settings=settings,
                              principal=access.principal, participating=participating,
                              meeting_ids=[access.facts.record_id or ""])
    except Exception as exc:
        # The change is committed and its version pending: the scheduler's next pass shares it. The type
        # only, a database error's text can quote the child's identity.
        log.warning("plan not shared now; the scheduler retries", extra={"error_type": type(exc).__name__})


# Forums and answers carry no child's identity: role rules, like consultations (decision 0027).
ForumManager = Annotated[Access, allowed(Action.FORUM_MANAGE)]
ForumReader = Annotated[Access, allowed(Action.FORUM_READ)]
ConsultationAnswerer = Annotated[Access, allowed(Action.CONSULTATION_ANSWER)]
OccurrenceDate = Annotated[date, Path(description="The occurrence's date (Europe/Stockholm), as listed by "
                                                  "GET /forums/{forum_id}/occurrences.")]


@router.post("/meetings", status_code=201, response_model=MeetingPublic,
             summary="Call a meeting (samverkansmöte, SIP, follow-up), from a completed mapping or not, and invite "
                     "other organisations under consent for its kind's purpose")
async def call_meeting(request: Request, body: MeetingCreate, principal: CurrentPrincipal,
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Call a meeting; 403 consent-required names an organisation no consent covers, and nothing is written.

    With ``mapping_id`` (a completed mapping of the same case, 422 otherwise) the mapping's flagged
    areas and suggested organisations are the meeting's unless the body names its own. Each
    invitation asks for a consent for the purpose of the meeting's kind (SIP: ``sip``).

    Only those who work on the case may (403 otherwise, before the consent service is asked
    anything). The consent service decides each invitation from its own record before anything is
    written (503 if it does not answer), and again as each invitation leaves.
    """
    settings = request.app.state.settings
    infra = request.app.state.infra
    terms = await run_query(infra.engine, lambda session: service.check_call(
        session, settings=settings, principal=principal, data=body))
    plan = service.plan_meeting(settings=settings, principal=principal, data=body, terms=terms)
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
    appointed = await run_query(request.app.state.infra.engine, lambda session: service.appoint_coordinator(
        session, settings=settings, access=access, data=body))
    await _share_plan(request, access)
    return appointed


@router.post("/meetings/{meeting_id}/plan-items", status_code=201, response_model=PlanItemPublic,
             summary="Add an action to the plan")
async def add_plan_item(request: Request, body: PlanItemCreate, access: MeetingRunner,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Add a plan item: an organisation of the meeting, or 'others' with responsible_party (the family, ...)."""
    settings = request.app.state.settings
    added = await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: PlanItemPublic.model_validate(service.add_plan_item(
            session, settings=settings, access=access, data=body), from_attributes=True),
    )
    await _share_plan(request, access)
    return added


@router.post("/meetings/{meeting_id}/follow-up", status_code=200, response_model=MeetingPublic,
             summary="Book the uppföljning")
async def book_follow_up(request: Request, body: FollowUpCreate, access: MeetingRunner,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Book the follow-up, a meeting of its own (kind follow_up, ``follow_up_id``); 409 without a coordinator,
    422 unless it is after the meeting. Booking again moves it."""
    settings = request.app.state.settings
    booked = await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, status_code=200, action=lambda session: service.book_follow_up(
            session, settings=settings, access=access, data=body),
    )
    await _share_plan(request, access)
    return booked


@router.get("/meetings/{meeting_id}/plan", response_model=SipPlanPublic,
            summary="The plan (SIP): actions, responsible principals, actions by others, overall responsibility")
async def get_plan(request: Request, access: MeetingReader) -> SipPlanPublic:
    """Read the plan with its version and where it was shared (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: sip.get_plan(session, access=access))


@router.get("/meetings/{meeting_id}/plan.html", response_class=HTMLResponse,
            summary="The plan as a printable document for the family")
async def plan_document(request: Request, access: MeetingReader) -> HTMLResponse:
    """The plan for the family to keep (it names the child; audited)."""
    return HTMLResponse(await run_query(request.app.state.infra.engine, lambda session: sip.plan_document(
        session, access=access)))


@router.put("/meetings/{meeting_id}/overall-responsibility", response_model=SipPlanPublic,
            summary="Name the principal with overall responsibility for the SIP")
async def set_overall_responsibility(request: Request, body: OverallResponsibilityPut,
                                     access: MeetingRunner) -> SipPlanPublic:
    """This organisation or one whose invitation stands (422 otherwise); the plan is shared again."""
    settings = request.app.state.settings
    plan = await run_query(request.app.state.infra.engine, lambda session: sip.set_overall_responsibility(
        session, settings=settings, access=access, data=body, participating=service.participants(
            session, settings=settings, meeting=service.get_meeting_row(session, access))))
    await _share_plan(request, access)
    return plan


@router.post("/meetings/{meeting_id}/plan-items/{item_id}/status", response_model=PlanItemPublic,
             summary="Move one of this organisation's own plan items on")
async def set_item_status(request: Request, item_id: RecordId, body: PlanItemStatusPut,
                          access: MeetingRunner) -> PlanItemPublic:
    """planned -> in_progress -> done, or cancelled; 409 for any other move, 403 for another principal's item."""
    settings = request.app.state.settings
    item = await run_query(request.app.state.infra.engine, lambda session: sip.set_item_status(
        session, settings=settings, access=access, item_id=item_id, data=body))
    await _share_plan(request, access)
    return item


@router.post("/meetings/{meeting_id}/held", response_model=MeetingPublic, summary="Record that the meeting was held")
async def mark_held(request: Request, access: MeetingRunner) -> MeetingPublic:
    """A follow-up held is no longer overdue; 409 when already recorded."""
    return await run_query(request.app.state.infra.engine, lambda session: follow_ups.mark_held(
        session, access=access, view=service.meeting_view))


@router.get("/follow-ups", response_model=FollowUpsPublic,
            summary="Follow-ups and overdue plan items of the plans the caller may read")
async def list_follow_ups(request: Request, principal: CurrentPrincipal,
                          overdue: Annotated[bool, Query(description="Only those overdue.")] = False
                          ) -> FollowUpsPublic:
    """The open follow-ups (or with overdue=true those whose time passed), the overdue actions of plans held
    here, and this organisation's own overdue actions in plans shared here (coordinators, integrations)."""
    return await run_query(request.app.state.infra.engine, lambda session: follow_ups.list_follow_ups(
        session, principal=principal, overdue=overdue, org=request.app.state.settings.org,
        facts=service.meeting_facts))


@router.get("/received-plans", response_model=list[ReceivedPlanSummary],
            summary="SIPs other organisations share here (without identities)")
async def received_plans(request: Request, access: ReceivedPlanReader) -> list[ReceivedPlanSummary]:
    """The newest version of each plan shared here, newest first; open one to see the child (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: sip.list_received_plans(
        session, principal=access.principal))


@router.get("/received-plans/{plan_id}", response_model=ReceivedPlanPublic, summary="One SIP shared here")
async def received_plan(request: Request, plan_id: RecordId, access: ReceivedPlanReader) -> ReceivedPlanPublic:
    """Read one received plan (audited); once its consent is withdrawn, only that it arrived remains."""
    return await run_query(request.app.state.infra.engine, lambda session: sip.get_received_plan(
        session, principal=access.principal, plan_id=plan_id))


@router.post("/received-plans/{plan_id}/items/{item_id}/status", response_model=ReceivedPlanPublic,
             status_code=202, summary="Move this organisation's own item of a shared SIP on (reported to its holder)")
async def report_item_status(request: Request, plan_id: RecordId, item_id: RecordId, body: PlanItemStatusPut,
                             access: ReceivedPlanReporter) -> ReceivedPlanPublic:
    """Sent to the plan's holder, who applies it and shares the plan again (202); 403 for another's item."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: sip.report_item_status(
        session, settings=settings, principal=access.principal, plan_id=plan_id, item_id=item_id, data=body))


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


@router.put("/meetings/{meeting_id}/schedule", response_model=MeetingPublic,
            summary="Move a meeting (time, room); every invited organisation is told")
async def reschedule_meeting(request: Request, body: ScheduleMeeting, access: MeetingRunner) -> MeetingPublic:
    """Reschedule: the meeting's sequence goes up and each invited organisation gets the change in order.

    409 once the meeting is cancelled; 422 for a time in the past or not before the booked follow-up,
    or a room that identifies the child. The same time and room again changes nothing.
    """
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.reschedule_meeting(
        session, settings=settings, access=access, data=body))


@router.post("/meetings/{meeting_id}/cancel", response_model=MeetingPublic,
             summary="Cancel a meeting; every invited organisation is told")
async def cancel_meeting(request: Request, body: CancelMeeting, access: MeetingRunner,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Cancel: the reason stays here, the invited organisations get the cancel; 409 if already cancelled."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, status_code=200, action=lambda session: service.cancel_meeting(
            session, settings=settings, access=access, data=body),
    )


@router.get("/meetings/{meeting_id}/calendar.ics", response_class=Response, responses=CALENDAR_RESPONSE,  # type: ignore[arg-type]
            summary="The meeting as a calendar invitation (iCalendar)")
async def meeting_calendar(request: Request, access: MeetingReader) -> Response:
    """METHOD:REQUEST with a stable UID and the meeting's sequence; METHOD:CANCEL once cancelled."""
    settings = request.app.state.settings
    return _calendar(await run_query(request.app.state.infra.engine, lambda session: service.meeting_calendar(
        session, settings=settings, access=access)))


@router.post("/received-invitations/{invitation_id}/accept", response_model=ReceivedInvitationPublic,
             summary="Accept an invitation and name who comes")
async def accept_invitation(request: Request, invitation_id: RecordId, body: AcceptInvitation,
                            access: InvitationAnswerer, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Accept; the answer and the participants (role and user) go back to the inviter, naming no child.

    An answer may be changed until the meeting begins (409 after it, or once cancelled or withdrawn).
    """
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, status_code=200, action=lambda session: service.answer_invitation(
            session, settings=settings, principal=access.principal, invitation_id=invitation_id, data=body),
    )


@router.post("/received-invitations/{invitation_id}/decline", response_model=ReceivedInvitationPublic,
             summary="Decline an invitation with a reason")
async def decline_invitation(request: Request, invitation_id: RecordId, body: DeclineInvitation,
                             access: InvitationAnswerer, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Decline; the reason goes back to the inviter and is screened (422 if it identifies the child)."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, status_code=200, action=lambda session: service.answer_invitation(
            session, settings=settings, principal=access.principal, invitation_id=invitation_id, data=body),
    )


@router.get("/received-invitations/{invitation_id}/calendar.ics", response_class=Response,
            responses=CALENDAR_RESPONSE,  # type: ignore[arg-type]
            summary="A received invitation's meeting as a calendar invitation (iCalendar)")
async def received_invitation_calendar(request: Request, access: InvitationCalendarReader) -> Response:
    """For the receiving coordinators and integrations and the participants named; the inviter's UID."""
    settings = request.app.state.settings
    return _calendar(await run_query(request.app.state.infra.engine,
                                     lambda session: service.received_invitation_calendar(
                                         session, settings=settings, access=access)))


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
