"""Events produced by intake."""

from __future__ import annotations

from typing import ClassVar

from tillsammans_common.events import Event
from tillsammans_common.wheel import AreaCode


class ConcernRaised(Event):
    """A professional raised a concern about a child (oro)."""

    type: ClassVar[str] = "intake.concern.raised.v1"
    concern_id: str
    case_id: str
    unit_id: str
    wheel_areas: list[AreaCode]
    raised_by_role: str
    protected_identity: bool
    """From the child's record here: once any concern marked the child protected, every later one says so."""
    child_key: str = ""
    """This organisation's own pseudonymous key of the child, so its other services can find the child's record."""


class ConcernRouted(Event):
    """A concern was routed to the child's Barnets bästa-ansvarig (BBA) for the unit."""

    type: ClassVar[str] = "intake.concern.routed.v1"
    concern_id: str
    case_id: str
    unit_id: str
    bba_user: str
