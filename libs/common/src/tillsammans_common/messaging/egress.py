"""The one way out of an organisation: identifying messages only under consent, else anonymous."""

from __future__ import annotations

import re

from sqlmodel import Session

from tillsammans_common.errors import ConsentRequired, InvalidField, ManualReviewRequired
from tillsammans_common.events import Envelope, Event
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.messaging.consent_replica import decide
from tillsammans_common.messaging.outbox import record_cross_org
from tillsammans_common.settings import ServiceSettings

# Anything that looks like a personnummer or samordningsnummer, with or without century/separator.
_IDENTITY_NUMBER = re.compile(r"(?<!\d)(\d{2})?\d{6}[-+]?\d{4}(?!\d)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _check_peer(settings: ServiceSettings, to_org: str) -> None:
    if to_org == settings.org or to_org not in settings.peers:
        raise InvalidField("org", f"'{to_org}' is not another organisation of the federation")


def disclose(
    session: Session,
    event: Event,
    *,
    settings: ServiceSettings,
    to_org: str,
    subject: str,
    protected_identity: bool = False,
    manually_reviewed: bool = False,
) -> Envelope:
    """Queue an identifying message to ``to_org`` if a consent covers it; raise ConsentRequired if not."""
    _check_peer(settings, to_org)
    if protected_identity and not manually_reviewed:
        raise ManualReviewRequired("a person must review this disclosure before it is sent", org=to_org)
    if not event.identifying:
        raise TypeError(f"{event.type} carries no identity; use send_anonymous()")
    decision = decide(session, disclosing_org=settings.org, receiving_org=to_org,
                      child_key=event.child_key,  # type: ignore[attr-defined]
                      categories=event.consent_categories, purpose=event.consent_purpose)
    if not decision.allowed:
        raise ConsentRequired(f"no consent covers disclosure to {to_org}: {decision.reason}",
                              org=to_org, reason=decision.reason)
    envelope = Envelope.wrap(event, source=settings.source, subject=subject, consent_id=decision.consent_id)
    record_cross_org(session, envelope, from_org=settings.org, to_org=to_org)
    return envelope


def send_anonymous(session: Session, event: Event, *, settings: ServiceSettings, to_org: str, subject: str) -> Envelope:
    """Queue a message that carries no identity; refuse anything that looks like an identity number."""
    _check_peer(settings, to_org)
    if event.identifying:
        raise TypeError(f"{event.type} identifies a child; use disclose()")
    for field, value in event.model_dump(mode="json").items():
        for text in value if isinstance(value, list) else [value]:
            # Ids this system generates are UUIDs, whose digit runs can look like an identity number.
            if isinstance(text, str) and not _UUID.fullmatch(text) and _IDENTITY_NUMBER.search(text):
                raise InvalidField(field, "an anonymous consultation must not contain an identity number")
    envelope = Envelope.wrap(event, source=settings.source, subject=subject)
    record_cross_org(session, envelope, from_org=settings.org, to_org=to_org)
    return envelope


def share_consent(session: Session, event: ConsentGranted | ConsentWithdrawn, *, settings: ServiceSettings,
                  subject: str) -> None:
    """Replicate a consent (pseudonymous: child key, no identity) to each organisation it names."""
    envelope = Envelope.wrap(event, source=settings.source, subject=subject, consent_id=event.consent_id)
    for to_org in event.receiving_orgs:
        _check_peer(settings, to_org)
        record_cross_org(session, envelope, from_org=settings.org, to_org=to_org)
