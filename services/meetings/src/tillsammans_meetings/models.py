"""Meetings' tables and API shapes."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime, UniqueConstraint
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


def _enum_column(enum: type[StrEnum]) -> Column[Any]:
    # Store the values ("withdrawn"), not the member names, so the rows read the same as the API.
    return Column(SAEnum(enum, values_callable=lambda members: [m.value for m in members], native_enum=False,
                         length=32), nullable=False)


class MeetingKind(StrEnum):
    """What kind of meeting: a samverkansmöte, a SIP meeting or an uppföljning."""

    SAMVERKANSMOTE = "samverkansmote"
    SIP = "sip"
    FOLLOW_UP = "follow_up"


class MeetingStatus(StrEnum):
    """Where a meeting is."""

    CALLED = "called"
    FOLLOW_UP_BOOKED = "follow_up_booked"


class InvitationStatus(StrEnum):
    """State of an invitation this organisation sent (or, for a protected child, would send after review)."""

    AWAITING_REVIEW = "awaiting_review"
    SENT = "sent"
    REVIEW_REJECTED = "review_rejected"
    CONSENT_WITHDRAWN = "consent_withdrawn"


class ReviewDecision(StrEnum):
    """A reviewer's answer to a disclosure about a child with protected identity."""

    APPROVE = "approve"
    REJECT = "reject"


class ReceivedStatus(StrEnum):
    """State of an invitation received from another organisation."""

    RECEIVED = "received"
    WITHDRAWN = "withdrawn"


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


class Invitation(SQLModel, table=True):
    """An invitation this organisation sent to another one, and the consent it was sent under."""

    __table_args__ = (UniqueConstraint("meeting_id", "to_org", name="uq_invitation_meeting_org"),)

    id: str = Field(primary_key=True, max_length=64)
    meeting_id: str = Field(foreign_key="meeting.id", index=True, max_length=64)
    to_org: str = Field(max_length=32)
    consent_id: str = Field(index=True, max_length=64)
    status: InvitationStatus = Field(default=InvitationStatus.SENT, sa_column=_enum_column(InvitationStatus))
    sent_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


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
    due: date | None = None
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


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
    status: ReceivedStatus = Field(default=ReceivedStatus.RECEIVED, sa_column=_enum_column(ReceivedStatus))
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
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
    """Call a samverkansmöte: invite the organisations the wheel points to."""

    model_config = ConfigDict(extra="forbid")
    case_id: str = PydanticField(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                                 description="This organisation's own case id; kept here, never sent to another "
                                             "organisation (invitations carry the meeting's server-generated id).")
    kind: MeetingKind = MeetingKind.SAMVERKANSMOTE
    scheduled_at: UtcInput
    child: ChildIn
    invited_orgs: list[OrgId] = PydanticField(min_length=1, max_length=10,
                                              description="Other organisations of the federation to invite.")
    flagged_areas: list[AreaCode] = PydanticField(min_length=1, description="Wheel areas that call for them.")
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
    """Add an action to the plan."""

    model_config = ConfigDict(extra="forbid")
    action: str = PydanticField(min_length=1, max_length=1000)
    responsible_org: OrgId
    responsible_role: str | None = PydanticField(None, min_length=1, max_length=64)
    due: date | None = None


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


class InvitationPublic(BaseModel):
    """An invitation this organisation sent."""

    id: str
    to_org: str
    consent_id: str
    status: InvitationStatus
    sent_at: UtcDatetime


class PlanItemPublic(BaseModel):
    """A plan item as returned by the API."""

    id: str
    meeting_id: str
    action: str
    responsible_org: str
    responsible_role: str | None
    due: date | None
    created_by: str
    created_at: UtcDatetime


class MeetingPublic(BaseModel):
    """A meeting with its invitations and plan, for this organisation's own users."""

    id: str
    case_id: str
    kind: MeetingKind
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
    invitations: list[InvitationPublic]
    plan_items: list[PlanItemPublic]


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
    status: ReceivedStatus
    received_at: UtcDatetime
    withdrawn_at: UtcDatetime | None


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
