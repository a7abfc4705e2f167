"""Meetings' tables and API shapes."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime, Index, Integer, UniqueConstraint
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel

from tillsammans_common.db import utcnow
from tillsammans_common.personnummer import Personnummer
from tillsammans_common.settings import ORG_ID
from tillsammans_common.timestamps import UtcDatetime, UtcInput
from tillsammans_common.wheel import AreaCode

OrgId = Annotated[str, StringConstraints(pattern=ORG_ID.pattern)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
UserId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
# A participant's role as the invited organisation names it ("skolkurator", "BUP-läkare"): words, no digits,
# so it can hold no identity number.
ParticipantRole = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                                   pattern=r"^[^\W\d_]+([ .-][^\W\d_]+)*$")]
Location = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _enum_column(enum: type[StrEnum], *, nullable: bool = False) -> Column[Any]:
    # Store the values ("withdrawn"), not the member names, so the rows read the same as the API.
    return Column(SAEnum(enum, values_callable=lambda members: [m.value for m in members], native_enum=False,
                         length=32), nullable=nullable)


class MeetingKind(StrEnum):
    """What kind of meeting: a samverkansmöte, a SIP meeting or an uppföljning."""

    SAMVERKANSMOTE = "samverkansmote"
    SIP = "sip"
    FOLLOW_UP = "follow_up"


class MeetingStatus(StrEnum):
    """Where a meeting is."""

    CALLED = "called"
    FOLLOW_UP_BOOKED = "follow_up_booked"
    CANCELLED = "cancelled"


class InvitationStatus(StrEnum):
    """State of an invitation this organisation sent (or, for a protected child, would send after review)."""

    AWAITING_REVIEW = "awaiting_review"
    SENT = "sent"
    REVIEW_REJECTED = "review_rejected"
    CONSENT_WITHDRAWN = "consent_withdrawn"


class Answer(StrEnum):
    """An invited organisation's answer to an invitation."""

    ACCEPTED = "accepted"
    DECLINED = "declined"


class ReviewDecision(StrEnum):
    """A reviewer's answer to a disclosure about a child with protected identity."""

    APPROVE = "approve"
    REJECT = "reject"


class ReceivedStatus(StrEnum):
    """State of an invitation received from another organisation."""

    RECEIVED = "received"
    WITHDRAWN = "withdrawn"


class PlanItemStatus(StrEnum):
    """Where an action of the plan is: planned, in progress, done or cancelled."""

    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"


ITEM_TRANSITIONS: dict[PlanItemStatus, frozenset[PlanItemStatus]] = {
    PlanItemStatus.PLANNED: frozenset({PlanItemStatus.IN_PROGRESS, PlanItemStatus.DONE, PlanItemStatus.CANCELLED}),
    PlanItemStatus.IN_PROGRESS: frozenset({PlanItemStatus.DONE, PlanItemStatus.CANCELLED}),
    PlanItemStatus.DONE: frozenset(),
    PlanItemStatus.CANCELLED: frozenset(),
}
"""The status an item may move to from each status; done and cancelled are final (a new item is added instead)."""

CLOSED_ITEM_STATUSES = frozenset({PlanItemStatus.DONE, PlanItemStatus.CANCELLED})

OTHERS = "others"
"""The responsible principal of an action by others than the participating organisations (the family, a
voluntary organisation): named by ``responsible_party``."""


class AgeBand(StrEnum):
    """The only thing an anonymous consultation says about the child's age."""

    AGE_0_5 = "0-5"
    AGE_6_9 = "6-9"
    AGE_10_12 = "10-12"
    AGE_13_15 = "13-15"
    AGE_16_18 = "16-18"


# --- tables -----------------------------------------------------------------------------------


class Meeting(SQLModel, table=True):
    """A samverkansmöte (or SIP meeting) this organisation called; the child's identity is its own data."""

    # The scheduler looks for follow-ups and SIPs by kind every pass: an index, not a read of every meeting.
    __table_args__ = (Index("ix_meeting_kind", "kind"),)

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, max_length=64)
    kind: MeetingKind = Field(sa_column=_enum_column(MeetingKind))
    scheduled_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: MeetingStatus = Field(default=MeetingStatus.CALLED, sa_column=_enum_column(MeetingStatus))
    called_by: str = Field(max_length=128)
    child_personnummer: str = Field(index=True, max_length=12)
    child_name: str = Field(max_length=200)
    protected_identity: bool = False
    child_key: str = Field(index=True, max_length=64)
    manually_reviewed_by: str | None = Field(default=None, max_length=128)
    mapping_id: str | None = Field(default=None, max_length=64,
                                   description="The completed mapping the meeting was called from, if any.")
    flagged_areas: list[str] = Field(sa_column=Column(JSON, nullable=False))
    concern_summary: str = Field(max_length=2000)
    child_wish_org: str | None = Field(default=None, max_length=32)
    child_wish_person: str | None = Field(default=None, max_length=128)
    child_not_asked_reason: str | None = Field(default=None, max_length=1000)
    coordinator_org: str | None = Field(default=None, max_length=32)
    coordinator_user: str | None = Field(default=None, max_length=128)
    special_reason: str | None = Field(default=None, max_length=1000)
    follow_up_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    location: str | None = Field(default=None, max_length=200)
    sequence: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"), description=(
        "Counts the changes sent to the invited organisations (reschedules, the cancel): iCalendar's SEQUENCE."))
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    cancel_reason: str | None = Field(default=None, max_length=1000)
    overall_responsible_org: str | None = Field(default=None, max_length=32, description=(
        "The principal with overall responsibility for the SIP (SoL 2 kap. 7 §, HSL 16 kap. 4 §)."))
    plan_version: int = Field(default=0, description="Raised by every change of the plan; receivers keep the newest.")
    plan_shared_version: int = Field(default=0, description="The plan version last put to the participants.")
    plan_shares: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    follow_up_of: str | None = Field(default=None, index=True, max_length=64, description=(
        "For a follow-up (kind follow_up): the meeting whose plan it follows up."))
    follow_up_id: str | None = Field(default=None, max_length=64, description="The follow-up meeting booked for it.")
    held_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    overdue_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class Invitation(SQLModel, table=True):
    """An invitation this organisation sent to another one, and the consent it was sent under."""

    __table_args__ = (UniqueConstraint("meeting_id", "to_org", name="uq_invitation_meeting_org"),)

    id: str = Field(primary_key=True, max_length=64)
    meeting_id: str = Field(foreign_key="meeting.id", index=True, max_length=64)
    to_org: str = Field(max_length=32)
    consent_id: str = Field(index=True, max_length=64)
    status: InvitationStatus = Field(default=InvitationStatus.SENT, sa_column=_enum_column(InvitationStatus))
    sent_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    answer: Answer | None = Field(default=None, sa_column=_enum_column(Answer, nullable=True))
    answer_reason: str | None = Field(default=None, max_length=1000)
    participants: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False,
                                                                                      server_default="[]"))
    answered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    reply_sequence: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class CompletedMapping(SQLModel, table=True):
    """What this organisation's mapping service announced of a completed mapping: the areas and whom they call for.

    Fed by the internal ``MappingCompleted``; a meeting called from the mapping starts from it, so
    nobody retypes the areas or the organisations.
    """

    __tablename__ = "completed_mapping"

    mapping_id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, max_length=64)
    wheel_id: str = Field(max_length=64)
    wheel_version: int
    trappan_step: int
    flagged_areas: list[str] = Field(sa_column=Column(JSON, nullable=False))
    suggested_orgs: list[str] = Field(sa_column=Column(JSON, nullable=False))
    suggestions: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ChildRecord(SQLModel, table=True):
    """What this service knows of a child from its organisation's record: whether its identity is protected.

    Fed by intake's events (where the child first enters); a marking is never dropped by a request.
    """

    __tablename__ = "child_record"

    child_key: str = Field(primary_key=True, max_length=64, description="This organisation's own key of the child.")
    protected_identity: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class DisclosureReview(SQLModel, table=True):
    """A second person's review of the invitations about a child with protected identity, before any is queued."""

    __tablename__ = "disclosure_review"

    id: str = Field(primary_key=True, max_length=64)
    meeting_id: str = Field(foreign_key="meeting.id", index=True, max_length=64)
    requested_by: str = Field(max_length=128)
    reviewed_by: str = Field(max_length=128)
    decision: ReviewDecision = Field(sa_column=_enum_column(ReviewDecision))
    note: str | None = Field(default=None, max_length=1000)
    reviewed_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class PlanItem(SQLModel, table=True):
    """One action of the plan with the organisation responsible for it (SIP: who does what)."""

    id: str = Field(primary_key=True, max_length=64)
    meeting_id: str = Field(foreign_key="meeting.id", index=True, max_length=64)
    action: str = Field(max_length=1000)
    responsible_org: str = Field(max_length=32)
    responsible_role: str | None = Field(default=None, max_length=64)
    due: date | None = Field(default=None, index=True)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    responsible_party: str | None = Field(default=None, max_length=200, description=(
        "Who, when the responsible principal is 'others' (e.g. vårdnadshavare, föreningen X)."))
    responsible_person: str | None = Field(default=None, max_length=128)
    status: PlanItemStatus = Field(default=PlanItemStatus.PLANNED, sa_column=_enum_column(PlanItemStatus))
    status_changed_by: str | None = Field(default=None, max_length=160)
    status_changed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    overdue_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class ReceivedInvitation(SQLModel, table=True):
    """An invitation from another organisation, stored here under the consent it arrived with."""

    id: str = Field(primary_key=True, max_length=64, description="The sender's invitation id.")
    from_org: str = Field(max_length=32)
    meeting_id: str = Field(index=True, max_length=64)
    case_id: str = Field(max_length=64, description=(
        "This organisation's own case the invitation belongs to, once linked; the sender's never crosses."))
    consent_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=32)
    scheduled_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    child_personnummer: str = Field(max_length=12)
    child_name: str = Field(max_length=200)
    protected_identity: bool = False
    child_key: str = Field(max_length=64)
    flagged_areas: list[str] = Field(sa_column=Column(JSON, nullable=False))
    concern_summary: str = Field(max_length=2000)
    contact_user: str = Field(max_length=128)
    requested_roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: ReceivedStatus = Field(default=ReceivedStatus.RECEIVED, sa_column=_enum_column(ReceivedStatus))
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    withdrawn_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    location: str | None = Field(default=None, max_length=200)
    sequence: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"), description=(
        "The inviter's change count last applied here; an older change is ignored."))
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    answer: Answer | None = Field(default=None, sa_column=_enum_column(Answer, nullable=True))
    answer_reason: str | None = Field(default=None, max_length=1000)
    participants: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False,
                                                                                      server_default="[]"))
    answered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    answered_by: str | None = Field(default=None, max_length=128)
    reply_sequence: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class ReceivedPlan(SQLModel, table=True):
    """A SIP another organisation holds and shared here under a consent for purpose sip (its newest version)."""

    __tablename__ = "received_plan"

    id: str = Field(primary_key=True, max_length=64, description="The owner's meeting id (the plan's id).")
    from_org: str = Field(max_length=32)
    consent_id: str = Field(index=True, max_length=64)
    version: int
    kind: str = Field(max_length=32)
    scheduled_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    child_personnummer: str = Field(max_length=12)
    child_name: str = Field(max_length=200)
    protected_identity: bool = False
    child_key: str = Field(max_length=64)
    coordinator_org: str | None = Field(default=None, max_length=32)
    coordinator_user: str | None = Field(default=None, max_length=128)
    overall_responsible_org: str | None = Field(default=None, max_length=32)
    follow_up_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    items: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    status: ReceivedStatus = Field(default=ReceivedStatus.RECEIVED, sa_column=_enum_column(ReceivedStatus))
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    withdrawn_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class Consultation(SQLModel, table=True):
    """An anonymous consultation this organisation asked for: no identity, only what is needed."""

    id: str = Field(primary_key=True, max_length=64)
    invited_orgs: list[str] = Field(sa_column=Column(JSON, nullable=False))
    age_band: AgeBand = Field(sa_column=_enum_column(AgeBand))
    wheel_areas: list[str] = Field(sa_column=Column(JSON, nullable=False))
    question: str = Field(max_length=1000)
    proposed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    case_id: str | None = Field(default=None, max_length=64, description="The case it is about; never sent.")
    requested_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ReceivedConsultation(SQLModel, table=True):
    """An anonymous consultation from another organisation."""

    id: str = Field(primary_key=True, max_length=64, description="The sender's consultation id.")
    from_org: str = Field(max_length=32)
    age_band: str = Field(max_length=8)
    wheel_areas: list[str] = Field(sa_column=Column(JSON, nullable=False))
    question: str = Field(max_length=1000)
    proposed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


# --- API shapes -------------------------------------------------------------------------------


class ChildIn(BaseModel):
    """The child the meeting is about (this organisation's own data)."""

    model_config = ConfigDict(extra="forbid")
    personnummer: Personnummer
    name: str = PydanticField(min_length=1, max_length=200)
    protected_identity: bool = PydanticField(
        False, description="Skyddad identitet. The child's record here may already say so; a request can add the "
                           "marking, never drop it. Every disclosure then waits for another user's review.")


class ReviewCreate(BaseModel):
    """A reviewer's decision on the invitations about a child with protected identity."""

    model_config = ConfigDict(extra="forbid")
    decision: ReviewDecision
    note: Reason | None = PydanticField(None, description="Why; required when rejecting.")


class MeetingCreate(BaseModel):
    """Call a meeting: invite the organisations the wheel points to, from a completed mapping or named here."""

    model_config = ConfigDict(extra="forbid")
    case_id: str = PydanticField(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                                 description="This organisation's own case id; kept here, never sent to another "
                                             "organisation (invitations carry the meeting's server-generated id).")
    kind: MeetingKind = PydanticField(
        MeetingKind.SAMVERKANSMOTE,
        description="samverkansmote, sip or follow_up. Each invitation rests on a consent for the kind's purpose: "
                    "coordination_meeting, sip or follow_up (403 consent-required otherwise).")
    scheduled_at: UtcInput
    child: ChildIn
    mapping_id: str | None = PydanticField(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="A completed mapping of this case: its flagged areas and suggested organisations are the "
                    "meeting's unless flagged_areas or invited_orgs are given.")
    invited_orgs: list[OrgId] | None = PydanticField(
        None, min_length=1, max_length=10,
        description="Other organisations of the federation to invite; default: the mapping's suggestions.")
    flagged_areas: list[AreaCode] | None = PydanticField(
        None, min_length=1, description="Wheel areas that call for them; default: the mapping's flagged areas.")
    concern_summary: str = PydanticField(min_length=1, max_length=2000)


class ChildWish(BaseModel):
    """Whom the child wants as samordningsperson (the child is asked first)."""

    model_config = ConfigDict(extra="forbid")
    org: OrgId
    person: UserId


class Appointment(BaseModel):
    """The samordningsperson appointed at the meeting."""

    model_config = ConfigDict(extra="forbid")
    org: OrgId
    user: UserId


class CoordinatorPut(BaseModel):
    """Appoint the samordningsperson; a choice other than the child's wish needs a special reason."""

    model_config = ConfigDict(extra="forbid")
    child_wish: ChildWish | None = None
    child_not_asked_reason: Reason | None = PydanticField(None, description="Required when child_wish is null.")
    appointed: Appointment
    special_reason: Reason | None = PydanticField(
        None, description="Required when the appointed coordinator is not the one the child wished for.")


class PlanItemCreate(BaseModel):
    """Add an action to the plan: what, which principal (or others, named), which person, by when."""

    model_config = ConfigDict(extra="forbid")
    action: str = PydanticField(min_length=1, max_length=1000)
    responsible_org: OrgId | Literal["others"] = PydanticField(
        description="An organisation of the meeting, or 'others' for an action by the family, a voluntary "
                    "organisation... (then responsible_party names them).")
    responsible_party: str | None = PydanticField(None, min_length=1, max_length=200,
                                                  description="Required with responsible_org 'others'.")
    responsible_person: UserId | None = PydanticField(None, description="A user id or a role, e.g. 'mentor'.")
    responsible_role: str | None = PydanticField(None, min_length=1, max_length=64)
    due: date | None = None


class PlanItemStatusPut(BaseModel):
    """Move an item of the plan on: planned -> in_progress -> done, or cancelled."""

    model_config = ConfigDict(extra="forbid")
    status: PlanItemStatus


class OverallResponsibilityPut(BaseModel):
    """Name the principal with overall responsibility for the SIP."""

    model_config = ConfigDict(extra="forbid")
    org: OrgId


class FollowUpCreate(BaseModel):
    """Book the uppföljning."""

    model_config = ConfigDict(extra="forbid")
    follow_up_at: UtcInput


class ConsultationCreate(BaseModel):
    """Ask other organisations anonymously: age band, wheel areas and a question, never an identity."""

    model_config = ConfigDict(extra="forbid")
    invited_orgs: list[OrgId] = PydanticField(min_length=1, max_length=10)
    age_band: AgeBand
    wheel_areas: list[AreaCode] = PydanticField(min_length=1)
    question: str = PydanticField(min_length=1, max_length=1000)
    proposed_at: UtcInput | None = None
    case_id: str | None = PydanticField(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="The case of this organisation's the question is about, if any: kept here, never sent; the "
                    "question is then also screened against the child's name.")


class ChildOut(BaseModel):
    """A child's identity as shown to this organisation's own users."""

    personnummer: str
    name: str
    protected_identity: bool


class ParticipantIn(BaseModel):
    """Someone the invited organisation sends to the meeting: a role and a user id of its own."""

    model_config = ConfigDict(extra="forbid")
    role: ParticipantRole
    user: UserId


class ParticipantOut(BaseModel):
    """A participant an invited organisation named."""

    role: str
    user: str


class AcceptInvitation(BaseModel):
    """Accept an invitation and name who comes (sent back to the inviter; no child in it)."""

    model_config = ConfigDict(extra="forbid")
    participants: list[ParticipantIn] = PydanticField(min_length=1, max_length=20)


class DeclineInvitation(BaseModel):
    """Decline an invitation with a reason (sent back to the inviter: screened, never the child's identity)."""

    model_config = ConfigDict(extra="forbid")
    reason: Reason = PydanticField(description=(
        "Why, for the inviter (e.g. no time that week). It leaves this organisation: keep it neutral, say "
        "nothing this organisation knows of the child; an identity number, e-mail, phone number or the child's "
        "name is refused (422)."))


class ScheduleMeeting(BaseModel):
    """Move a meeting: a new time and, optionally, a room; every invited organisation is told."""

    model_config = ConfigDict(extra="forbid")
    scheduled_at: UtcInput
    location: Location | None = PydanticField(
        None, description="The room; sent to the invited organisations and put in the calendar, so it is "
                          "screened (no identity number, e-mail, phone or the child's name).")


class CancelMeeting(BaseModel):
    """Cancel a meeting; the reason stays in this organisation (the invited ones are told only that it is off)."""

    model_config = ConfigDict(extra="forbid")
    reason: Reason


class InvitationPublic(BaseModel):
    """An invitation this organisation sent, with the invited organisation's latest answer."""

    id: str
    to_org: str
    consent_id: str
    status: InvitationStatus
    sent_at: UtcDatetime
    answer: Answer | None
    answer_reason: str | None
    participants: list[ParticipantOut]
    answered_at: UtcDatetime | None


class PlanItemPublic(BaseModel):
    """A plan item as returned by the API."""

    id: str
    meeting_id: str
    action: str
    responsible_org: str
    responsible_role: str | None
    responsible_party: str | None
    responsible_person: str | None
    due: date | None
    status: PlanItemStatus
    overdue_at: UtcDatetime | None
    created_by: str
    created_at: UtcDatetime


class MeetingSuggestion(BaseModel):
    """An organisation the meeting's mapping suggested, with the roles there and the areas calling for it."""

    org: str
    name: str
    kind: str
    roles: list[str]
    areas: list[str]


class MeetingPublic(BaseModel):
    """A meeting with its invitations and plan, for this organisation's own users."""

    id: str
    case_id: str
    kind: MeetingKind
    purpose: str = PydanticField(description="The consent purpose its invitations rest on (follows the kind).")
    mapping_id: str | None = PydanticField(description="The completed mapping it was called from, if any.")
    suggestions: list[MeetingSuggestion] = PydanticField(
        description="The mapping's suggestions (organisations, roles, areas); empty without a mapping.")
    scheduled_at: UtcDatetime
    status: MeetingStatus
    called_by: str
    child: ChildOut
    manually_reviewed_by: str | None
    flagged_areas: list[str]
    concern_summary: str
    child_wish_org: str | None
    child_wish_person: str | None
    child_not_asked_reason: str | None
    coordinator_org: str | None
    coordinator_user: str | None
    special_reason: str | None
    follow_up_at: UtcDatetime | None
    created_at: UtcDatetime
    location: str | None
    sequence: int
    cancelled_at: UtcDatetime | None
    cancel_reason: str | None
    overall_responsible_org: str | None
    plan_version: int
    follow_up_of: str | None
    follow_up_id: str | None
    held_at: UtcDatetime | None
    overdue_at: UtcDatetime | None
    invitations: list[InvitationPublic]
    plan_items: list[PlanItemPublic]


class PlanShare(BaseModel):
    """How the plan reached one participating organisation: the version sent and its consent, or why not."""

    org: str
    version: int
    consent_id: str | None = None
    refused: str | None = None


class SipPlanPublic(BaseModel):
    """The SIP as its holder sees it: the four things a SIP must state, and where it was shared."""

    meeting_id: str
    kind: MeetingKind
    version: int
    child: ChildOut
    scheduled_at: UtcDatetime
    coordinator_org: str | None
    coordinator_user: str | None
    child_wish_org: str | None
    child_wish_person: str | None
    special_reason: str | None
    overall_responsible_org: str | None
    follow_up_at: UtcDatetime | None
    follow_up_id: str | None
    items: list[PlanItemPublic]
    shared_with: list[PlanShare]


class ReceivedPlanItem(BaseModel):
    """An item of a plan another organisation holds."""

    item_id: str
    action: str
    responsible_org: str
    responsible_party: str | None
    responsible_person: str | None
    due: date | None
    status: PlanItemStatus


class ReceivedPlanSummary(BaseModel):
    """A received plan in a list: no identity, open one to see the child and the actions."""

    id: str
    from_org: str
    consent_id: str
    version: int
    kind: str
    scheduled_at: UtcDatetime
    coordinator_org: str | None
    overall_responsible_org: str | None
    follow_up_at: UtcDatetime | None
    status: ReceivedStatus
    received_at: UtcDatetime
    updated_at: UtcDatetime
    withdrawn_at: UtcDatetime | None


class ReceivedPlanPublic(ReceivedPlanSummary):
    """One received plan; once its consent is withdrawn only that it arrived, and when, remains."""

    child: ChildOut | None
    coordinator_user: str | None
    items: list[ReceivedPlanItem]


class FollowUpPublic(BaseModel):
    """A booked uppföljning, without the child's identity."""

    id: str
    case_id: str
    follow_up_of: str | None
    scheduled_at: UtcDatetime
    coordinator_org: str | None
    coordinator_user: str | None
    held_at: UtcDatetime | None
    overdue_at: UtcDatetime | None


class OverduePlanItem(BaseModel):
    """An action of a plan whose due date passed before it was done or cancelled."""

    id: str
    meeting_id: str
    case_id: str
    responsible_org: str
    responsible_person: str | None
    due: date | None
    status: PlanItemStatus
    overdue_at: UtcDatetime


class OverdueReceivedItem(BaseModel):
    """This organisation's own action in a plan another organisation holds, past its due date and still open."""

    plan_id: str
    from_org: str
    item_id: str
    responsible_person: str | None
    due: date
    status: PlanItemStatus


class FollowUpsPublic(BaseModel):
    """The follow-ups (and overdue actions) of the plans the caller has a need to know of."""

    follow_ups: list[FollowUpPublic]
    overdue_plan_items: list[OverduePlanItem]
    overdue_in_received_plans: list[OverdueReceivedItem] = PydanticField(
        default_factory=list, description="This organisation's own open items of SIPs shared here whose due date "
                                          "passed; for those who read received plans (coordinator, integration).")


class ReceivedInvitationSummary(BaseModel):
    """A received invitation in a list: no identity, open one to see who the child is."""

    id: str
    from_org: str
    meeting_id: str
    consent_id: str
    kind: str
    scheduled_at: UtcDatetime
    flagged_areas: list[str]
    contact_user: str
    requested_roles: list[str] = PydanticField(
        description="Roles the sender asks this organisation to send (e.g. bup), from its mapping's suggestions.")
    status: ReceivedStatus
    received_at: UtcDatetime
    withdrawn_at: UtcDatetime | None
    location: str | None
    sequence: int
    cancelled_at: UtcDatetime | None
    answer: Answer | None
    answer_reason: str | None
    participants: list[ParticipantOut]
    answered_at: UtcDatetime | None
    answered_by: str | None


class ReceivedInvitationPublic(ReceivedInvitationSummary):
    """One received invitation; once its consent is withdrawn the child and the summary are no longer shown."""

    child: ChildOut | None
    concern_summary: str | None


class ConsultationPublic(BaseModel):
    """An anonymous consultation this organisation asked for."""

    id: str
    invited_orgs: list[str]
    age_band: AgeBand
    wheel_areas: list[str]
    question: str
    proposed_at: UtcDatetime | None
    case_id: str | None
    requested_by: str
    created_at: UtcDatetime


class ReceivedConsultationPublic(BaseModel):
    """An anonymous consultation from another organisation."""

    id: str
    from_org: str
    age_band: str
    wheel_areas: list[str]
    question: str
    proposed_at: UtcDatetime | None
    received_at: UtcDatetime


# --- forums and answers (decision 0027) -------------------------------------------------------


class ForumKind(StrEnum):
    """What kind of recurring forum: the calendar's neutral summary says this, never more."""

    ELEVHALSOTEAM = "elevhalsoteam"
    BARNHALSOGRUPP = "barnhalsogrupp"
    OTHER = "other"


class AnswerKind(StrEnum):
    """How a receiving organisation answers an anonymous consultation."""

    ADVICE = "advice"
    CAN_HELP = "can_help"
    """We can help: ask the guardians for consent and invite us (a samverkansmöte)."""


class Forum(SQLModel, table=True):
    """A recurring forum this organisation holds (an elevhälsoteam, a barnhälsogrupp); no child data."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    kind: ForumKind = Field(sa_column=_enum_column(ForumKind))
    unit_id: str | None = Field(default=None, max_length=64, description="This organisation's unit; never sent.")
    member_orgs: list[str] = Field(sa_column=Column(JSON, nullable=False))
    rrule: str = Field(max_length=300)
    starts_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    duration_minutes: int
    location: str = Field(max_length=200)
    revision: int = Field(default=1, description="One higher with each change; members keep the highest.")
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class AgendaItem(SQLModel, table=True):
    """One of this organisation's anonymous consultations on an occurrence of one of its forums."""

    __tablename__ = "agenda_item"
    __table_args__ = (UniqueConstraint("forum_id", "occurrence_date", "consultation_id", name="uq_agenda_item"),)

    id: str = Field(primary_key=True, max_length=64)
    forum_id: str = Field(foreign_key="forum.id", index=True, max_length=64)
    occurrence_date: date
    consultation_id: str = Field(foreign_key="consultation.id", index=True, max_length=64)
    put_to: list[str] = Field(sa_column=Column(JSON, nullable=False), description=(
        "The forum's members when the item was placed: the organisations the consultation was put to."))
    placed_by: str = Field(max_length=128)
    placed_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ReceivedForum(SQLModel, table=True):
    """A forum of another organisation that this organisation is a member of."""

    __tablename__ = "received_forum"

    id: str = Field(primary_key=True, max_length=64, description="The owner's forum id.")
    from_org: str = Field(max_length=32)
    name: str = Field(max_length=200)
    kind: ForumKind = Field(sa_column=_enum_column(ForumKind))
    member_orgs: list[str] = Field(sa_column=Column(JSON, nullable=False))
    rrule: str = Field(max_length=300)
    starts_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    duration_minutes: int
    location: str = Field(max_length=200)
    revision: int = 1
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True),
                                      description="When the owner took this organisation out of the forum.")
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ReceivedAgendaItem(SQLModel, table=True):
    """An anonymous consultation another organisation put on the agenda of a forum this one is a member of."""

    __tablename__ = "received_agenda_item"

    id: str = Field(primary_key=True, max_length=64, description="The owner's agenda item id.")
    forum_id: str = Field(foreign_key="received_forum.id", index=True, max_length=64)
    from_org: str = Field(max_length=32)
    occurrence_date: date
    consultation_id: str = Field(index=True, max_length=64)
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class GivenAnswer(SQLModel, table=True):
    """An answer this organisation gave to an anonymous consultation it received."""

    __tablename__ = "given_answer"

    id: str = Field(primary_key=True, max_length=64)
    consultation_id: str = Field(foreign_key="receivedconsultation.id", index=True, max_length=64)
    to_org: str = Field(max_length=32)
    kind: AnswerKind = Field(sa_column=_enum_column(AnswerKind))
    text: str = Field(max_length=2000)
    answered_by: str = Field(max_length=128)
    answered_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ReceivedAnswer(SQLModel, table=True):
    """An answer another organisation gave to one of this organisation's anonymous consultations."""

    __tablename__ = "received_answer"

    id: str = Field(primary_key=True, max_length=64, description="The answering organisation's answer id.")
    consultation_id: str = Field(foreign_key="consultation.id", index=True, max_length=64)
    from_org: str = Field(max_length=32)
    kind: AnswerKind = Field(sa_column=_enum_column(AnswerKind))
    text: str = Field(max_length=2000)
    answered_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ForumCreate(BaseModel):
    """Define a recurring forum: who takes part, how often (RRULE) and where; never anything about a child."""

    model_config = ConfigDict(extra="forbid")
    name: Name = PydanticField(description="E.g. 'Elevhälsoteam Norrskolan'; shared with the member organisations.")
    kind: ForumKind
    unit_id: str | None = PydanticField(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                                        description="This organisation's unit holding the forum; kept here.")
    member_orgs: list[OrgId] = PydanticField(min_length=1, max_length=10,
                                             description="Other organisations of the federation taking part.")
    rrule: str = PydanticField(min_length=1, max_length=300,
                               description="RFC 5545 RRULE, at most weekly, e.g. FREQ=MONTHLY;BYDAY=1TU.")
    starts_at: UtcInput = PydanticField(description="The first meeting (DTSTART); the rule repeats its wall-clock "
                                                    "time in Europe/Stockholm.")
    duration_minutes: int = PydanticField(ge=15, le=480)
    location: Name = PydanticField(description="Room or address of the organisation, e.g. 'Konferensrum 2'.")


class ForumPublic(BaseModel):
    """A forum, as its owner and its members see it."""

    id: str
    owner_org: str
    name: str
    kind: ForumKind
    member_orgs: list[str]
    rrule: str
    starts_at: UtcDatetime
    duration_minutes: int
    location: str
    revision: int


class OccurrencePublic(BaseModel):
    """One meeting of a forum; ``date`` (local, Europe/Stockholm) names it in the agenda's path."""

    date: date
    starts_at: UtcDatetime
    ends_at: UtcDatetime


class AgendaItemCreate(BaseModel):
    """Put one of this organisation's anonymous consultations on a forum occurrence's agenda."""

    model_config = ConfigDict(extra="forbid")
    consultation_id: str = PydanticField(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


class AgendaItemPublic(BaseModel):
    """A consultation on an occurrence's agenda: age band, wheel areas and the question, never an identity."""

    id: str
    forum_id: str
    occurrence_date: date
    consultation_id: str
    from_org: str
    age_band: str
    wheel_areas: list[str]
    question: str


class AnswerCreate(BaseModel):
    """Answer an anonymous consultation: advice, or 'we can help: ask for consent and invite us'."""

    model_config = ConfigDict(extra="forbid")
    kind: AnswerKind
    text: str = PydanticField(min_length=1, max_length=2000)


class AnswerPublic(BaseModel):
    """An answer to an anonymous consultation (given here, or received from ``org``)."""

    id: str
    consultation_id: str
    org: str = PydanticField(description="The organisation that answered.")
    kind: AnswerKind
    text: str
    answered_at: UtcDatetime


class ConsultationDetail(ConsultationPublic):
    """One of this organisation's consultations with the answers that came back."""

    asked_orgs: list[str] = PydanticField(description="Organisations asked: invited, or members of a forum whose "
                                                      "agenda holds it. Only their answers are accepted.")
    answers: list[AnswerPublic]
