"""Meetings' domain operations: call a samverkansmöte, invite other organisations under consent, ask
anonymously, appoint the samordningsperson, keep the plan and book the uppföljning; answer a received
invitation, move or cancel a meeting for everyone invited, and hand out both sides' calendar files."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.cases import CaseRecord, case_in_body, get_case
from tillsammans_common.db import utcnow
from tillsammans_common.errors import Conflict, Forbidden, InvalidField, NotFound
from tillsammans_common.events import Envelope
from tillsammans_common.events.consent import ConsentWithdrawn
from tillsammans_common.events.intake import ConcernRaised
from tillsammans_common.events.mapping import MappingCompleted
from tillsammans_common.events.meetings import (
    PURPOSE_BY_KIND,
    ChildIdentity,
    ConsultationRequested,
    CoordinatorAppointed,
    FollowUpBooked,
    InvitationReceived,
    InvitationReplied,
    InvitationSent,
    MeetingCalled,
    MeetingCancelled,
    MeetingRescheduled,
    Participant,
    PlanItemAdded,
    WithdrawalApplied,
)
from tillsammans_common.messaging.egress import (
    Disclosure,
    disclose,
    prepare_disclosure,
    require_permit,
    send_anonymous,
    send_receipt,
)
from tillsammans_common.messaging.gate import DisclosureVerdict
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.messaging.refusals import Reject, Retry
from tillsammans_common.personnummer import child_key, normalize, pair_key
from tillsammans_common.screen import screen_fields
from tillsammans_common.settings import ServiceSettings
from tillsammans_common.timestamps import as_utc
from tillsammans_common.wheel import all_area_codes
from tillsammans_meetings import calendar, sip
from tillsammans_meetings.models import (
    OTHERS,
    AcceptInvitation,
    Answer,
    CancelMeeting,
    ChildOut,
    ChildRecord,
    CompletedMapping,
    Consultation,
    ConsultationCreate,
    CoordinatorPut,
    DeclineInvitation,
    DisclosureReview,
    FollowUpCreate,
    Invitation,
    InvitationPublic,
    InvitationStatus,
    Meeting,
    MeetingCreate,
    MeetingKind,
    MeetingPublic,
    MeetingStatus,
    MeetingSuggestion,
    PlanItem,
    PlanItemCreate,
    PlanItemPublic,
    ReceivedConsultation,
    ReceivedInvitation,
    ReceivedInvitationPublic,
    ReceivedInvitationSummary,
    ReceivedStatus,
    ReviewCreate,
    ReviewDecision,
    ScheduleMeeting,
)

PURPOSE = "coordination_meeting"
CONSULTATION_PURPOSE = "anonymous_consultation"


def _invited_orgs(settings: ServiceSettings, orgs: list[str], *, field: str) -> list[str]:
    """The invited organisations in order, once each; each must be another member of the federation."""
    for org in orgs:
        if org == settings.org or org not in settings.peers:
            raise InvalidField(field, f"'{org}' is not another organisation of the federation")
    return list(dict.fromkeys(orgs))


def _known_areas(areas: list[str], *, field: str) -> list[str]:
    unknown = sorted(set(areas) - all_area_codes())
    if unknown:
        raise InvalidField(field, f"unknown wheel area(s): {', '.join(unknown)}")
    return list(dict.fromkeys(areas))


def purpose_of(kind: MeetingKind) -> str:
    """The consent purpose a meeting of this kind, and every invitation to it, rests on."""
    return PURPOSE_BY_KIND[kind.value]


@dataclass(frozen=True)
class CallTerms:
    """A call for a meeting as checked: who may, in which case, whom to invite about which areas, from which mapping."""

    access: policy.Access
    case: CaseRecord
    orgs: list[str]
    areas: list[str]
    mapping_id: str | None
    roles: dict[str, list[str]]
    """The roles the mapping suggests at each invited organisation (none for one it did not suggest)."""


@dataclass(frozen=True)
class MeetingPlan:
    """A meeting about to be called: its ids and one disclosure per invited organisation, not yet decided."""

    meeting_id: str
    orgs: list[str]
    areas: list[str]
    mapping_id: str | None
    child_key: str
    disclosures: list[Disclosure]


def plan_meeting(*, settings: ServiceSettings, principal: Principal, data: MeetingCreate,
                 terms: CallTerms) -> MeetingPlan:
    """Build a checked call's invitations, each asking for the kind's purpose, ready for the consent service."""
    orgs, areas = terms.orgs, terms.areas
    purpose = purpose_of(data.kind)
    key = child_key(data.child.personnummer, settings.child_key_secret.get_secret_value())
    meeting_id = str(uuid.uuid4())
    child = ChildIdentity(personnummer=data.child.personnummer, name=data.child.name,
                          protected_identity=data.child.protected_identity)
    # Each receiver gets the child under the key it shares with this organisation alone, and the
    # meeting's own id as subject: the case id (the caller's choice) never leaves.
    disclosures = [prepare_disclosure(InvitationSent(
        invitation_id=str(uuid.uuid4()), meeting_id=meeting_id, kind=data.kind.value, purpose=purpose,
        scheduled_at=data.scheduled_at, child_key=pair_key(data.child.personnummer, settings.pair_secret(org)),
        child=child, flagged_areas=areas, concern_summary=data.concern_summary, contact_user=principal.user,
        requested_roles=terms.roles.get(org, []),
    ), settings=settings, to_org=org, subject=meeting_id, principal=principal, child_ref=key) for org in orgs]
    return MeetingPlan(meeting_id=meeting_id, orgs=orgs, areas=areas, mapping_id=terms.mapping_id, child_key=key,
                       disclosures=disclosures)


def check_call(session: Session, *, settings: ServiceSettings, principal: Principal,
               data: MeetingCreate) -> CallTerms:
    """May the caller call this meeting in this case, about this child? 403 or 422 before anyone is asked anything.

    With ``mapping_id`` the meeting starts from that completed mapping of the case: its flagged
    areas and suggested organisations, unless the call names its own.
    """
    case = case_in_body(session, data.case_id)
    access = policy.check(principal, policy.Action.CASE_WORK, policy.Facts(case=policy.case_facts(session, case)))
    if child_key(data.child.personnummer, settings.child_key_secret.get_secret_value()) != case.child_key:
        # The meeting names its child twice (case and identity); both must be the same child.
        raise InvalidField("child.personnummer", "is not the child of this case")
    mapping = _mapping_of_case(session, data) if data.mapping_id is not None else None
    if data.invited_orgs is not None:
        orgs = _invited_orgs(settings, data.invited_orgs, field="invited_orgs")
    elif mapping is None:
        raise InvalidField("invited_orgs", "name the organisations to invite, or call the meeting from a mapping "
                                           "(mapping_id)")
    elif not mapping.suggested_orgs:
        raise InvalidField("invited_orgs", "the mapping suggests no other organisation; name the ones to invite")
    else:
        orgs = _invited_orgs(settings, mapping.suggested_orgs, field="invited_orgs")
    if data.flagged_areas is not None:
        areas = _known_areas(data.flagged_areas, field="flagged_areas")
    elif mapping is None:
        raise InvalidField("flagged_areas", "name the areas, or call the meeting from a mapping (mapping_id)")
    elif not mapping.flagged_areas:
        raise InvalidField("flagged_areas", "the mapping flagged no area; name the areas the meeting is about")
    else:
        areas = list(mapping.flagged_areas)
    return CallTerms(access=access, case=case, orgs=orgs, areas=areas, mapping_id=data.mapping_id,
                     roles=_suggested_roles(mapping))


def _suggested_roles(mapping: CompletedMapping | None) -> dict[str, list[str]]:
    """The roles a completed mapping suggests, by organisation."""
    return {item["org"]: list(item["roles"]) for item in mapping.suggestions} if mapping else {}


def _mapping_of_case(session: Session, data: MeetingCreate) -> CompletedMapping:
    """The completed mapping the call names; 422 unless it is one of this case's."""
    mapping = session.get(CompletedMapping, data.mapping_id)
    # Whether the id is unknown or another child's, the caller learns the same: nothing of the other case.
    if mapping is None or mapping.case_id != data.case_id:
        raise InvalidField("mapping_id", "is not a completed mapping of this case (an open mapping is completed "
                                         "first, and its completion takes a moment to reach meetings)")
    return mapping


def keep_completed_mapping(session: Session, *, event: MappingCompleted) -> None:
    """Keep what a completed mapping suggests, so a meeting can be called from it (applied once per event)."""
    if session.get(CompletedMapping, event.mapping_id) is not None:
        return  # a completed mapping never changes
    session.add(CompletedMapping(
        mapping_id=event.mapping_id, case_id=event.case_id, wheel_id=event.wheel_id,
        wheel_version=event.wheel_version, trappan_step=event.trappan_step, flagged_areas=list(event.flagged_areas),
        # Events from before decision 24 name only the organisations.
        suggested_orgs=list(event.suggested_orgs),
        suggestions=[suggestion.model_dump(mode="json") for suggestion in event.suggestions]))


def call_meeting(session: Session, *, settings: ServiceSettings, principal: Principal, data: MeetingCreate,
                 plan: MeetingPlan, verdicts: list[DisclosureVerdict]) -> MeetingPublic:
    """Call a samverkansmöte and invite each organisation under its consent, all or nothing.

    ``verdicts`` are the consent service's answers to ``plan``; one organisation without a covering
    consent refuses the whole call (ConsentRequired), and the caller's transaction writes nothing.
    For a child whose record (or this request) marks its identity protected, the invitations wait
    for another user's review (``review_disclosure``) and nothing is queued yet.
    """
    terms = check_call(session, settings=settings, principal=principal, data=data)
    access, case = terms.access, terms.case
    record = session.get(ChildRecord, plan.child_key)
    protected = data.child.protected_identity or case.protected_identity or (
        record is not None and record.protected_identity)
    meeting = Meeting(
        id=plan.meeting_id, case_id=data.case_id, kind=data.kind, scheduled_at=data.scheduled_at,
        status=MeetingStatus.CALLED, called_by=principal.user, child_personnummer=data.child.personnummer,
        child_name=data.child.name, protected_identity=protected, child_key=plan.child_key,
        mapping_id=plan.mapping_id, flagged_areas=plan.areas, concern_summary=data.concern_summary,
    )
    session.add(meeting)
    if protected:
        mark_protected(session, child_key=plan.child_key)
    session.flush()  # the invitations refer to it, and there is no ORM relationship to order the inserts
    for disclosure, verdict in zip(plan.disclosures, verdicts, strict=True):
        invitation = disclosure.event
        assert isinstance(invitation, InvitationSent)
        if protected:
            require_permit(disclosure, verdict)
            session.add(Invitation(id=invitation.invitation_id, meeting_id=meeting.id, to_org=disclosure.to_org,
                                   consent_id=verdict.consent_id or "", status=InvitationStatus.AWAITING_REVIEW))
            continue
        envelope = disclose(session, disclosure, verdict, settings=settings)
        # The gate only queues a message when a consent covers it, so the envelope names that consent.
        session.add(Invitation(id=invitation.invitation_id, meeting_id=meeting.id, to_org=disclosure.to_org,
                               consent_id=envelope.consentid or ""))
    record_event(session, MeetingCalled(
        meeting_id=meeting.id, case_id=meeting.case_id, kind=meeting.kind.value, scheduled_at=meeting.scheduled_at,
        invited_orgs=plan.orgs,
    ), source=settings.source, org=settings.org, subject=meeting.case_id)
    policy.audit_access(session, access, "meeting.call", purpose=purpose_of(meeting.kind), record_id=meeting.id)
    return meeting_view(session, meeting)


def mark_protected(session: Session, *, child_key: str) -> None:
    """Mark a child's identity protected in this service's copy of the record (a marking is never dropped)."""
    record = session.get(ChildRecord, child_key) or ChildRecord(child_key=child_key)
    if not record.protected_identity:
        record.protected_identity = True
        record.updated_at = utcnow()
        session.add(record)


def apply_concern_raised(session: Session, *, event: ConcernRaised) -> None:
    """Keep the child's record in step with intake, where the child first enters the organisation."""
    if event.protected_identity and event.child_key:
        mark_protected(session, child_key=event.child_key)


@dataclass(frozen=True)
class ReviewPlan:
    """A review about to be recorded, and (when approving) the invitations it would release."""

    meeting_id: str
    invitation_ids: list[str]
    disclosures: list[Disclosure]


def plan_review(session: Session, *, settings: ServiceSettings, principal: Principal, meeting_id: str,
                data: ReviewCreate) -> ReviewPlan:
    """Check that this reviewer may decide now, and rebuild the waiting invitations from the record."""
    meeting = _meeting(session, meeting_id)
    _not_cancelled(meeting)
    if principal.user == meeting.called_by:
        raise Forbidden("four eyes: a disclosure is reviewed by another user than the one who asked for it")
    waiting = _awaiting_review(session, meeting.id)
    if not meeting.protected_identity or not waiting:
        raise Conflict("no invitation of this meeting awaits review")
    if data.decision is ReviewDecision.REJECT:
        if data.note is None:
            raise InvalidField("note", "say why the disclosure is rejected")
        return ReviewPlan(meeting_id=meeting.id, invitation_ids=[i.id for i in waiting], disclosures=[])
    roles = _suggested_roles(session.get(CompletedMapping, meeting.mapping_id) if meeting.mapping_id else None)
    # The child's marking travels with it: the receiver must treat the identity as protected too.
    child = ChildIdentity(personnummer=meeting.child_personnummer, name=meeting.child_name, protected_identity=True)
    disclosures = [prepare_disclosure(InvitationSent(
        invitation_id=invitation.id, meeting_id=meeting.id, kind=meeting.kind.value,
        purpose=purpose_of(meeting.kind), scheduled_at=as_utc(meeting.scheduled_at),
        child_key=pair_key(meeting.child_personnummer, settings.pair_secret(invitation.to_org)), child=child,
        flagged_areas=list(meeting.flagged_areas), concern_summary=meeting.concern_summary,
        # Never the room: for a child with protected identity it would say where the child is (DOMAIN.md).
        contact_user=meeting.called_by, requested_roles=roles.get(invitation.to_org, []), location=None,
        sequence=meeting.sequence,
    ), settings=settings, to_org=invitation.to_org, subject=meeting.id, principal=principal,
        child_ref=meeting.child_key) for invitation in waiting]
    return ReviewPlan(meeting_id=meeting.id, invitation_ids=[i.id for i in waiting], disclosures=disclosures)


def review_disclosure(session: Session, *, settings: ServiceSettings, principal: Principal, data: ReviewCreate,
                      plan: ReviewPlan, verdicts: list[DisclosureVerdict]) -> MeetingPublic:
    """Record the review first, then queue (approve) or stop (reject) the invitations it covers."""
    meeting = _meeting(session, plan.meeting_id)
    waiting = {invitation.id: invitation for invitation in _awaiting_review(session, meeting.id)}
    if sorted(waiting) != sorted(plan.invitation_ids):
        raise Conflict("another review of this meeting came first")
    session.add(DisclosureReview(id=str(uuid.uuid4()), meeting_id=meeting.id, requested_by=meeting.called_by,
                                 reviewed_by=principal.user, decision=data.decision, note=data.note))
    session.flush()  # the review is recorded before anything is queued
    if data.decision is ReviewDecision.REJECT:
        for invitation in waiting.values():
            invitation.status = InvitationStatus.REVIEW_REJECTED
            session.add(invitation)
    else:
        meeting.manually_reviewed_by = principal.user
        session.add(meeting)
        for disclosure, verdict in zip(plan.disclosures, verdicts, strict=True):
            envelope = disclose(session, disclosure, verdict, settings=settings, protected_identity=True,
                                manually_reviewed=True)
            event = disclosure.event
            assert isinstance(event, InvitationSent)
            invitation = waiting[event.invitation_id]
            invitation.status = InvitationStatus.SENT
            invitation.consent_id = envelope.consentid or ""
            invitation.sent_at = utcnow()
            session.add(invitation)
    audit(session, principal, f"meeting.disclosure.{data.decision.value}", case_id=meeting.case_id,
          purpose=purpose_of(meeting.kind),
          record_id=meeting.id, basis="role:reviewer", protected=True)
    return meeting_view(session, meeting)


def _awaiting_review(session: Session, meeting_id: str) -> list[Invitation]:
    return list(session.exec(select(Invitation).where(
        Invitation.meeting_id == meeting_id, Invitation.status == InvitationStatus.AWAITING_REVIEW)
        .order_by(col(Invitation.to_org))).all())


def meeting_view(session: Session, meeting: Meeting) -> MeetingPublic:
    """A meeting with its invitations and plan items."""
    session.flush()
    invitations = session.exec(select(Invitation).where(Invitation.meeting_id == meeting.id)
                               .order_by(col(Invitation.to_org))).all()
    items = session.exec(select(PlanItem).where(PlanItem.meeting_id == meeting.id)
                         .order_by(col(PlanItem.created_at), col(PlanItem.id))).all()
    mapping = session.get(CompletedMapping, meeting.mapping_id) if meeting.mapping_id else None
    return MeetingPublic(
        **meeting.model_dump(exclude={"child_personnummer", "child_name", "protected_identity", "child_key"}),
        purpose=purpose_of(meeting.kind),
        suggestions=[MeetingSuggestion.model_validate(item) for item in mapping.suggestions] if mapping else [],
        child=ChildOut(personnummer=meeting.child_personnummer, name=meeting.child_name,
                       protected_identity=meeting.protected_identity),
        invitations=[InvitationPublic.model_validate(i, from_attributes=True) for i in invitations],
        plan_items=[PlanItemPublic.model_validate(i, from_attributes=True) for i in items],
    )


def _meeting(session: Session, meeting_id: str) -> Meeting:
    meeting = session.get(Meeting, meeting_id)
    if meeting is None:
        raise NotFound("no such meeting")
    return meeting


def _not_cancelled(meeting: Meeting) -> None:
    # A cancel has been sent to every invited organisation: nothing after it may contradict it.
    if meeting.status == MeetingStatus.CANCELLED:
        raise Conflict("the meeting is cancelled; it can no longer be changed")


def get_meeting_row(session: Session, access: policy.Access) -> Meeting:
    """The meeting an access was granted to (404 if it went meanwhile)."""
    return _meeting(session, access.facts.record_id or "")


def meeting_facts(session: Session, meeting_id: str) -> policy.Facts:
    """The policy's view of a meeting: the child's case, who called it and who coordinates it."""
    meeting = _meeting(session, meeting_id)
    coordinator = ((meeting.coordinator_org, meeting.coordinator_user)
                   if meeting.coordinator_org and meeting.coordinator_user else None)
    return policy.Facts(case=policy.case_facts(session, get_case(session, meeting.case_id)), record_id=meeting.id,
                        participants=frozenset({meeting.called_by}), coordinator=coordinator)


def get_meeting(session: Session, *, access: policy.Access) -> MeetingPublic:
    """Read a meeting; the read is audited."""
    meeting = _meeting(session, access.facts.record_id or "")
    policy.audit_access(session, access, "meeting.read", purpose=PURPOSE)
    return meeting_view(session, meeting)


def participants(session: Session, *, settings: ServiceSettings, meeting: Meeting) -> set[str]:
    """This organisation and every organisation whose invitation still stands under its consent."""
    invited = session.exec(select(Invitation.to_org).where(
        Invitation.meeting_id == meeting.id, Invitation.status == InvitationStatus.SENT)).all()
    return {settings.org, *invited}


def check_coordinator(data: CoordinatorPut, *, participating: set[str]) -> bool:
    """Apply the samordningsperson rules; return whether the appointment is the child's own wish.

    The child is asked first (seed 001): without a wish, the reason the child was not asked is
    recorded; a choice other than the wish needs a recorded special reason.
    """
    if data.child_wish is None and data.child_not_asked_reason is None:
        raise InvalidField("child_not_asked_reason",
                           "the child is asked first: give the child's wish or record why the child was not asked")
    if data.child_wish is not None and data.child_not_asked_reason is not None:
        raise InvalidField("child_not_asked_reason", "only when the child was not asked (child_wish is null)")
    if data.appointed.org not in participating:
        raise InvalidField("appointed.org", "must be this organisation or one invited to the meeting")
    wish = data.child_wish
    matches = wish is not None and (wish.org, wish.person) == (data.appointed.org, data.appointed.user)
    if wish is not None and not matches and data.special_reason is None:
        raise InvalidField("special_reason",
                           "the appointed coordinator is not the one the child wished for; record the special reason")
    return matches


def appoint_coordinator(session: Session, *, settings: ServiceSettings, access: policy.Access,
                        data: CoordinatorPut) -> MeetingPublic:
    """Appoint (or re-appoint) the meeting's samordningsperson."""
    meeting = _meeting(session, access.facts.record_id or "")
    _not_cancelled(meeting)
    matches = check_coordinator(data, participating=participants(session, settings=settings, meeting=meeting))
    meeting.child_wish_org = data.child_wish.org if data.child_wish else None
    meeting.child_wish_person = data.child_wish.person if data.child_wish else None
    meeting.child_not_asked_reason = data.child_not_asked_reason
    meeting.coordinator_org = data.appointed.org
    meeting.coordinator_user = data.appointed.user
    meeting.special_reason = data.special_reason
    sip.changed(meeting)
    session.add(meeting)
    record_event(session, CoordinatorAppointed(
        meeting_id=meeting.id, case_id=meeting.case_id, coordinator_org=data.appointed.org,
        matches_child_wish=matches,
    ), source=settings.source, org=settings.org, subject=meeting.case_id)
    policy.audit_access(session, access, "meeting.coordinator.appoint", purpose=PURPOSE)
    return meeting_view(session, meeting)


def add_plan_item(session: Session, *, settings: ServiceSettings, access: policy.Access,
                  data: PlanItemCreate) -> PlanItem:
    """Add an action to the plan; the responsible organisation must take part in the meeting."""
    meeting = _meeting(session, access.facts.record_id or "")
    _not_cancelled(meeting)
    if data.responsible_org == OTHERS:
        # An action by others (SoL 2 kap. 7 §): the family, a voluntary organisation... named, not an org id.
        if data.responsible_party is None:
            raise InvalidField("responsible_party", "name who does it when responsible_org is 'others'")
    elif data.responsible_org not in participants(session, settings=settings, meeting=meeting):
        raise InvalidField("responsible_org", "must be this organisation or one invited to the meeting")
    elif data.responsible_party is not None:
        raise InvalidField("responsible_party", "only for an action by others (responsible_org 'others')")
    item = PlanItem(id=str(uuid.uuid4()), meeting_id=meeting.id, action=data.action,
                    responsible_org=data.responsible_org, responsible_role=data.responsible_role, due=data.due,
                    responsible_party=data.responsible_party, responsible_person=data.responsible_person,
                    created_by=access.principal.user)
    session.add(item)
    sip.changed(meeting)
    session.add(meeting)
    record_event(session, PlanItemAdded(
        meeting_id=meeting.id, case_id=meeting.case_id, plan_item_id=item.id, responsible_org=item.responsible_org,
    ), source=settings.source, org=settings.org, subject=meeting.case_id)
    policy.audit_access(session, access, "meeting.plan_item.add", purpose=PURPOSE, record_id=item.id)
    session.flush()
    return item


def book_follow_up(session: Session, *, settings: ServiceSettings, access: policy.Access,
                   data: FollowUpCreate) -> MeetingPublic:
    """Book the uppföljning; the samordningsperson owns it, so one must be appointed first."""
    meeting = _meeting(session, access.facts.record_id or "")
    _not_cancelled(meeting)
    if meeting.coordinator_org is None:
        raise Conflict("appoint a coordinator (samordningsperson) before booking the follow-up")
    if data.follow_up_at <= as_utc(meeting.scheduled_at):
        raise InvalidField("follow_up_at", "must be after the meeting")
    meeting.follow_up_at = data.follow_up_at
    meeting.status = MeetingStatus.FOLLOW_UP_BOOKED
    # The follow-up is a meeting of its own (its own id and calendar), linked to the plan it follows up;
    # booking again moves it, and a moved follow-up is no longer overdue.
    follow_up = session.get(Meeting, meeting.follow_up_id) if meeting.follow_up_id else None
    if follow_up is None or follow_up.held_at is not None:
        follow_up = Meeting(
            id=str(uuid.uuid4()), case_id=meeting.case_id, kind=MeetingKind.FOLLOW_UP, scheduled_at=data.follow_up_at,
            called_by=access.principal.user, child_personnummer=meeting.child_personnummer,
            child_name=meeting.child_name, protected_identity=meeting.protected_identity, child_key=meeting.child_key,
            flagged_areas=list(meeting.flagged_areas), concern_summary=meeting.concern_summary,
            coordinator_org=meeting.coordinator_org, coordinator_user=meeting.coordinator_user,
            follow_up_of=meeting.id)
        meeting.follow_up_id = follow_up.id
    follow_up.scheduled_at = data.follow_up_at
    follow_up.overdue_at = None
    session.add(follow_up)
    sip.changed(meeting)
    session.add(meeting)
    record_event(session, FollowUpBooked(meeting_id=meeting.id, case_id=meeting.case_id,
                                         follow_up_at=data.follow_up_at),
                 source=settings.source, org=settings.org, subject=meeting.case_id)
    policy.audit_access(session, access, "meeting.follow_up.book", purpose=PURPOSE)
    return meeting_view(session, meeting)


def request_consultation(session: Session, *, settings: ServiceSettings, principal: Principal,
                         data: ConsultationCreate) -> Consultation:
    """Ask other organisations anonymously, before (or without) consent."""
    if data.case_id is not None:
        # Naming a case links the question to a child: only for those who work on that case.
        case = case_in_body(session, data.case_id)
        policy.check(principal, policy.Action.CASE_WORK, policy.Facts(case=policy.case_facts(session, case)))
    orgs = _invited_orgs(settings, data.invited_orgs, field="invited_orgs")
    areas = _known_areas(data.wheel_areas, field="wheel_areas")
    consultation = Consultation(id=str(uuid.uuid4()), invited_orgs=orgs, age_band=data.age_band, wheel_areas=areas,
                                question=data.question, proposed_at=data.proposed_at, case_id=data.case_id,
                                requested_by=principal.user)
    # A consultation about a case of ours is screened against that child's name as well.
    names = session.exec(select(Meeting.child_name).where(Meeting.case_id == data.case_id).distinct()).all() \
        if data.case_id else []
    session.add(consultation)
    event = ConsultationRequested(consultation_id=consultation.id, age_band=data.age_band.value, wheel_areas=areas,
                                  question=data.question, proposed_at=data.proposed_at)
    for org in orgs:
        # The subject is the consultation itself: a case id would let receivers link it to a child.
        send_anonymous(session, event, settings=settings, to_org=org, subject=consultation.id, names=names)
    audit(session, principal, "consultation.request", purpose=CONSULTATION_PURPOSE)
    session.flush()
    return consultation


def identity_matches_key(event: InvitationSent, *, pair_secret: str) -> bool:
    """Whether the child in an invitation is the child its consent was checked for (the pair's child key)."""
    expected = pair_key(normalize(event.child.personnummer), pair_secret)
    return hmac.compare_digest(expected, event.child_key)


def receive_invitation(session: Session, *, settings: ServiceSettings, envelope: Envelope,
                       event: InvitationSent) -> None:
    """Store an invitation from another organisation (applied once per event by the consumer)."""
    if session.get(ReceivedInvitation, event.invitation_id) is not None:
        return
    session.add(ReceivedInvitation(
        # No case of the sender's crosses; the column is for linking to a case of this organisation's own.
        id=event.invitation_id, from_org=envelope.source_org, meeting_id=event.meeting_id, case_id="",
        consent_id=envelope.consentid or "", kind=event.kind, scheduled_at=as_utc(event.scheduled_at),
        child_personnummer=normalize(event.child.personnummer), child_name=event.child.name,
        protected_identity=event.child.protected_identity, child_key=event.child_key,
        flagged_areas=list(event.flagged_areas), concern_summary=event.concern_summary,
        contact_user=event.contact_user, requested_roles=list(event.requested_roles), location=event.location,
        sequence=event.sequence,
    ))
    record_event(session, InvitationReceived(invitation_id=event.invitation_id, meeting_id=event.meeting_id,
                                             from_org=envelope.source_org),
                 source=settings.source, org=settings.org, subject=envelope.subject)


def receive_consultation(session: Session, *, envelope: Envelope, event: ConsultationRequested) -> None:
    """Store an anonymous consultation from another organisation."""
    if session.get(ReceivedConsultation, event.consultation_id) is not None:
        return
    session.add(ReceivedConsultation(id=event.consultation_id, from_org=envelope.source_org, age_band=event.age_band,
                                     wheel_areas=list(event.wheel_areas), question=event.question,
                                     proposed_at=as_utc(event.proposed_at) if event.proposed_at else None))


def apply_withdrawal(session: Session, *, settings: ServiceSettings, event: ConsentWithdrawn) -> None:
    """A consent was withdrawn: forget what was received under it, or mark what was sent (with the replica update).

    Received invitations and plans keep only the fact that they arrived and when (public records are archived),
    never the child's identity, key or the concern's free text; the discloser gets a receipt.
    """
    if event.disclosing_org == settings.org:
        sent = session.exec(select(Invitation).where(Invitation.consent_id == event.consent_id,
                                                     Invitation.status == InvitationStatus.SENT)).all()
        for sent_invitation in sent:
            sent_invitation.status = InvitationStatus.CONSENT_WITHDRAWN
            session.add(sent_invitation)
        sip.mark_shares_withdrawn(session, consent_id=event.consent_id, child_key=event.child_key)
        return
    received = session.exec(select(ReceivedInvitation).where(
        ReceivedInvitation.consent_id == event.consent_id, ReceivedInvitation.from_org == event.disclosing_org)).all()
    plans = sip.purge_received_plans(session, consent_id=event.consent_id, disclosing_org=event.disclosing_org,
                                     withdrawn_at=event.withdrawn_at)
    for invitation in received:
        invitation.status = ReceivedStatus.WITHDRAWN
        invitation.withdrawn_at = invitation.withdrawn_at or event.withdrawn_at
        invitation.child_personnummer = invitation.child_name = invitation.child_key = ""
        invitation.concern_summary = ""
        invitation.flagged_areas = []
        invitation.protected_identity = False
        session.add(invitation)
    send_receipt(session, WithdrawalApplied(
        consent_id=event.consent_id, disclosing_org=event.disclosing_org, receiving_org=settings.org,
        purged_records=len(received) + plans, purged_at=utcnow(),
    ), settings=settings, to_org=event.disclosing_org, subject=event.consent_id)


def list_received_invitations(session: Session, *, principal: Principal) -> list[ReceivedInvitationSummary]:
    """Invitations from other organisations, newest first, without identities; each case listed is audited."""
    rows = session.exec(select(ReceivedInvitation).order_by(col(ReceivedInvitation.received_at).desc())).all()
    for row in rows:
        audit(session, principal, "received_invitation.list", case_id=row.case_id or None, purpose=PURPOSE,
              record_id=row.id, basis="role:" + principal.role.value, protected=row.protected_identity)
    if not rows:
        audit(session, principal, "received_invitation.list", purpose=PURPOSE)
    return [ReceivedInvitationSummary.model_validate(row, from_attributes=True) for row in rows]


def get_received_invitation(session: Session, *, principal: Principal, invitation_id: str) -> ReceivedInvitationPublic:
    """One received invitation; after withdrawal only the fact that it arrived, and when, remains."""
    row = session.get(ReceivedInvitation, invitation_id)
    if row is None:
        raise NotFound("no such invitation")
    audit(session, principal, "received_invitation.read", case_id=row.case_id or None, purpose=PURPOSE,
          record_id=row.id, basis="role:" + principal.role.value, protected=row.protected_identity)
    return _received_view(row)


def list_received_consultations(session: Session, *, principal: Principal) -> list[ReceivedConsultation]:
    """Anonymous consultations from other organisations, newest first."""
    rows = session.exec(select(ReceivedConsultation).order_by(col(ReceivedConsultation.received_at).desc())).all()
    audit(session, principal, "received_consultation.list", purpose=CONSULTATION_PURPOSE)
    return list(rows)


# --- invitations both sides run: answers, reschedules, cancels, calendars ---------------------------


def _sent_invitations(session: Session, meeting_id: str) -> list[Invitation]:
    """The invitations of a meeting that reached their organisation and still stand under their consent."""
    return list(session.exec(select(Invitation).where(
        Invitation.meeting_id == meeting_id, Invitation.status == InvitationStatus.SENT)
        .order_by(col(Invitation.to_org))).all())


def reschedule_meeting(session: Session, *, settings: ServiceSettings, access: policy.Access,
                       data: ScheduleMeeting) -> MeetingPublic:
    """Move a meeting (time and room) and tell every invited organisation, with the next sequence.

    The same time and room again changes nothing and sends nothing (a PUT may be repeated).
    """
    meeting = _meeting(session, access.facts.record_id or "")
    _not_cancelled(meeting)
    if data.scheduled_at <= utcnow():
        raise InvalidField("scheduled_at", "must be in the future")
    if meeting.follow_up_at is not None and data.scheduled_at >= as_utc(meeting.follow_up_at):
        raise InvalidField("scheduled_at", "must be before the booked follow-up")
    if as_utc(meeting.scheduled_at) == data.scheduled_at and meeting.location == data.location:
        policy.audit_access(session, access, "meeting.schedule", purpose=PURPOSE)
        return meeting_view(session, meeting)
    # The room goes into this organisation's calendar files as well as to the invited organisations (for a
    # protected child only the former), so it is screened here, for both, and not only as a message leaves.
    screen_fields({"location": data.location}, names=[meeting.child_name])
    meeting.scheduled_at = data.scheduled_at
    meeting.location = data.location
    meeting.sequence += 1
    session.add(meeting)
    for invitation in _sent_invitations(session, meeting.id):
        send_receipt(session, MeetingRescheduled(
            invitation_id=invitation.id, meeting_id=meeting.id, inviting_org=settings.org,
            invited_org=invitation.to_org, sequence=meeting.sequence, scheduled_at=data.scheduled_at,
            location=_room_that_may_leave(meeting),
        ), settings=settings, to_org=invitation.to_org, subject=meeting.id)
    policy.audit_access(session, access, "meeting.schedule", purpose=PURPOSE)
    return meeting_view(session, meeting)


def _room_that_may_leave(meeting: Meeting) -> str | None:
    """The room as it may appear outside this service: never for a child with protected identity.

    The room names a school or unit, which for a protected child says where the child is; it stays
    in the meeting record, and its participants learn it another way.
    """
    return None if meeting.protected_identity else meeting.location


def cancel_meeting(session: Session, *, settings: ServiceSettings, access: policy.Access,
                   data: CancelMeeting) -> MeetingPublic:
    """Cancel a meeting and tell every invited organisation; the reason stays here.

    What the invited organisations hold stays under the consent it arrived with: a cancel forgets
    nothing there (the consent rules decide that).
    """
    meeting = _meeting(session, access.facts.record_id or "")
    _not_cancelled(meeting)
    meeting.status = MeetingStatus.CANCELLED
    meeting.cancelled_at = utcnow()
    meeting.cancel_reason = data.reason
    meeting.sequence += 1
    session.add(meeting)
    for invitation in _sent_invitations(session, meeting.id):
        send_receipt(session, MeetingCancelled(
            invitation_id=invitation.id, meeting_id=meeting.id, inviting_org=settings.org,
            invited_org=invitation.to_org, sequence=meeting.sequence, cancelled_at=meeting.cancelled_at,
        ), settings=settings, to_org=invitation.to_org, subject=meeting.id)
    policy.audit_access(session, access, "meeting.cancel", purpose=PURPOSE)
    return meeting_view(session, meeting)


def apply_reply(session: Session, *, envelope: Envelope, event: InvitationReplied) -> None:
    """Keep an invited organisation's answer on the invitation it answers; an older answer is ignored.

    Only the organisation the invitation was sent to may answer it: a reply from any other member
    (which the broker lets write to our inbox, about an invitation it may have guessed) is refused.
    """
    invitation = session.get(Invitation, event.invitation_id)
    if invitation is None or invitation.meeting_id != event.meeting_id:
        raise Reject("no such invitation of this meeting", code="unknown_invitation")
    if invitation.to_org != envelope.source_org:
        raise Reject("the invitation was not sent to the replying organisation", code="not_invited")
    if event.sequence <= invitation.reply_sequence:
        return  # an answer that was already replaced by a later one
    invitation.answer = Answer(event.answer)
    invitation.answer_reason = event.reason
    invitation.participants = [participant.model_dump() for participant in event.participants]
    invitation.answered_at = event.replied_at
    invitation.reply_sequence = event.sequence
    session.add(invitation)


def apply_meeting_change(session: Session, *, envelope: Envelope,
                         event: MeetingRescheduled | MeetingCancelled) -> None:
    """Apply the inviter's reschedule or cancel to the invitation it concerns, in the inviter's order.

    A change with a sequence no higher than the one applied is stale and ignored; a change from an
    organisation that did not send the invitation is refused.
    """
    row = session.get(ReceivedInvitation, event.invitation_id)
    if row is None:
        # The invitation itself may still be on its way (or waiting for its consent): try again later.
        raise Retry("the invitation has not arrived here", code="invitation_not_here")
    if row.from_org != envelope.source_org or row.meeting_id != event.meeting_id:
        raise Reject("the sender did not send this invitation", code="not_the_inviter")
    if event.sequence <= row.sequence:
        return
    row.sequence = event.sequence
    if isinstance(event, MeetingRescheduled):
        row.scheduled_at = as_utc(event.scheduled_at)
        row.location = event.location
    else:
        row.cancelled_at = as_utc(event.cancelled_at)
    session.add(row)


def answer_invitation(session: Session, *, settings: ServiceSettings, principal: Principal, invitation_id: str,
                      data: AcceptInvitation | DeclineInvitation) -> ReceivedInvitationPublic:
    """Accept (naming who comes) or decline (with a reason) an invitation, and send the answer back.

    An answer may be changed until the meeting begins; each change goes back with the next sequence.
    The same answer again sends nothing. 409 once the meeting is cancelled, has begun, or the
    consent behind the invitation was withdrawn.
    """
    row = session.get(ReceivedInvitation, invitation_id)
    if row is None:
        raise NotFound("no such invitation")
    if row.status == ReceivedStatus.WITHDRAWN:
        raise Conflict("the consent behind this invitation was withdrawn; it can no longer be answered")
    if row.cancelled_at is not None:
        raise Conflict("the meeting was cancelled")
    if as_utc(row.scheduled_at) <= utcnow():
        raise Conflict("the meeting has begun; an answer can be given or changed only before it")
    if isinstance(data, AcceptInvitation):
        answer, reason = Answer.ACCEPTED, None
        people = [{"role": p.role, "user": p.user} for p in data.participants]
        users = [p["user"] for p in people]
        if len(set(users)) != len(users):
            raise InvalidField("participants", "name each user once")
    else:
        answer, reason, people = Answer.DECLINED, data.reason, []
    audit(session, principal, f"received_invitation.{answer.value}", case_id=row.case_id or None, purpose=PURPOSE,
          record_id=row.id, basis="role:" + principal.role.value, protected=row.protected_identity)
    if (row.answer, row.answer_reason, row.participants) != (answer, reason, people):
        row.answer, row.answer_reason, row.participants = answer, reason, people
        row.answered_at = utcnow()
        row.answered_by = principal.user
        row.reply_sequence += 1
        session.add(row)
        # The reason leaves without consent: screened on the way out (422 naming it, and nothing is written)
        # so that it cannot identify the child in any form.
        send_anonymous(session, InvitationReplied(
            invitation_id=row.id, meeting_id=row.meeting_id, inviting_org=row.from_org, replying_org=settings.org,
            answer=answer.value, reason=reason, participants=[Participant(**p) for p in people],
            sequence=row.reply_sequence, replied_at=row.answered_at,
        ), settings=settings, to_org=row.from_org, subject=row.meeting_id, names=[row.child_name])
    return _received_view(row)


def _received_view(row: ReceivedInvitation) -> ReceivedInvitationPublic:
    shown = row.status == ReceivedStatus.RECEIVED
    summary = ReceivedInvitationSummary.model_validate(row, from_attributes=True)
    return ReceivedInvitationPublic(
        **summary.model_dump(),
        child=ChildOut(personnummer=row.child_personnummer, name=row.child_name,
                       protected_identity=row.protected_identity) if shown else None,
        concern_summary=row.concern_summary if shown else None,
    )


def received_invitation_facts(session: Session, invitation_id: str) -> policy.Facts:
    """The policy's view of a received invitation: received here, and the people this organisation sends."""
    row = session.get(ReceivedInvitation, invitation_id)
    if row is None:
        raise NotFound("no such invitation")
    people = {participant["user"] for participant in row.participants}
    return policy.Facts(record_id=row.id, participants=frozenset(people), received_here=True)


def _organisation_name(settings: ServiceSettings, org: str) -> str:
    member = settings.federation.get(org)
    return member.name if member is not None else org


def meeting_calendar(session: Session, *, settings: ServiceSettings, access: policy.Access) -> bytes:
    """The meeting as an iCalendar object for this organisation's people (no personal data in it)."""
    meeting = _meeting(session, access.facts.record_id or "")
    policy.audit_access(session, access, "meeting.calendar", purpose=PURPOSE)
    return calendar.build(calendar.CalendarEntry(
        uid=calendar.uid_of(meeting.id), kind=meeting.kind.value, start=meeting.scheduled_at,
        organizer_org=settings.org, organizer_name=_organisation_name(settings, settings.org),
        sequence=meeting.sequence, location=_room_that_may_leave(meeting),
        cancelled=meeting.status == MeetingStatus.CANCELLED,
    ), stamp=utcnow())


def received_invitation_calendar(session: Session, *, settings: ServiceSettings, access: policy.Access) -> bytes:
    """A received invitation's meeting as an iCalendar object for the invited organisation's people.

    The same UID as the inviter's file (both come from the inviter's meeting id). Cancelled, or no
    longer ours because its consent was withdrawn: METHOD:CANCEL.
    """
    row = session.get(ReceivedInvitation, access.facts.record_id or "")
    if row is None:
        raise NotFound("no such invitation")
    audit(session, access.principal, "received_invitation.calendar", case_id=row.case_id or None, purpose=PURPOSE,
          record_id=row.id, basis=access.basis, protected=row.protected_identity)
    off = row.cancelled_at is not None or row.status == ReceivedStatus.WITHDRAWN
    return calendar.build(calendar.CalendarEntry(
        uid=calendar.uid_of(row.meeting_id), kind=row.kind, start=row.scheduled_at, organizer_org=row.from_org,
        organizer_name=_organisation_name(settings, row.from_org), sequence=row.sequence,
        location=None if row.protected_identity else row.location,
        cancelled=off,
    ), stamp=utcnow())
