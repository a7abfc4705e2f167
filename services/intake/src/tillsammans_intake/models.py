"""Intake's tables and API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationInfo, field_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from tillsammans_common.db import utcnow
from tillsammans_common.personnummer import Personnummer
from tillsammans_common.timestamps import UtcDatetime, UtcInput
from tillsammans_common.wheel import AreaCode


class UnitKind(StrEnum):
    """Where a child's BBA is held (seed 001: by age and school form)."""

    PRESCHOOL = "preschool"
    CHILD_HEALTH = "child_health"
    SCHOOL = "school"
    UPPER_SECONDARY = "upper_secondary"
    KAA = "kaa"
    INTAKE_DESK = "intake_desk"
    """The organisation's intake desk: where a concern goes when no rule finds the child's unit."""
    OTHER = "other"


class ChildStage(StrEnum):
    """Where a child is in the school system, as the raiser knows it (seed 001, "Who is the BBA")."""

    PRESCHOOL_AGE = "preschool_age"
    """Not yet in förskoleklass (0-5): BVC and preschool."""
    FORSKOLEKLASS = "forskoleklass"
    COMPULSORY_SCHOOL = "compulsory_school"
    """Grundskola (or anpassad grundskola) years 1-9."""
    UPPER_SECONDARY = "upper_secondary"
    OUTSIDE_UPPER_SECONDARY = "outside_upper_secondary"
    """16-19 and not in (or dropped out of) upper secondary: KAA."""


MUNICIPALITY_CODE = r"^[0-9]{4}$"
"""A municipality's four-digit SCB code (kommunkod); its first two digits are the county's (länskod)."""
MAX_AGE = 25


class UnitBase(SQLModel):
    """A preschool, school or other unit with its Barnets bästa-ansvarig."""

    name: str = Field(min_length=1, max_length=200)
    kind: UnitKind
    bba_user: str = Field(min_length=1, max_length=128, description="User id of the unit's BBA.")
    bba_name: str = Field(min_length=1, max_length=200)
    municipality_code: str | None = Field(
        None, max_length=4,
        description="SCB code of the municipality whose children the unit serves (e.g. 0484); "
                    "a unit without one is never chosen by the routing rules.")


class Unit(UnitBase, table=True):
    """A unit in this organisation's directory."""

    id: str = Field(primary_key=True, max_length=64)
    min_age: int = Field(description="Youngest age served.")
    max_age: int = Field(description="Oldest age served.")
    deputies: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source: str = Field(default="api", max_length=16, description="api, file or ss12000: who keeps the unit.")
    confirmed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class UnitPut(UnitBase):
    """Create or replace a unit (the ages default to what its kind serves)."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]
    municipality_code: str | None = PydanticField(
        None, pattern=MUNICIPALITY_CODE, description="SCB code of the municipality whose children the unit serves.")
    min_age: int | None = PydanticField(None, ge=0, le=MAX_AGE, description="Youngest age served; default by kind.")
    max_age: int | None = PydanticField(None, ge=0, le=MAX_AGE, description="Oldest age served; default by kind.")
    deputies: list[Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^\S+$")]] = PydanticField(
        default_factory=list, max_length=20, description="User ids of the BBA's deputies (ställföreträdare).")

    @field_validator("max_age")
    @classmethod
    def _not_below_min_age(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_age")
        if value is not None and low is not None and value < low:
            raise ValueError("must not be below min_age")
        return value


class DirectoryImportResult(BaseModel):
    """What an SS 12000 import did to the directory."""

    created: list[str]
    updated: list[str]
    confirmed_at: UtcDatetime
    not_in_export: list[str] = PydanticField(
        description="Units from earlier imports that this export no longer names: kept, and stale in time.")


class UnitPublic(UnitBase):
    """A unit as returned by the API, with when it was last confirmed."""

    id: str
    min_age: int
    max_age: int
    deputies: list[str]
    source: str
    confirmed_at: UtcDatetime | None = PydanticField(description="Last confirmed (import or admin); null: never.")
    stale: bool = PydanticField(False, description="Not confirmed within the organisation's staleness period.")
    updated_at: UtcDatetime


class RoutedBy(StrEnum):
    """Which rule found the unit and BBA a concern went to (decision 20)."""

    NAMED_UNIT = "named_unit"
    CHILDS_CASE = "childs_case"
    STAGE = "stage"
    AGE = "age"
    FALLBACK_NO_MUNICIPALITY = "fallback_no_municipality"
    FALLBACK_NO_RULE = "fallback_no_rule"
    FALLBACK_NO_UNIT = "fallback_no_unit"
    FALLBACK_AMBIGUOUS = "fallback_ambiguous"


class ConcernStatus(StrEnum):
    """Where a concern is in intake."""

    ROUTED = "routed"


class CaseChild(SQLModel, table=True):
    """Whose case it is: the child's identity, kept by intake alone (the case itself is a ``CaseRecord``)."""

    __tablename__ = "case_child"

    case_id: str = Field(primary_key=True, max_length=64)
    child_personnummer: str = Field(unique=True, max_length=12, description="One case per child, in one form.")
    child_name: str = Field(max_length=200)


class Concern(SQLModel, table=True):
    """A concern (oro) raised about a child, in the child's case; the identity stays in this organisation."""

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, max_length=64)
    unit_id: str = Field(foreign_key="unit.id", max_length=64,
                         description="The unit the raiser named, or the one routing found.")
    routed_by: RoutedBy = Field(default=RoutedBy.NAMED_UNIT, sa_type=String(32))
    wheel_id: str = Field(default="sormland", max_length=64, description="The wheel all wheel_areas belong to.")
    child_personnummer: str = Field(index=True, max_length=12)
    child_name: str = Field(max_length=200)
    protected_identity: bool = False
    wheel_areas: list[str] = Field(sa_column=Column(JSON, nullable=False))
    description: str = Field(max_length=4000)
    raised_by_user: str = Field(max_length=128)
    raised_by_role: str = Field(max_length=32)
    bba_user: str = Field(max_length=128)
    home_municipality: str | None = Field(default=None, max_length=4,
                                          description="The child's home municipality as the raiser gave it.")
    status: ConcernStatus = ConcernStatus.ROUTED
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class InboxItem(SQLModel, table=True):
    """A routed concern waiting in a BBA's inbox."""

    __tablename__ = "inbox_item"

    id: int | None = Field(default=None, primary_key=True)
    bba_user: str = Field(index=True, max_length=128)
    concern_id: str = Field(foreign_key="concern.id", max_length=64, unique=True)
    case_id: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ChildIn(BaseModel):
    """The child a concern is about."""

    model_config = ConfigDict(extra="forbid")
    personnummer: Personnummer
    name: str = PydanticField(min_length=1, max_length=200)
    protected_identity: bool = PydanticField(False, description="Skyddad identitet: narrows every output.")


class ConcernCreate(BaseModel):
    """Raise a concern."""

    model_config = ConfigDict(extra="forbid")
    unit_id: str | None = PydanticField(
        None, min_length=1, max_length=64,
        description="The child's unit in the directory, when the raiser knows it; otherwise intake routes by "
                    "child_stage (or the child's age) and home_municipality.")
    child_stage: ChildStage | None = PydanticField(None, description="Where the child is in school, if known.")
    home_municipality: str | None = PydanticField(
        None, pattern=MUNICIPALITY_CODE, description="SCB code of the child's home municipality, e.g. 0484.")
    child: ChildIn
    wheel_id: str | None = PydanticField(
        None, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="The wheel the areas are of; default the organisation's default wheel.")
    wheel_areas: list[AreaCode] = PydanticField(min_length=1, description="Areas of that one wheel.")
    description: str = PydanticField(min_length=1, max_length=4000, description="What was noticed.")


OROSANMALAN_NOTE = ("A concern is not an orosanmälan. If you suspect a child is being harmed, report to "
                    "social services at once (SoL 14 kap. 1 §); no consent is needed for that: "
                    "POST /concerns/{id}/report.")


class ConcernPublic(BaseModel):
    """A concern as returned to those with a need to know the child's case."""

    id: str
    case_id: str
    unit_id: str | None = PydanticField(description="Omitted (null) for a child with protected identity.")
    routed_by: RoutedBy
    child_personnummer: str
    child_name: str
    protected_identity: bool
    wheel_id: str
    wheel_areas: list[str]
    description: str
    raised_by_user: str
    bba_user: str
    status: ConcernStatus
    created_at: UtcDatetime
    orosanmalan: str = OROSANMALAN_NOTE


class ConcernStatusPublic(BaseModel):
    """Where a concern is: what its raiser may see (not the child's situation)."""

    id: str
    case_id: str
    status: ConcernStatus
    created_at: UtcDatetime


class InboxItemPublic(BaseModel):
    """An item of the BBA's inbox."""

    concern_id: str
    case_id: str
    unit_id: str | None = PydanticField(description="Omitted (null) for a child with protected identity.")
    wheel_areas: list[str]
    received_at: UtcDatetime


PROTECTED_NAME = "(skyddad identitet)"
"""What a list shows instead of the name of a child with protected identity."""


class CaseSummary(BaseModel):
    """A case in a list: enough to pick it, never more."""

    case_id: str
    child_name: str = PydanticField(description=f"'{PROTECTED_NAME}' for a child with protected identity.")
    unit_id: str | None
    protected_identity: bool
    bba_user: str
    opened_at: UtcDatetime


class CaseTransfer(SQLModel, table=True):
    """A case handed over from one unit and BBA to another: who did it, when and why."""

    __tablename__ = "case_transfer"

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, max_length=64)
    from_unit_id: str | None = Field(max_length=64)
    to_unit_id: str = Field(max_length=64)
    from_bba_user: str = Field(max_length=128)
    to_bba_user: str = Field(max_length=128)
    reason: str = Field(max_length=500)
    transferred_by: str = Field(max_length=128)
    transferred_at: datetime = Field(default_factory=utcnow,
                                     sa_column=Column(DateTime(timezone=True), nullable=False))


class TransferCreate(BaseModel):
    """Hand the case over to another unit of the directory (its BBA takes the case and its open concerns)."""

    model_config = ConfigDict(extra="forbid")
    unit_id: str = PydanticField(min_length=1, max_length=64, description="The receiving unit in the directory.")
    reason: str = PydanticField(min_length=1, max_length=500,
                                description="Why (kept with the case, never sent anywhere), e.g. the child's school.")


class TransferPublic(BaseModel):
    """Where the case is now."""

    case_id: str
    unit_id: str | None = PydanticField(description="Omitted (null) for a child with protected identity.")
    bba_user: str
    transferred: bool = PydanticField(description="False when the case already was at that unit (nothing changed).")
    moved_concerns: int = PydanticField(description="Concerns of the case now in the new BBA's inbox.")


class DelegationCreate(BaseModel):
    """Give a colleague access to the case for a period (the BBA's recorded act)."""

    model_config = ConfigDict(extra="forbid")
    delegate_user: str = PydanticField(min_length=1, max_length=128, pattern=r"^\S+$",
                                       description="The colleague's user id at this organisation's IdP.")
    valid_from: UtcInput | None = PydanticField(None, description="Default: now.")
    valid_until: UtcInput = PydanticField(description="At most a year after valid_from; renew by delegating again.")


class DelegationPublic(BaseModel):
    """A delegation of a case."""

    id: str
    case_id: str
    delegate_user: str
    granted_by: str
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    revoked_at: UtcDatetime | None
    recorded_at: UtcDatetime


class CasePublic(BaseModel):
    """A child's case with its concerns and delegations, for those with a need to know."""

    case_id: str
    child_personnummer: str
    child_name: str
    unit_id: str | None = PydanticField(description="Omitted (null) for a child with protected identity.")
    bba_user: str
    protected_identity: bool
    opened_at: UtcDatetime
    concerns: list[ConcernStatusPublic]
    delegations: list[DelegationPublic]


class CaseMapping(SQLModel, table=True):
    """A mapping (kartläggning) of a case, as mapping announced it: so a report can name it and carry its areas."""

    __tablename__ = "case_mapping"

    mapping_id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, max_length=64)
    wheel_id: str = Field(max_length=64)
    flagged_areas: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    completed: bool = False


class ReportStatus(StrEnum):
    """Where an orosanmälan is: written here, in social services' inbox, or received by their intake."""

    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"


class Report(SQLModel, table=True):
    """An orosanmälan this organisation filed with social services (SoL 14 kap. 1 §); the child stays in the case."""

    __tablename__ = "statutory_report"

    id: str = Field(primary_key=True, max_length=64, description="Server-generated; the subject of the message.")
    case_id: str = Field(index=True, max_length=64)
    concern_id: str | None = Field(default=None, max_length=64)
    mapping_id: str | None = Field(default=None, max_length=64)
    to_org: str = Field(max_length=32)
    municipality_code: str = Field(max_length=4)
    grounds: str = Field(max_length=4000)
    wheel_id: str = Field(max_length=64)
    wheel_areas: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    urgent: bool = False
    legal_basis: str = Field(max_length=64)
    filed_by_user: str = Field(max_length=128)
    filed_by_role: str = Field(max_length=32)
    envelope_id: str = Field(max_length=64, description="The message's id, to know when the relay sent it.")
    filed_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    acknowledged_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    receiver_reference: str | None = Field(default=None, max_length=64)


class ReportCreate(BaseModel):
    """File an orosanmälan: the grounds in the reporter's words; no consent is asked for."""

    model_config = ConfigDict(extra="forbid")
    grounds: str = PydanticField(min_length=1, max_length=4000, description="What you noticed, in your own words.")
    urgent: bool = PydanticField(False, description="The child may need protection today.")
    concern_id: str | None = PydanticField(None, min_length=1, max_length=64,
                                           description="A concern of the case the report rests on.")
    mapping_id: str | None = PydanticField(None, min_length=1, max_length=64,
                                           description="A mapping of the case: its flagged areas go with the report.")
    home_municipality: str | None = PydanticField(
        None, pattern=MUNICIPALITY_CODE,
        description="SCB code of the child's home municipality; default: the concern's, else the case unit's.")


class ReportPublic(BaseModel):
    """An orosanmälan as its reporter and the case's BBA see it."""

    id: str
    case_id: str
    concern_id: str | None
    mapping_id: str | None
    to_org: str
    municipality_code: str
    grounds: str
    wheel_id: str
    wheel_areas: list[str]
    urgent: bool
    legal_basis: str
    filed_by_user: str
    filed_at: UtcDatetime
    status: ReportStatus
    sent_at: UtcDatetime | None = PydanticField(description="When it reached social services' inbox.")
    acknowledged_at: UtcDatetime | None = PydanticField(description="When social services' intake received it.")
    receiver_reference: str | None = PydanticField(description="Social services' own reference of the report.")


class ReceivedReport(SQLModel, table=True):
    """An orosanmälan social services received from another organisation of the federation."""

    __tablename__ = "received_report"
    __table_args__ = (UniqueConstraint("from_org", "report_id", name="uq_received_report_sender_id"),)

    id: str = Field(primary_key=True, max_length=64, description="Our own reference, sent back in the receipt.")
    from_org: str = Field(max_length=32)
    report_id: str = Field(max_length=64, description="The reporter's id of the report.")
    municipality_code: str = Field(max_length=4)
    child_personnummer: str = Field(index=True, max_length=12)
    child_name: str = Field(max_length=200)
    protected_identity: bool = False
    grounds: str = Field(max_length=4000)
    wheel_id: str = Field(max_length=64)
    wheel_areas: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    reporting_unit: str | None = Field(default=None, max_length=200)
    reported_by_role: str = Field(max_length=32)
    contact_user: str = Field(max_length=128)
    urgent: bool = False
    legal_basis: str = Field(max_length=64)
    filed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ReceivedReportSummary(BaseModel):
    """A received orosanmälan in the desk's list: urgency and sender first, the child by name only."""

    id: str
    from_org: str
    child_name: str = PydanticField(description=f"'{PROTECTED_NAME}' for a child with protected identity.")
    protected_identity: bool
    urgent: bool
    received_at: UtcDatetime


class ReceivedReportPublic(BaseModel):
    """A received orosanmälan with the child and the grounds, for social services' intake desk."""

    id: str
    from_org: str
    report_id: str
    municipality_code: str
    child_personnummer: str
    child_name: str
    protected_identity: bool
    grounds: str
    wheel_id: str
    wheel_areas: list[str]
    reporting_unit: str | None
    reported_by_role: str
    contact_user: str
    urgent: bool
    legal_basis: str
    filed_at: UtcDatetime
    received_at: UtcDatetime
