"""Intake's tables and API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime
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
    OTHER = "other"


class UnitBase(SQLModel):
    """A preschool, school or other unit with its Barnets bästa-ansvarig."""

    name: str = Field(max_length=200)
    kind: UnitKind
    bba_user: str = Field(max_length=128, description="User id of the unit's BBA.")
    bba_name: str = Field(max_length=200)


class Unit(UnitBase, table=True):
    """A unit in this organisation's directory."""

    id: str = Field(primary_key=True, max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class UnitPut(UnitBase):
    """Create or replace a unit."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class UnitPublic(UnitBase):
    """A unit as returned by the API."""

    id: str
    updated_at: UtcDatetime


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
    unit_id: str = Field(foreign_key="unit.id", max_length=64, description="The unit the raiser named.")
    child_personnummer: str = Field(index=True, max_length=12)
    child_name: str = Field(max_length=200)
    protected_identity: bool = False
    wheel_areas: list[str] = Field(sa_column=Column(JSON, nullable=False))
    description: str = Field(max_length=4000)
    raised_by_user: str = Field(max_length=128)
    raised_by_role: str = Field(max_length=32)
    bba_user: str = Field(max_length=128)
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
    unit_id: str = PydanticField(min_length=1, max_length=64, description="The child's unit in the directory.")
    child: ChildIn
    wheel_areas: list[AreaCode] = PydanticField(min_length=1, description="Wheel areas the concern is about.")
    description: str = PydanticField(min_length=1, max_length=4000, description="What was noticed.")


OROSANMALAN_NOTE = ("A concern is not an orosanmälan. If you suspect a child is being harmed, report to "
                    "social services at once (SoL 14 kap. 1 §); no consent is needed for that.")


class ConcernPublic(BaseModel):
    """A concern as returned to those with a need to know the child's case."""

    id: str
    case_id: str
    unit_id: str | None = PydanticField(description="Omitted (null) for a child with protected identity.")
    child_personnummer: str
    child_name: str
    protected_identity: bool
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
