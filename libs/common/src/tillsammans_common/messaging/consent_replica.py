"""The local consent replica and the decision every egress and ingress asks.

Each service that sends or receives identifying data keeps its own copy of the consents that
name its organisation, fed by consent events, so a decision needs no remote call.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from tillsammans_common.db import utcnow
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.models import ConsentGrant


class Decision(BaseModel):
    """May ``disclosing_org`` disclose these categories about this child to ``receiving_org`` now?"""

    allowed: bool
    consent_id: str | None = None
    reason: str


def apply_granted(session: Session, event: ConsentGranted) -> None:
    """Store (or refresh) a granted consent; a withdrawal already seen is kept."""
    grant = session.get(ConsentGrant, event.consent_id)
    if grant is None:
        grant = ConsentGrant(consent_id=event.consent_id, case_id=event.case_id, child_key=event.child_key,
                             disclosing_org=event.disclosing_org, receiving_orgs=[], categories=[],
                             purpose=event.purpose, valid_from=event.valid_from, valid_until=event.valid_until)
    grant.receiving_orgs = list(event.receiving_orgs)
    grant.categories = list(event.categories)
    grant.purpose = event.purpose
    grant.valid_from = event.valid_from
    grant.valid_until = event.valid_until
    session.add(grant)


def apply_withdrawn(session: Session, event: ConsentWithdrawn) -> None:
    """Mark a consent withdrawn; a withdrawal that overtakes its grant is stored as withdrawn."""
    grant = session.get(ConsentGrant, event.consent_id)
    if grant is None:
        grant = ConsentGrant(consent_id=event.consent_id, case_id=event.case_id, child_key=event.child_key,
                             disclosing_org=event.disclosing_org, receiving_orgs=list(event.receiving_orgs),
                             categories=[], purpose="", valid_from=event.withdrawn_at,
                             valid_until=event.withdrawn_at)
    grant.withdrawn_at = event.withdrawn_at
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
        missing = sorted(set(categories) - set(grant.categories))
        if receiving_org not in grant.receiving_orgs:
            reasons.append("consent does not name the receiving organisation")
        elif grant.withdrawn_at is not None:
            reasons.append("consent was withdrawn")
        elif grant.purpose != purpose:
            reasons.append("consent is for another purpose")
        elif missing:
            reasons.append(f"consent does not cover {', '.join(missing)}")
        elif not _aware(grant.valid_from) <= at <= _aware(grant.valid_until):
            reasons.append("consent is not valid at this time")
        else:
            return Decision(allowed=True, consent_id=grant.consent_id, reason="covered by consent")
    return Decision(allowed=False, reason=reasons[0] if reasons else "no consent recorded")


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def keep_replica(infra: Any, *, on_withdrawn: Callable[[Session, ConsentWithdrawn], None] | None = None) -> None:
    """Subscribe a service to the consents of its own organisation and those replicated to it.

    ``on_withdrawn`` runs in the same transaction as the withdrawal, e.g. to mark what was
    received under the consent as withdrawn.
    """
    from tillsammans_common.events import Envelope
    from tillsammans_common.messaging.consumer import consume

    def granted(session: Session, _: Envelope, event: ConsentGranted) -> None:
        apply_granted(session, event)

    def withdrawn(session: Session, _: Envelope, event: ConsentWithdrawn) -> None:
        apply_withdrawn(session, event)
        if on_withdrawn is not None:
            on_withdrawn(session, event)

    for from_other_orgs, suffix in ((False, "own"), (True, "replicated")):
        consume(infra.broker, infra.engine, infra.settings, event=ConsentGranted, handler=granted,
                durable=f"consent-granted-{suffix}", from_other_orgs=from_other_orgs)
        consume(infra.broker, infra.engine, infra.settings, event=ConsentWithdrawn, handler=withdrawn,
                durable=f"consent-withdrawn-{suffix}", from_other_orgs=from_other_orgs)
