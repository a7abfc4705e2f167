"""The one way out of an organisation: identifying messages only under consent, else anonymous.

An identifying message is decided by this organisation's consent service, from its own record,
twice: when the user asks (``request_permits``, so a refusal is immediate and nothing is written)
and again by the relay as the message leaves (see messaging/gate.py).

One documented exception: a report the law obliges the sender to make (an orosanmälan, SoL 14 kap.
1 §) needs no consent. It has its own function, ``file_statutory_report``, that takes only event types
declaring a ``statutory_basis`` and sends them only to the receiver the law names (docs/decisions/0023).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from sqlmodel import Session

from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.errors import ConsentRequired, InvalidField, ManualReviewRequired, ServiceUnavailable
from tillsammans_common.events import Envelope, Event
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.messaging.gate import DisclosureAsk, DisclosureVerdict, GateUnavailable, Phase, ask
from tillsammans_common.messaging.outbox import record_cross_org
from tillsammans_common.personnummer import pair_key
from tillsammans_common.screen import screen_fields
from tillsammans_common.settings import OrgKind, ServiceSettings
from tillsammans_common.telemetry import current_trace_id

# Anything that looks like a personnummer or samordningsnummer, with or without century/separator.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _check_peer(settings: ServiceSettings, to_org: str) -> None:
    if to_org == settings.org or to_org not in settings.peers:
        raise InvalidField("org", f"'{to_org}' is not another organisation of the federation")


@dataclass(frozen=True)
class Disclosure:
    """An identifying message that wants to leave, with the question its consent service must answer."""

    event: Event
    envelope_id: str
    to_org: str
    subject: str
    ask: DisclosureAsk


def prepare_disclosure(event: Event, *, settings: ServiceSettings, to_org: str, subject: str,
                       principal: Principal, child_ref: str) -> Disclosure:
    """Build the disclosure and its question to the consent service (no database, no broker)."""
    _check_peer(settings, to_org)
    if not event.identifying:
        raise TypeError(f"{event.type} carries no identity; use send_anonymous()")
    if event.statutory_basis:
        raise TypeError(f"{event.type} is a statutory report; use file_statutory_report()")
    envelope_id = str(uuid.uuid4())
    ask = DisclosureAsk(event_id=envelope_id, event_type=event.type, receiving_org=to_org, child_ref=child_ref,
                        categories=list(event.consent_categories), purpose=event.disclosure_purpose(),
                        requested_by=principal.user, requested_role=principal.role.value,
                        trace_id=current_trace_id())
    return Disclosure(event=event, envelope_id=envelope_id, to_org=to_org, subject=subject, ask=ask)


async def request_permits(connection: Client, settings: ServiceSettings,
                          disclosures: list[Disclosure]) -> list[DisclosureVerdict]:
    """Ask this organisation's consent service about each disclosure; 503 when it cannot answer."""
    if not disclosures:
        return []
    try:
        return await ask(connection, settings.org, Phase.QUEUE, [item.ask for item in disclosures])
    except GateUnavailable:
        raise ServiceUnavailable("the consent service did not answer; nothing was sent or saved, try again",
                                 dependency="consent") from None


def require_permit(disclosure: Disclosure, verdict: DisclosureVerdict) -> None:
    """Raise ConsentRequired unless ``verdict`` permits exactly this disclosure."""
    if verdict.event_id != disclosure.envelope_id:
        raise ValueError("the verdict answers another disclosure")
    if not verdict.allowed or verdict.consent_id is None:
        raise ConsentRequired(f"no consent covers disclosure to {disclosure.to_org}: {verdict.reason}",
                              org=disclosure.to_org, reason=verdict.reason, decision_id=verdict.decision_id)


def disclose(session: Session, disclosure: Disclosure, verdict: DisclosureVerdict, *, settings: ServiceSettings,
             protected_identity: bool = False, manually_reviewed: bool = False) -> Envelope:
    """Queue a disclosure its consent service permitted; raise ConsentRequired if it did not.

    The relay asks the consent service again just before the message leaves, so a consent
    withdrawn in between stops it.
    """
    if protected_identity and not manually_reviewed:
        raise ManualReviewRequired("a person must review this disclosure before it is sent", org=disclosure.to_org)
    require_permit(disclosure, verdict)
    envelope = Envelope.wrap(disclosure.event, source=settings.source, subject=disclosure.subject,
                             consent_id=verdict.consent_id, event_id=disclosure.envelope_id)
    gate: dict[str, Any] = disclosure.ask.model_copy(update={"consent_id": verdict.consent_id}).model_dump(
        mode="json")
    if verdict.usable_until is not None:
        # The relay may use this permit as it stands while it lasts, instead of asking again.
        gate["permit"] = verdict.model_dump(mode="json")
    record_cross_org(session, envelope, from_org=settings.org, to_org=disclosure.to_org, gate=gate)
    return envelope


def send_anonymous(session: Session, event: Event, *, settings: ServiceSettings, to_org: str, subject: str,
                   names: Iterable[str] = ()) -> Envelope:
    """Queue a message that carries no identity, after screening every text in it (see ``screen``).

    Refused (422 naming the field, never the value): an identity number in any written form, an
    e-mail address, a phone number, or one of ``names`` (the child's, when the caller knows the case).
    Ids this system generated (UUIDs) are not screened: their digit runs can look like anything.
    """
    _check_peer(settings, to_org)
    if event.identifying:
        raise TypeError(f"{event.type} identifies a child; use disclose()")
    texts: dict[str, list[str]] = {}
    # Typed values (timestamps, dates, numbers) are not text anyone wrote: only strings are screened. Rendered
    # as JSON, a timestamp's fraction of a second ("06:19:03.071234") reads like a phone number.
    for field, value in event.model_dump().items():
        values = value if isinstance(value, list) else [value]
        texts[field] = [text for text in values if isinstance(text, str) and not _UUID.fullmatch(text)]
    screen_fields(texts, names=names)
    envelope = Envelope.wrap(event, source=settings.source, subject=subject)
    record_cross_org(session, envelope, from_org=settings.org, to_org=to_org)
    return envelope


def share_consent(session: Session, event: ConsentGranted | ConsentWithdrawn, *, settings: ServiceSettings,
                  child: str) -> None:
    """Replicate a consent to each organisation it names: under the pair key, without the case.

    ``child`` is the normalized identity number, used only to compute each pair's key here. The
    subject is the consent id: nothing a client chose and nothing that links to the case crosses.
    """
    for to_org in event.receiving_orgs:
        _check_peer(settings, to_org)
        copy = event.model_copy(update={"case_id": None,
                                        "child_key": pair_key(child, settings.pair_secret(to_org))})
        envelope = Envelope.wrap(copy, source=settings.source, subject=event.consent_id, consent_id=event.consent_id)
        record_cross_org(session, envelope, from_org=settings.org, to_org=to_org)


def send_receipt(session: Session, event: Event, *, settings: ServiceSettings, to_org: str, subject: str) -> Envelope:
    """Queue a receipt or reply that names no child (e.g. a withdrawal applied) for another organisation."""
    _check_peer(settings, to_org)
    if event.identifying:
        raise TypeError(f"{event.type} identifies a child; use disclose()")
    envelope = Envelope.wrap(event, source=settings.source, subject=subject)
    record_cross_org(session, envelope, from_org=settings.org, to_org=to_org)
    return envelope


def file_statutory_report(session: Session, event: Event, *, settings: ServiceSettings, to_org: str, subject: str,
                          municipality_code: str, principal: Principal, case_id: str | None = None,
                          basis: str | None = None, protected: bool = False) -> Envelope:
    """Queue a report the law obliges this organisation to make, without consent (an orosanmälan).

    Only an event type that declares a ``statutory_basis`` (TypeError otherwise), only to a member of
    the federation of kind social services serving ``municipality_code`` (422 naming the field
    otherwise). The legal basis goes on the envelope's way out in the audit trail, as the purpose of
    the disclosure. Nothing else passes here: every other identifying message still needs its consent.
    """
    legal_basis = type(event).statutory_basis
    if not legal_basis or not event.identifying:
        raise TypeError(f"{event.type} declares no statutory basis; use disclose() under a consent")
    if getattr(event, "legal_basis", legal_basis) != legal_basis:
        raise InvalidField("legal_basis", f"must be the event's statutory basis, {legal_basis}")
    _check_peer(settings, to_org)
    if to_org not in settings.members_serving(OrgKind.SOCIAL_SERVICES, municipality_code):
        raise InvalidField("org", f"'{to_org}' is not the social services of municipality {municipality_code}")
    for field in type(event).receiver_fields:
        if getattr(event, field) != to_org:
            raise InvalidField(field, "must name the receiving organisation")
    for field in type(event).sender_fields:
        if getattr(event, field) != settings.org:
            raise InvalidField(field, "must name this organisation")
    envelope = Envelope.wrap(event, source=settings.source, subject=subject)
    # No gate: no consent is asked for, so none can be withdrawn before the relay sends it.
    record_cross_org(session, envelope, from_org=settings.org, to_org=to_org)
    audit(session, principal, f"disclose.statutory:{event.type}", case_id=case_id, purpose=legal_basis,
          record_id=envelope.id, basis=basis, protected=protected)
    return envelope
