"""The local consent replica and the decision every receiver asks before it stores anything.

Each service keeps its own copy of the consents that name its organisation, fed by consent events,
so a receiver's check needs no remote call. Disclosures are not decided here: the discloser's
consent service decides them from its own record (messaging/gate.py, decision 8).

A consent replicated from another organisation is that organisation's own, names this one, and never
changes once recorded: it can neither touch this organisation's consents nor a third one's, nor be
widened by a later message with the same id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from tillsammans_common.db import utcnow
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.messaging.refusals import Reject
from tillsammans_common.models import ConsentGrant

# The purpose of a consent known only from its withdrawal (which overtook the grant): no terms yet.
_TERMS_UNKNOWN = ""
FORGOTTEN_KEY = ""
"""The child key of a replicated consent once it is withdrawn: the receiver keeps no link to the child."""


class Decision(BaseModel):
    """May ``disclosing_org`` disclose these categories about this child to ``receiving_org`` now?"""

    allowed: bool
    consent_id: str | None = None
    reason: str


def _check_origin(event: ConsentGranted | ConsentWithdrawn, *, org: str | None, replicated_from: str | None) -> None:
    # Without org the caller is the consent service recording its own decision (or a test).
    if org is None:
        return
    if replicated_from is None:
        if event.disclosing_org != org:
            raise Reject("a consent on this organisation's own stream must be its own", code="not_own_consent")
        return
    if replicated_from == org or event.disclosing_org == org:
        raise Reject("this organisation's own consents never arrive from another organisation", code="own_consent")
    if event.disclosing_org != replicated_from:
        raise Reject("disclosing_org names another organisation than the sender", code="sender_mismatch")
    if org not in event.receiving_orgs:
        raise Reject("a replicated consent must name this organisation", code="not_a_receiver")
    if event.case_id:
        # The discloser's case id stays at home (decision 11); a copy that carries one was not made by egress.
        raise Reject("a replicated consent never carries the discloser's case id", code="case_id_crossed")


def grant_of(session: Session, *, disclosing_org: str, consent_id: str) -> ConsentGrant | None:
    """The consent ``disclosing_org`` recorded under ``consent_id``; another discloser's same id is another consent."""
    return session.get(ConsentGrant, {"consent_id": consent_id, "disclosing_org": disclosing_org})


def _stored(session: Session, event: ConsentGranted | ConsentWithdrawn) -> ConsentGrant | None:
    # Looked up under the discloser the event names (which the origin check proved is the sender): a
    # message can only ever reach the sender's own consent with that id, and no member can squat an id
    # that another member's consent will arrive with.
    return grant_of(session, disclosing_org=event.disclosing_org, consent_id=event.consent_id)


def _terms_of(grant: ConsentGrant | ConsentGranted, *, with_key: bool = True) -> tuple[object, ...]:
    # A copy sent across carries no case id (stored as ""): the discloser's case stays at home. A
    # withdrawn replica has forgotten its key, so a replay of its grant is compared without it.
    return (grant.case_id or "", grant.child_key if with_key else "", grant.purpose, frozenset(grant.receiving_orgs),
            frozenset(grant.categories), _utc(grant.valid_from), _utc(grant.valid_until))


def apply_granted(session: Session, event: ConsentGranted, *, org: str | None = None,
                  replicated_from: str | None = None) -> None:
    """Record a granted consent once; its terms never change, an identical replay is a no-op.

    ``org`` is this organisation, ``replicated_from`` the sender the broker proved (when the consent
    came from another organisation's inbox); with them a consent that is not the sender's own, does
    not name this organisation or claims this organisation's own is refused (Reject). A grant that
    re-uses a recorded id with other terms (wider or not) is refused. A withdrawal already seen is kept.
    """
    _check_origin(event, org=org, replicated_from=replicated_from)
    grant = _stored(session, event)
    if grant is None:
        session.add(ConsentGrant(
            consent_id=event.consent_id, case_id=event.case_id or "", child_key=event.child_key,
            disclosing_org=event.disclosing_org, receiving_orgs=list(event.receiving_orgs),
            categories=list(event.categories), purpose=event.purpose, valid_from=_utc(event.valid_from),
            valid_until=_utc(event.valid_until)))
        return
    if grant.purpose == _TERMS_UNKNOWN and not grant.categories:
        # Its withdrawal overtook it: record the terms, and it stays withdrawn.
        if grant.child_key not in (FORGOTTEN_KEY, event.child_key):
            raise Reject("the grant names another child than its withdrawal", code="terms_changed")
        grant.case_id = event.case_id or ""
        grant.receiving_orgs = list(event.receiving_orgs)
        grant.categories = list(event.categories)
        grant.purpose = event.purpose
        grant.valid_from = _utc(event.valid_from)
        grant.valid_until = _utc(event.valid_until)
        session.add(grant)
        return
    if _terms_of(grant, with_key=grant.child_key != FORGOTTEN_KEY) != _terms_of(
            event, with_key=grant.child_key != FORGOTTEN_KEY):
        # A consent is what the guardians agreed to; a message cannot widen it (or quietly change it).
        raise Reject("a recorded consent's terms never change", code="terms_changed")


def apply_withdrawn(session: Session, event: ConsentWithdrawn, *, org: str | None = None,
                    replicated_from: str | None = None) -> None:
    """Mark a consent withdrawn (the first withdrawal counts); one that overtakes its grant is stored as withdrawn.

    ``org`` and ``replicated_from`` as for ``apply_granted``: a withdrawal may only touch the sender's
    own consent with that id, never this organisation's nor a third one's.
    """
    _check_origin(event, org=org, replicated_from=replicated_from)
    grant = _stored(session, event)
    if grant is None:
        # Stored under its discloser: a later grant with this id from anyone else is refused.
        grant = ConsentGrant(consent_id=event.consent_id, case_id=event.case_id or "", child_key=event.child_key,
                             disclosing_org=event.disclosing_org, receiving_orgs=list(event.receiving_orgs),
                             categories=[], purpose=_TERMS_UNKNOWN, valid_from=_utc(event.withdrawn_at),
                             valid_until=_utc(event.withdrawn_at))
    if grant.withdrawn_at is None:
        grant.withdrawn_at = _utc(event.withdrawn_at)
    if replicated_from is not None:
        # The pair's key of the child is linkable data the receiver may no longer keep; the consent id
        # and its withdrawal stay, so a late message under it is still refused.
        grant.child_key = FORGOTTEN_KEY
    session.add(grant)


def decide(
    session: Session,
    *,
    disclosing_org: str,
    receiving_org: str,
    child_key: str,
    categories: list[str] | tuple[str, ...],
    purpose: str,
    at: datetime | None = None,
    consent_id: str | None = None,
) -> Decision:
    """Find a consent that covers the disclosure now; explain why not when none does."""
    at = at or utcnow()
    query = select(ConsentGrant).where(ConsentGrant.child_key == child_key,
                                       ConsentGrant.disclosing_org == disclosing_org)
    if consent_id is not None:
        query = query.where(ConsentGrant.consent_id == consent_id)
    grants = session.exec(query.order_by(col(ConsentGrant.valid_until).desc())).all()
    reasons: list[str] = []
    for grant in grants:
        reason = why_not_covered(Terms(receiving_orgs=grant.receiving_orgs, categories=grant.categories,
                                       purpose=grant.purpose, valid_from=grant.valid_from,
                                       valid_until=grant.valid_until, withdrawn=grant.withdrawn_at is not None),
                                 receiving_org=receiving_org, categories=categories, purpose=purpose, at=at)
        if reason is None:
            return Decision(allowed=True, consent_id=grant.consent_id, reason="covered by consent")
        reasons.append(reason)
    return Decision(allowed=False, reason=reasons[0] if reasons else "no consent recorded")


@dataclass(frozen=True)
class Terms:
    """What a consent covers, wherever it is stored (the discloser's record or a replica)."""

    receiving_orgs: list[str]
    categories: list[str]
    purpose: str
    valid_from: datetime
    valid_until: datetime
    withdrawn: bool


def why_not_covered(terms: Terms, *, receiving_org: str, categories: Iterable[str], purpose: str,
                    at: datetime) -> str | None:
    """Why a consent with these terms does not cover the disclosure at ``at``, or None when it does."""
    missing = sorted(set(categories) - set(terms.categories))
    if receiving_org not in terms.receiving_orgs:
        return "consent does not name the receiving organisation"
    if terms.withdrawn:
        return "consent was withdrawn"
    if terms.purpose != purpose:
        return "consent is for another purpose"
    if missing:
        return f"consent does not cover {', '.join(missing)}"
    if not _aware(terms.valid_from) <= at <= _aware(terms.valid_until):
        return "consent is not valid at this time"
    return None


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    # SQLite keeps the wall time and drops the offset, so only UTC survives a round trip unchanged.
    return _aware(value).astimezone(UTC)


def keep_replica(infra: Any, *, on_withdrawn: Callable[[Session, ConsentWithdrawn], None] | None = None) -> None:
    """Subscribe a service to the consents of its own organisation and those replicated to it.

    ``on_withdrawn`` runs in the same transaction as the withdrawal, e.g. to mark what was
    received under the consent as withdrawn. Once a grant or withdrawal has committed, the service's
    parked messages are tried again (applied if now covered, dead-lettered if now withdrawn).
    """
    from tillsammans_common.events import Envelope
    from tillsammans_common.messaging.consumer import consume
    from tillsammans_common.messaging.parking import wake

    org: str = infra.settings.org

    def origin(envelope: Envelope, from_other_orgs: bool) -> str | None:
        # The inbox consumer has already checked the envelope's source against the subject.
        return envelope.source_org if from_other_orgs else None

    def granted(from_other_orgs: bool, session: Session, envelope: Envelope, event: ConsentGranted) -> None:
        apply_granted(session, event, org=org, replicated_from=origin(envelope, from_other_orgs))

    def withdrawn(from_other_orgs: bool, session: Session, envelope: Envelope, event: ConsentWithdrawn) -> None:
        apply_withdrawn(session, event, org=org, replicated_from=origin(envelope, from_other_orgs))
        if on_withdrawn is not None:
            on_withdrawn(session, event)

    arrived = partial(wake, infra.broker)
    for from_other_orgs, suffix in ((False, "own"), (True, "replicated")):
        consume(infra.broker, infra.engine, infra.settings, event=ConsentGranted,
                handler=partial(granted, from_other_orgs), durable=f"consent-granted-{suffix}",
                from_other_orgs=from_other_orgs, after_commit=arrived)
        consume(infra.broker, infra.engine, infra.settings, event=ConsentWithdrawn,
                handler=partial(withdrawn, from_other_orgs), durable=f"consent-withdrawn-{suffix}",
                from_other_orgs=from_other_orgs, after_commit=arrived)
