"""Mapping's tables and API shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

from tillsammans_common.db import utcnow
from tillsammans_common.events.mapping import Suggestion
from tillsammans_common.personnummer import InvalidIdentityNumber, normalize
from tillsammans_common.wheel import LevelCode

NOTE_MAX = 2000
"""Longest free text kept per note or answer: enough for a summary, short enough not to become a journal."""

# Blank text is no answer: completion must not pass on whitespace.
FreeText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NOTE_MAX)]


def _not_an_identity(value: str) -> str:
    # The case id becomes the CloudEvents subject on the broker, so an identity number must never pass.
    try:
        normalize(value)
    except InvalidIdentityNumber:
        return value
    raise ValueError("must be the opaque case id from intake, never a personnummer")


def _as_utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; all are stored in UTC, so say so in every response.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
CaseId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"),
                   AfterValidator(_not_an_identity)]


class MappingStatus(StrEnum):
    """Where a mapping is: open while the BBA maps, completed once analysed (then immutable)."""

    OPEN = "open"
    COMPLETED = "completed"


class ConcernLevel(StrEnum):
    """The levels of the first wheels' scale (a wheel states its own scale; these are its codes there)."""

    NO_CONCERN = "no_concern"
    SOME_CONCERN = "some_concern"
    SERIOUS_CONCERN = "serious_concern"
    UNKNOWN = "unknown"


FLAGGING_LEVELS = frozenset({ConcernLevel.SOME_CONCERN, ConcernLevel.SERIOUS_CONCERN})
"""Levels of the concern scale that flag an area, so that its organisations are suggested."""


class Perspective(StrEnum):
    """Whose view of an area an assessment records (seed 001: the child has the right to be heard)."""

    PROFESSIONAL = "professional"
    CHILD = "child"
    GUARDIANS = "guardians"


PERSPECTIVE_ORDER = tuple(Perspective)
"""The order perspectives are listed and drawn in: the professional's assessment, the child's voice, the guardians'."""

TRAPPAN_DESCRIPTION = (
    "Trappan (seed 002, Örebro): 0 främjande och förebyggande (promotion and prevention); 1 en utmaning "
    "upptäckt och hanterad tidigt (challenge detected and handled early); 2 behov av utökat stöd och samverkan "
    "(need for more support and collaboration); 3 aktivt nätverksarbete kring barnet (active network work "
    "with several actors)."
)


class Mapping(SQLModel, table=True):
    """A mapping (kartläggning) of one case on one version of a well-being wheel."""

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, max_length=64)
    wheel_id: str = Field(max_length=64)
    wheel_version: int
    status: MappingStatus = MappingStatus.OPEN
    trappan_step: int | None = Field(default=None, ge=0, le=3)
    has_all_information: bool | None = None
    information_note: str | None = Field(default=None, max_length=NOTE_MAX)
    obstacles: str | None = Field(default=None, max_length=NOTE_MAX)
    own_actions: str | None = Field(default=None, max_length=NOTE_MAX)
    organisation_actions: str | None = Field(default=None, max_length=NOTE_MAX)
    help_needed: str | None = Field(default=None, max_length=NOTE_MAX)
    # Kept as decided at completion: later changes to peers or wheel data must not rewrite history.
    flagged_areas: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    suggested_orgs: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    suggestions: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    opened_by: str = Field(max_length=128)
    completed_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    completed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class AreaAssessment(SQLModel, table=True):
    """How one area of the wheel looks for the child in one mapping."""

    __tablename__ = "area_assessment"
    __table_args__ = (UniqueConstraint("mapping_id", "area_code", "perspective",
                                       name="uq_area_assessment_mapping_area_perspective"),)

    id: int | None = Field(default=None, primary_key=True)
    mapping_id: str = Field(foreign_key="mapping.id", index=True, max_length=64)
    area_code: str = Field(max_length=32)
    perspective: str = Field(default=Perspective.PROFESSIONAL.value, max_length=16)
    # A code of the mapping's wheel's scale (or "unknown"); the wheel, not this table, says what it means.
    level: str = Field(max_length=32)
    note: str | None = Field(default=None, max_length=NOTE_MAX)
    assessed_by: str = Field(max_length=128)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class MappingCreate(BaseModel):
    """Open a mapping of a case."""

    model_config = ConfigDict(extra="forbid")
    case_id: CaseId = PydanticField(description="The opaque case id from intake; never a personnummer.")
    wheel_id: str = PydanticField("sormland", min_length=1, max_length=64,
                                  description="Which wheel to map on (see GET /wheels).")
    wheel_version: int | None = PydanticField(None, ge=1, description="Default: the wheel's latest version.")


class AreaAssessmentPut(BaseModel):
    """Assess one area of the wheel from one perspective (replaces an earlier assessment of that area and view)."""

    model_config = ConfigDict(extra="forbid")
    level: LevelCode = PydanticField(
        description="A step code of the mapping's wheel's scale (GET /wheels/{id}: scale.steps[].code), or "
                    "'unknown'. On the packaged wheels: no_concern, some_concern, serious_concern (the last two "
                    "flag the area).")
    note: FreeText | None = PydanticField(
        None, description="What the assessment rests on, or the child's or guardians' own words (at most 2000 "
                          "characters).")


class FiveQuestions(BaseModel):
    """The analysis after mapping: the five questions of seed 001. PUT replaces all five; blanks stay open."""

    model_config = ConfigDict(extra="forbid")
    has_all_information: bool | None = PydanticField(
        None, description="1. Har jag all information som jag behöver för att hjälpa barnet? "
                          "/ Do I have all the information I need to help the child?")
    information_note: FreeText | None = PydanticField(
        None, description="Optional to question 1: vilken information saknas? / What information is missing?")
    obstacles: FreeText | None = PydanticField(
        None, description="2. Vad står i vägen för barnets välmående? / What stands in the way of the child's "
                          "well-being?")
    own_actions: FreeText | None = PydanticField(
        None, description="3. Vad kan jag göra nu för att hjälpa det här barnet? / What can I do now to help this "
                          "child?")
    organisation_actions: FreeText | None = PydanticField(
        None, description="4. Vad kan min verksamhet göra för att hjälpa barnet? / What can my organisation do to "
                          "help the child?")
    help_needed: FreeText | None = PydanticField(
        None, description="5. Vilken ytterligare hjälp behöver jag från andra? / What additional help do I need "
                          "from others?")


REQUIRED_ANSWERS = ("has_all_information", "obstacles", "own_actions", "organisation_actions", "help_needed")
"""The answers a mapping needs before it can be completed (the note to question 1 is optional)."""


class MappingComplete(BaseModel):
    """Complete a mapping."""

    model_config = ConfigDict(extra="forbid")
    trappan_step: int = PydanticField(ge=0, le=3, description=TRAPPAN_DESCRIPTION)


class AreaAssessmentPublic(BaseModel):
    """An area assessment as returned by the API."""

    area_code: str
    perspective: Perspective = PydanticField(
        Perspective.PROFESSIONAL, description="Whose view: the professional's assessment, the child's own voice, "
                                              "or the guardians' view.")
    level: str = PydanticField(description="A step code of the wheel's scale, or 'unknown'.")
    value: int | None = PydanticField(None, description="The step's value on the wheel's scale; null for unknown.")
    note: str | None
    assessed_by: str
    updated_at: UtcDatetime


class SuggestionPublic(Suggestion):
    """A suggested organisation as shown to users, with the roles' Swedish names."""

    role_labels_sv: list[str] = PydanticField(description="The roles' Swedish names, in the order of roles.")


OROSANMALAN_NOTE = ("A mapping is not an orosanmälan. If you suspect a child is being harmed, report to "
                    "social services at once (SoL 14 kap. 1 §); no consent is needed for that.")


class MappingPublic(BaseModel):
    """A mapping as returned to this organisation's own users."""

    id: str
    case_id: str
    wheel_id: str
    wheel_version: int
    status: MappingStatus
    trappan_step: int | None = PydanticField(description=TRAPPAN_DESCRIPTION)
    questions: FiveQuestions
    areas: list[AreaAssessmentPublic] = PydanticField(
        description="Assessed areas in wheel order, each area's perspectives as professional, child, guardians.")
    flagged_areas: list[str] | None = PydanticField(
        description="Once completed: areas the professional's assessment puts on a flagging step of the wheel's "
                    "scale, in wheel order.")
    suggested_orgs: list[str] | None = PydanticField(
        description="Once completed: other organisations of the federation the flagged areas call for (the ids of "
                    "suggestions; kept for clients from before suggestions).")
    suggestions: list[SuggestionPublic] | None = PydanticField(
        None, description="Once completed: each suggested organisation serving the child's municipality, with its "
                          "kind, the roles there to invite and the flagged areas that call for it. Call the meeting "
                          "with POST /meetings {\"mapping_id\": ...} to invite them.")
    opened_by: str
    created_at: UtcDatetime
    completed_by: str | None
    completed_at: UtcDatetime | None
    orosanmalan: str = OROSANMALAN_NOTE


class WheelSummary(BaseModel):
    """One version of a wheel, without its areas."""

    id: str
    version: int
    name: str


class WheelHistoryMapping(BaseModel):
    """One mapping in a child's wheel history."""

    mapping_id: str
    wheel_id: str
    wheel_version: int
    status: MappingStatus
    created_at: UtcDatetime
    completed_at: UtcDatetime | None


class WheelHistoryPoint(BaseModel):
    """One area from one perspective in one mapping, with the change since the mapping before it."""

    mapping_id: str
    level: str
    value: int | None
    previous_mapping_id: str | None = PydanticField(
        description="The latest earlier mapping on the same wheel that assessed this area from this perspective.")
    previous_level: str | None
    change: int | None = PydanticField(
        description="value minus the previous value; null when either is unknown or there is no earlier one.")


class WheelHistoryArea(BaseModel):
    """How one area looked from one perspective over a child's mappings on one wheel, oldest first."""

    wheel_id: str
    area_code: str
    perspective: Perspective
    points: list[WheelHistoryPoint]


class WheelHistory(BaseModel):
    """A child's mappings over time, per area and perspective (oldest first)."""

    case_id: str
    mappings: list[WheelHistoryMapping]
    areas: list[WheelHistoryArea]


class CorrespondingAssessment(BaseModel):
    """An assessment of the mapping's own wheel that a declared correspondence links to an area of another."""

    area_code: str
    level: str
    value: int | None
    flags: bool = PydanticField(description="The level flags the area on the mapping's own wheel.")


class AreaAsRead(BaseModel):
    """One area of the other wheel, read through the correspondence, from one perspective."""

    area_code: str
    label_sv: str
    label_en: str
    perspective: Perspective
    flagged: bool = PydanticField(description="Any linked assessment flags its own area.")
    from_areas: list[CorrespondingAssessment]


class MappingAsWheel(BaseModel):
    """A mapping read on another wheel: each area of that wheel with the linked assessments of the mapping's own."""

    mapping_id: str
    wheel_id: str = PydanticField(description="The wheel the mapping was made on.")
    wheel_version: int
    as_wheel_id: str
    as_wheel_version: int
    correspondence_id: str
    areas: list[AreaAsRead] = PydanticField(
        description="Areas of the other wheel with at least one linked assessment, in that wheel's order.")
    not_covered: list[str] = PydanticField(
        description="Areas of the other wheel that nothing assessed in this mapping corresponds to.")
