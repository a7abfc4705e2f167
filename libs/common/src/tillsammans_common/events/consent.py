"""Events produced by consent; also replicated to the receiving organisations (pseudonymous)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from tillsammans_common.events import Event


class ConsentGranted(Event):
    """Guardians (and the child by maturity) consented to a disclosure (samtycke)."""

    type: ClassVar[str] = "consent.consent.granted.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("disclosing_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("receiving_orgs",)
    consent_id: str
    case_id: str | None = None
    """The discloser's own case: on its own stream only, never in a copy sent to another organisation."""
    child_key: str
    """The discloser's own key on its own stream; the pair key of the two organisations in a copy sent across."""
    disclosing_org: str
    receiving_orgs: list[str]
    categories: list[str]
    purpose: str
    valid_from: datetime
    valid_until: datetime


class ConsentWithdrawn(Event):
    """A consent was withdrawn; receivers stop receiving and mark what they got under it."""

    type: ClassVar[str] = "consent.consent.withdrawn.v1"
    sender_fields: ClassVar[tuple[str, ...]] = ("disclosing_org",)
    receiver_fields: ClassVar[tuple[str, ...]] = ("receiving_orgs",)
    consent_id: str
    case_id: str | None = None
    child_key: str
    disclosing_org: str
    receiving_orgs: list[str]
    withdrawn_at: datetime
