"""Events produced by intake."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

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
    handed_over: bool = False
    """True when the case was handed to another unit (the concern moves to the new BBA's inbox)."""


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


OROSANMALAN_BASIS = "SoL 14 kap. 1 §"
"""The duty to report to social services at once when a child may be at risk of harm (orosanmälan)."""


class ReportFiled(Event):
    """An orosanmälan: a professional's report to the social services of the child's municipality.

    Identifying, and sent without consent because the law obliges the reporter (``statutory_basis``):
    it leaves only through ``egress.file_statutory_report`` and only a member of kind social services
    accepts it. The subject is the reporter's own server-generated report id, never a case id.
    """

    type: ClassVar[str] = "intake.report.filed.v1"
    identifying: ClassVar[bool] = True
    statutory_basis: ClassVar[str] = OROSANMALAN_BASIS
    sender_fields: ClassVar[tuple[str, ...]] = ("reporting_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("receiving_org",)
    report_id: str = Field(max_length=64)
    reporting_org: str = Field(max_length=32)
    receiving_org: str = Field(max_length=32)
    municipality_code: str = Field(pattern=r"^[0-9]{4}$", description="The child's municipality the receiver serves.")
    child_personnummer: str = Field(max_length=12)
    child_name: str = Field(max_length=200)
    protected_identity: bool
    """Skyddad identitet: the receiver narrows every output; the reporting unit is then left out."""
    grounds: str = Field(min_length=1, max_length=4000)
    """What the reporter noticed, in the reporter's own words."""
    wheel_id: str = Field(max_length=64)
    wheel_areas: list[AreaCode] = Field(default_factory=list, max_length=20)
    reporting_unit: str | None = Field(None, max_length=200)
    """The reporting unit's name (None for a child with protected identity: it would tell where the child is)."""
    reported_by_role: str = Field(max_length=32)
    contact_user: str = Field(max_length=128)
    """Whom social services contact at the reporting organisation."""
    urgent: bool
    legal_basis: str = Field(max_length=64)
    filed_at: datetime


class ReportAcknowledged(Event):
    """Social services received an orosanmälan: the receipt back to the reporter (names no child)."""

    type: ClassVar[str] = "intake.report.acknowledged.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("receiving_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("reporting_org",)
    report_id: str = Field(max_length=64)
    """The reporter's own id of the report."""
    reporting_org: str = Field(max_length=32)
    receiving_org: str = Field(max_length=32)
    receiver_reference: str = Field(max_length=64)
    """Social services' own id of the received report, to quote when calling them."""
    received_at: datetime
