"""Events produced by mapping."""

from __future__ import annotations

from typing import ClassVar

from tillsammans_common.events import Event
from tillsammans_common.wheel import AreaCode


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
