"""Events produced by intake."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from tillsammans_common.events import Event
from tillsammans_common.wheel import AreaCode


class ConcernRaised(Event):
    """A professional raised a concern about a child (oro)."""

    type: ClassVar[str] = "intake.concern.raised.v1"
    concern_id: str
    case_id: str
    unit_id: str | None
    """None for a child with protected identity (the unit would tell where the child is)."""
    wheel_areas: list[AreaCode]
    wheel_id: str = "sormland"
    """The one wheel all wheel_areas are of (a concern never mixes two); absent in events from before it was sent."""
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
    unit_id: str | None
    """None for a child with protected identity."""
    bba_user: str


class CaseRecorded(Event):
    """A child's case was opened or changed at intake: what the organisation's other services need to know of it.

    Internal to the organisation (never crosses): the other services learn each case from it, so no
    client ever retypes a case id they could not have been given. No identity travels in it, only
    this organisation's own key of the child; for a child with protected identity not even the unit.
    """

    type: ClassVar[str] = "intake.case.recorded.v1"
    case_id: str
    unit_id: str | None
    """None for a child with protected identity: the unit would tell where the child is."""
    bba_user: str
    child_key: str
    protected_identity: bool
    municipality_code: str | None = None
    """SCB code of the child's municipality, whose members serve the child (decision 24); None when unknown
    and for a child with protected identity (it would tell where the child lives)."""


class DelegationRecorded(Event):
    """The BBA of a child's case delegated access to it for a period, or revoked such a delegation."""

    type: ClassVar[str] = "intake.case.delegation.v1"
    delegation_id: str
    case_id: str
    delegate_user: str
    granted_by: str
    valid_from: datetime
    valid_until: datetime
    revoked: bool = False
