"""Events produced by mapping."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tillsammans_common.events import Event
from tillsammans_common.settings import OrgKind
from tillsammans_common.wheel import AreaCode, RoleCode


class Suggestion(BaseModel):
    """An organisation of the federation the flagged areas call for: which kind it is, whom there, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    org: str = Field(description="The organisation's id in the federation (its NATS account).")
    name: str = Field(description="Its name in the federation directory.")
    kind: OrgKind
    roles: list[RoleCode] = Field(description="Roles there to invite (e.g. bvc_nurse, bup), from the wheel.")
    areas: list[AreaCode] = Field(description="The flagged areas that call for it, in wheel order.")


class MappingOpened(Event):
    """The BBA opened a mapping (kartläggning) of a case on a wheel."""

    type: ClassVar[str] = "mapping.mapping.opened.v1"
    mapping_id: str
    case_id: str
    wheel_id: str
    wheel_version: int


class MappingCompleted(Event):
    """A mapping was completed; the flagged areas suggest which organisations to involve."""

    type: ClassVar[str] = "mapping.mapping.completed.v1"
    mapping_id: str
    case_id: str
    wheel_id: str
    wheel_version: int
    flagged_areas: list[AreaCode]
    suggested_orgs: list[str]
    trappan_step: int
    suggestions: list[Suggestion] = []
    """The suggested organisations with kind, roles and areas (empty in events from before decision 24)."""
