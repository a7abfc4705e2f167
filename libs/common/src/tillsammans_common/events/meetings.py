"""Events produced by meetings, including the cross-organisation invitation and consultation."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

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
    location: str | None = None
    """The room, when one is booked (screened: no identity)."""
    sequence: int = 0
    """The meeting's change count when this was sent; later reschedules and a cancel carry higher ones."""


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


class MeetingRescheduled(Event):
    """The inviter moved a meeting (a new time or room); sent to each invited organisation, naming no child."""

    type: ClassVar[str] = "meetings.meeting.rescheduled.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("inviting_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("invited_org",)
    invitation_id: str
    meeting_id: str
    inviting_org: str
    invited_org: str
    sequence: int
    scheduled_at: datetime
    location: str | None = None


class MeetingCancelled(Event):
    """The inviter cancelled a meeting; sent to each invited organisation, naming no child and giving no reason."""

    type: ClassVar[str] = "meetings.meeting.cancelled.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("inviting_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("invited_org",)
    invitation_id: str
    meeting_id: str
    inviting_org: str
    invited_org: str
    sequence: int
    cancelled_at: datetime
