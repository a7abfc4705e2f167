"""Events produced by meetings, including the cross-organisation invitation and consultation."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tillsammans_common.events import Event
from tillsammans_common.wheel import AreaCode, RoleCode


class ChildIdentity(BaseModel):
    """Who the child is; only ever inside an organisation or under a consent."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    personnummer: str
    name: str
    protected_identity: bool = False


PURPOSE_BY_KIND: dict[str, str] = {
    "samverkansmote": "coordination_meeting",
    "sip": "sip",
    "follow_up": "follow_up",
}
"""The one consent purpose an invitation to each kind of meeting rests on (decision 24): a SIP meeting's
invitation needs a consent for SIP, never merely one for a samverkansmöte."""


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
    invitation_id: str
    meeting_id: str
    kind: str
    purpose: str
    """The consent purpose the invitation rests on: always the one its kind needs (``PURPOSE_BY_KIND``).
    Absent in invitations from before decision 24; it is then read as the kind's, never as a weaker one."""
    scheduled_at: datetime
    child_key: str
    """The pair key of the sender and this receiver (only the two can compute it)."""
    child: ChildIdentity
    flagged_areas: list[AreaCode]
    concern_summary: str
    contact_user: str
    requested_roles: list[RoleCode] = []
    """Roles the meeting's mapping suggests at this receiver (e.g. ``bup``): whom it is asked to send. Empty for a
    meeting called without a mapping, and in invitations from before decision 24."""
    location: str | None = None
    """The room, when one is booked (screened: no identity)."""
    sequence: int = 0
    """The meeting's change count when this was sent; later reschedules and a cancel carry higher ones."""

    @model_validator(mode="before")
    @classmethod
    def _purpose_of_an_older_sender(cls, data: Any) -> Any:
        if isinstance(data, dict) and "purpose" not in data and isinstance(data.get("kind"), str):
            return {**data, "purpose": PURPOSE_BY_KIND.get(data["kind"], "")}
        return data

    @model_validator(mode="after")
    def _purpose_fits_the_kind(self) -> InvitationSent:
        # The purpose decides which consent covers the message, here and at the receiver: a sender must
        # not be able to send a SIP invitation under a consent given for something else.
        if self.kind not in PURPOSE_BY_KIND:
            raise ValueError(f"kind must be one of {', '.join(PURPOSE_BY_KIND)}")
        if self.purpose != PURPOSE_BY_KIND[self.kind]:
            raise ValueError(f"an invitation to a {self.kind} meeting rests on purpose {PURPOSE_BY_KIND[self.kind]}")
        return self

    def disclosure_purpose(self) -> str:
        """The purpose of this invitation's meeting kind."""
        return self.purpose


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


class Participant(BaseModel):
    """Someone an invited organisation sends to the meeting: a role and a user id, never a child."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    role: str
    user: str


class InvitationReplied(Event):
    """The invited organisation's answer to an invitation: accepted with participants, or declined with a reason.

    A reply naming no child (sent with ``send_receipt``); the ids are the inviter's own.
    ``sequence`` counts the answers to this invitation, so the inviter keeps the latest one.
    """

    type: ClassVar[str] = "meetings.invitation.replied.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("replying_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("inviting_org",)
    invitation_id: str
    meeting_id: str
    inviting_org: str
    replying_org: str
    answer: Literal["accepted", "declined"]
    reason: str | None = None
    participants: list[Participant] = []
    sequence: int
    replied_at: datetime


class MeetingChange(Event):
    """A change the inviter sends each invited organisation about one invitation, naming no child.

    ``sequence`` is the meeting's change count: a receiver applies changes in order and ignores a stale one.
    """

    sender_fields: ClassVar[tuple[str, ...]] = ("inviting_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("invited_org",)
    invitation_id: str
    meeting_id: str
    inviting_org: str
    invited_org: str
    sequence: int


class MeetingRescheduled(MeetingChange):
    """The inviter moved a meeting (a new time or room)."""

    type: ClassVar[str] = "meetings.meeting.rescheduled.v1"
    scheduled_at: datetime
    location: str | None = None


class MeetingCancelled(MeetingChange):
    """The inviter cancelled a meeting; the reason stays with the inviter."""

    type: ClassVar[str] = "meetings.meeting.cancelled.v1"
    cancelled_at: datetime


class SharedPlanItem(BaseModel):
    """One action of a shared SIP: what, which principal (or others, named), which person, by when, and where it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    item_id: str
    action: str
    responsible_org: str
    """An organisation of the federation, or ``others`` (then ``responsible_party`` names who)."""
    responsible_party: str | None = None
    responsible_person: str | None = None
    due: date | None = None
    status: str


class SipPlanShared(Event):
    """The whole SIP (samordnad individuell plan) as its holder keeps it, sent to every participating organisation.

    Sent after each change with a higher ``version``; a receiver keeps only the newest. Identifies the
    child, so it crosses only under a consent for purpose ``sip``.
    """

    type: ClassVar[str] = "meetings.sip.plan.v1"
    identifying: ClassVar[bool] = True
    consent_categories: ClassVar[tuple[str, ...]] = ("identity", "concern")
    consent_purpose: ClassVar[str] = "sip"
    receiver_fields: ClassVar[tuple[str, ...]] = ("participants",)
    plan_id: str
    """The holder's meeting id."""
    version: int
    kind: str
    scheduled_at: datetime
    child_key: str
    """The pair key of the holder and this receiver."""
    child: ChildIdentity
    participants: list[str]
    coordinator_org: str | None = None
    coordinator_user: str | None = None
    overall_responsible_org: str | None = None
    follow_up_at: datetime | None = None
    items: list[SharedPlanItem]


class SipItemStatusReported(Event):
    """A participating principal moved one of its own items of another organisation's SIP on.

    Names no child: only the holder's plan and item ids. The holder applies it only when the item is
    the sender's own, then shares the plan again.
    """

    type: ClassVar[str] = "meetings.sip.item_status.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("reporting_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("holder_org",)
    plan_id: str
    item_id: str
    status: str
    reporting_org: str
    holder_org: str


class PlanItemStatusChanged(Event):
    """An item of the plan moved on (by this organisation, or as reported by its responsible principal)."""

    type: ClassVar[str] = "meetings.plan_item.status_changed.v1"
    meeting_id: str
    case_id: str
    plan_item_id: str
    responsible_org: str
    status: str


class FollowUpOverdue(Event):
    """A booked follow-up's time passed without it being held."""

    type: ClassVar[str] = "meetings.follow_up.overdue.v1"
    meeting_id: str
    follow_up_of: str | None
    case_id: str
    scheduled_at: datetime
    coordinator_org: str | None


class PlanItemOverdue(Event):
    """An action's due date passed without it being done or cancelled."""

    type: ClassVar[str] = "meetings.plan_item.overdue.v1"
    meeting_id: str
    case_id: str
    plan_item_id: str
    responsible_org: str
    due: date


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
