"""Events produced by meetings, including the cross-organisation invitation and consultation."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tillsammans_common.events import Event
from tillsammans_common.wheel import AreaCode


class ChildIdentity(BaseModel):
    """Who the child is; only ever inside an organisation or under a consent."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    personnummer: str
    name: str
    protected_identity: bool = False


class MeetingCalled(Event):
    """A BBA called a coordination meeting (samverkansmöte) for a case."""

    type: ClassVar[str] = "meetings.meeting.called.v1"
    meeting_id: str
    case_id: str
    kind: str
    scheduled_at: datetime
    invited_orgs: list[str]


class InvitationSent(Event):
    """An invitation to another organisation's meetings service; identifies the child.

    Every id in it is the sender's server-generated one; the sender's case id stays at home.
    """

    type: ClassVar[str] = "meetings.invitation.sent.v1"
    identifying: ClassVar[bool] = True
    consent_categories: ClassVar[tuple[str, ...]] = ("identity", "concern", "mapping_summary")
    consent_purpose: ClassVar[str] = "coordination_meeting"
    invitation_id: str
    meeting_id: str
    kind: str
    scheduled_at: datetime
    child_key: str
    """The pair key of the sender and this receiver (only the two can compute it)."""
    child: ChildIdentity
    flagged_areas: list[AreaCode]
    concern_summary: str
    contact_user: str


class InvitationReceived(Event):
    """This organisation stored an invitation from another one."""

    type: ClassVar[str] = "meetings.invitation.received.v1"
    invitation_id: str
    meeting_id: str
    from_org: str


class ConsultationRequested(Event):
    """An anonymous consultation: age band, wheel areas and a question, never an identity."""

    type: ClassVar[str] = "meetings.consultation.requested.v1"
    consultation_id: str
    age_band: str
    wheel_areas: list[AreaCode]
    question: str
    proposed_at: datetime | None = None


class CoordinatorAppointed(Event):
    """A samordningsperson was appointed; ``matches_child_wish`` false means a reason was recorded."""

    type: ClassVar[str] = "meetings.coordinator.appointed.v1"
    meeting_id: str
    case_id: str
    coordinator_org: str
    matches_child_wish: bool


class PlanItemAdded(Event):
    """An action was added to the plan with the organisation responsible for it."""

    type: ClassVar[str] = "meetings.plan_item.added.v1"
    meeting_id: str
    case_id: str
    plan_item_id: str
    responsible_org: str


class FollowUpBooked(Event):
    """The coordinator booked the follow-up (uppföljning)."""

    type: ClassVar[str] = "meetings.follow_up.booked.v1"
    meeting_id: str
    case_id: str
    follow_up_at: datetime


class WithdrawalApplied(Event):
    """Receipt to the discloser: this organisation removed what it held under a withdrawn consent.

    Carries no identity; the discloser shows per receiver when its receipt arrived.
    """

    type: ClassVar[str] = "meetings.withdrawal.applied.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("receiving_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("disclosing_org",)
    consent_id: str
    disclosing_org: str
    receiving_org: str
    purged_records: int
    purged_at: datetime


# Bounds of what another organisation may send: its receiver's columns hold no more (refused, not truncated).
_Short = Annotated[str, Field(min_length=1, max_length=200)]
_OrgId = Annotated[str, Field(min_length=1, max_length=32)]


class ForumDefined(Event):
    """A recurring forum (elevhälsoteam, barnhälsogrupp) and its members; carries no child data.

    Sent anonymously (screened) to each member when the owner defines or changes it; a member keeps
    the highest ``revision`` (messages on different subjects may arrive out of order).
    """

    type: ClassVar[str] = "meetings.forum.defined.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("owner_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("member_orgs",)
    forum_id: str = Field(min_length=1, max_length=64)
    owner_org: _OrgId
    member_orgs: list[_OrgId] = Field(min_length=1, max_length=10)
    name: _Short
    kind: str = Field(max_length=32)
    rrule: str = Field(min_length=1, max_length=300)
    starts_at: datetime
    duration_minutes: int = Field(ge=15, le=480)
    location: _Short
    revision: int = Field(1, ge=1)


class ForumMembershipEnded(Event):
    """The owner took this organisation out of a forum (at ``revision``); the member forgets the forum."""

    type: ClassVar[str] = "meetings.forum.membership_ended.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("owner_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("member_org",)
    forum_id: str = Field(min_length=1, max_length=64)
    owner_org: _OrgId
    member_org: _OrgId
    revision: int = Field(ge=1)


class AgendaItemPlaced(Event):
    """An anonymous consultation on the agenda of one occurrence of a forum: no identity, only what is needed."""

    type: ClassVar[str] = "meetings.agenda_item.placed.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("owner_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("member_orgs",)
    agenda_item_id: str = Field(min_length=1, max_length=64)
    forum_id: str = Field(min_length=1, max_length=64)
    occurrence_date: date
    owner_org: _OrgId
    member_orgs: list[_OrgId] = Field(min_length=1, max_length=10)
    consultation_id: str = Field(min_length=1, max_length=64)
    age_band: str = Field(min_length=1, max_length=8)
    wheel_areas: list[AreaCode]
    question: str = Field(min_length=1, max_length=1000)


class ConsultationAnswered(Event):
    """An organisation's answer to an anonymous consultation it was asked: advice, or "we can help"."""

    type: ClassVar[str] = "meetings.consultation.answered.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("answering_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("asking_org",)
    answer_id: str = Field(min_length=1, max_length=64)
    consultation_id: str = Field(min_length=1, max_length=64)
    answering_org: _OrgId
    asking_org: _OrgId
    kind: str = Field(max_length=32)
    text: str = Field(min_length=1, max_length=2000)
    answered_at: datetime
