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


class UnitPublic(UnitBase):
    """A unit as returned by the API."""

    id: str
    updated_at: datetime


class ConcernStatus(StrEnum):
    """Where a concern is in intake."""

    ROUTED = "routed"


class Concern(SQLModel, table=True):
    """A concern (oro) raised about a child; the child's identity stays in this organisation."""

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, unique=True, max_length=64)
    unit_id: str = Field(foreign_key="unit.id", max_length=64)
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
    """A concern as returned to this organisation's own users."""

    id: str
    case_id: str
    unit_id: str
    child_personnummer: str
    child_name: str
    protected_identity: bool
    wheel_areas: list[str]
    description: str
    raised_by_user: str
    bba_user: str
    status: ConcernStatus
    created_at: datetime
    orosanmalan: str = OROSANMALAN_NOTE


class InboxItemPublic(BaseModel):
    """An item of the BBA's inbox."""

    concern_id: str
    case_id: str
    unit_id: str
    wheel_areas: list[str]
    received_at: datetime
