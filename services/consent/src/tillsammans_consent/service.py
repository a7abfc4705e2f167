"""Consent's domain operations: record and withdraw consents, decide disclosures, list replicas."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import update
from sqlmodel import Session, col, select

from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.db import utcnow
from tillsammans_common.errors import Conflict, InvalidField, NotFound
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.messaging.consent_replica import Decision, apply_granted, apply_withdrawn, decide
from tillsammans_common.messaging.egress import share_consent
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.models import ConsentGrant
from tillsammans_common.personnummer import InvalidIdentityNumber, age_on, child_key, normalize
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.models import (
    Consent,
    ConsentCreate,
    ConsentDetail,
    ConsentHistory,
    ConsentStatus,
    ConsentWithdraw,
    Custody,
    DecisionRequest,
    GrantorRole,
    HistoryAction,
)

# A case id becomes the subject of events that leave the organisation, so it must not hide a personnummer.
_DIGIT_RUN = re.compile(r"(?<!\d)(?:\d{8}|\d{6})[-+]?\d{4}(?!\d)")


def _swedish_time() -> tzinfo:
    # Age turns over on the Swedish calendar date; fall back to UTC where no tz database is installed.
    try:
        return ZoneInfo("Europe/Stockholm")
    except ZoneInfoNotFoundError:
        return UTC


SWEDISH_TIME = _swedish_time()


def check_grant(data: ConsentCreate, *, settings: ConsentSettings, now: datetime) -> None:
    """Apply the rules a consent must meet; raise InvalidField naming the first field that breaks one."""
    if any(_is_identity_number(match) for match in _DIGIT_RUN.findall(data.case_id)):
        raise InvalidField("case_id", "must be an opaque case id, not an identity number")
    others = sorted(set(settings.peers) - {settings.org})
    # The offending value is not echoed: only the known organisations are, so no input leaks into errors.
    if any(org not in others for org in data.receiving_orgs):
        raise InvalidField("receiving_orgs", f"each must be another federation member: {', '.join(others)}")
    if data.valid_until <= data.valid_from:
        raise InvalidField("valid_until", "must be after valid_from")
    if data.valid_until - data.valid_from > timedelta(days=settings.max_validity_days):
        raise InvalidField("valid_until", f"a consent may cover at most {settings.max_validity_days} days")
    if data.valid_until <= now:
        raise InvalidField("valid_until", "lies in the past: the consent would never be valid")
    guardians = {" ".join(g.name.casefold().split()) for g in data.grantors if g.role is GrantorRole.GUARDIAN}
    if data.custody is Custody.JOINT and len(guardians) < 2:
        raise InvalidField("grantors", "joint custody needs the consent of both guardians (two distinct guardians)")
    if not guardians:
        raise InvalidField("grantors", "a guardian's consent is required")
    # The number only tells the age here; nothing about it goes into the error.
    age = age_on(data.child.personnummer, data.valid_from.astimezone(SWEDISH_TIME).date())
    if age >= settings.mature_age:
        if not any(g.role is GrantorRole.CHILD for g in data.grantors):
            raise InvalidField("grantors", f"from age {settings.mature_age} the child's own consent is required "
                                           "(a grantor with role child)")
    elif data.child_view is None:
        raise InvalidField("child_view", "the child's view must be recorded: heard, or not heard with a note why")
    elif not data.child_view.heard and not (data.child_view.note or "").strip():
        raise InvalidField("child_view.note", "say why the child was not heard")


def _is_identity_number(candidate: str) -> bool:
    try:
        normalize(candidate)
    except InvalidIdentityNumber:
        return False
    return True


def grant_consent(session: Session, *, settings: ConsentSettings, principal: Principal, data: ConsentCreate) -> Consent:
    """Record a consent, update the local replica and replicate it to the named organisations, in one transaction."""
    now = utcnow()
    check_grant(data, settings=settings, now=now)
    # SQLite drops offsets, so store UTC; the event carries the same instants to every organisation.
    valid_from, valid_until = data.valid_from.astimezone(UTC), data.valid_until.astimezone(UTC)
    receiving_orgs = list(dict.fromkeys(data.receiving_orgs))
    categories = [category.value for category in dict.fromkeys(data.categories)]
    consent = Consent(
        id=str(uuid.uuid4()), case_id=data.case_id, child_personnummer=data.child.personnummer,
        child_key=child_key(data.child.personnummer, settings.child_key_secret.get_secret_value()),
        custody=data.custody, grantors=[grantor.model_dump(mode="json") for grantor in data.grantors],
        child_view=data.child_view.model_dump(mode="json") if data.child_view is not None else None,
        disclosing_org=settings.org, receiving_orgs=receiving_orgs, categories=categories, purpose=data.purpose,
        valid_from=valid_from, valid_until=valid_until, recorded_by=principal.user, created_at=now,
    )
    session.add(consent)
    session.add(ConsentHistory(consent_id=consent.id, action=HistoryAction.GRANTED, recorded_by=principal.user,
                               by=",".join(grantor.role.value for grantor in data.grantors), at=now))
    event = ConsentGranted(
        consent_id=consent.id, case_id=consent.case_id, child_key=consent.child_key, disclosing_org=settings.org,
        receiving_orgs=receiving_orgs, categories=categories, purpose=data.purpose.value,
        valid_from=valid_from, valid_until=valid_until,
    )
    apply_granted(session, event)
    record_event(session, event, source=settings.source, org=settings.org, subject=consent.case_id)
    share_consent(session, event, settings=settings, subject=consent.case_id)
    audit(session, principal, "consent.grant", case_id=consent.case_id, purpose=data.purpose.value)
    return consent


def withdraw_consent(session: Session, *, settings: ConsentSettings, principal: Principal, consent_id: str,
                     data: ConsentWithdraw) -> Consent:
    """Withdraw a consent and tell every organisation it named, in one transaction; 409 if already withdrawn."""
    consent = session.get(Consent, consent_id)
    if consent is None:
        raise NotFound("no such consent")
    now = utcnow()
    # A conditional update, so two concurrent withdrawals cannot both succeed and write two history rows.
    result = session.execute(
        update(Consent).where(col(Consent.id) == consent_id, col(Consent.status) == ConsentStatus.ACTIVE)
        .values(status=ConsentStatus.WITHDRAWN, withdrawn_at=now, withdrawn_by=data.withdrawn_by)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("the consent is already withdrawn")
    session.refresh(consent)
    session.add(ConsentHistory(consent_id=consent.id, action=HistoryAction.WITHDRAWN, by=data.withdrawn_by,
                               recorded_by=principal.user, at=now))
    event = ConsentWithdrawn(consent_id=consent.id, case_id=consent.case_id, child_key=consent.child_key,
                             disclosing_org=consent.disclosing_org, receiving_orgs=list(consent.receiving_orgs),
                             withdrawn_at=now)
    apply_withdrawn(session, event)
    record_event(session, event, source=settings.source, org=settings.org, subject=consent.case_id)
    share_consent(session, event, settings=settings, subject=consent.case_id)
    audit(session, principal, "consent.withdraw", case_id=consent.case_id, purpose=consent.purpose.value)
    return consent


def get_consent(session: Session, *, principal: Principal, consent_id: str) -> ConsentDetail:
    """Read a consent with the child's identity, grantors and history; the read is audited."""
    consent = session.get(Consent, consent_id)
    if consent is None:
        raise NotFound("no such consent")
    history = session.exec(select(ConsentHistory).where(ConsentHistory.consent_id == consent_id)
                           .order_by(col(ConsentHistory.id))).all()
    audit(session, principal, "consent.read", case_id=consent.case_id, purpose=consent.purpose.value)
    return ConsentDetail.of_with_history(consent, list(history))


def case_consents(session: Session, *, principal: Principal, case_id: str) -> list[Consent]:
    """The consents recorded in a case, newest first; one audit record per consent read (with its purpose)."""
    consents = session.exec(select(Consent).where(Consent.case_id == case_id)
                            .order_by(col(Consent.created_at).desc())).all()
    for consent in consents:
        audit(session, principal, "consent.list", case_id=case_id, purpose=consent.purpose.value)
    if not consents:
        audit(session, principal, "consent.list", case_id=case_id)
    return list(consents)


def decide_disclosure(session: Session, *, settings: ConsentSettings, principal: Principal,
                      data: DecisionRequest) -> Decision:
    """Answer from the local replica whether a consent covers the disclosure; audited with its outcome."""
    if data.child is not None and data.child_key is None:
        key = child_key(data.child.personnummer, settings.child_key_secret.get_secret_value())
    elif data.child is None and data.child_key is not None:
        key = data.child_key
    else:
        raise InvalidField("child", "give either child.personnummer or child_key, not both")
    members = sorted({settings.org, *settings.peers})
    for field, org in (("disclosing_org", data.disclosing_org), ("receiving_org", data.receiving_org)):
        if org not in members:
            raise InvalidField(field, f"must be an organisation of the federation: {', '.join(members)}")
    if data.receiving_org == data.disclosing_org:
        raise InvalidField("receiving_org", "must differ from disclosing_org")
    decision = decide(session, disclosing_org=data.disclosing_org, receiving_org=data.receiving_org,
                      child_key=key, categories=[category.value for category in data.categories],
                      purpose=data.purpose.value, at=data.at)
    grant = session.get(ConsentGrant, decision.consent_id) if decision.consent_id else None
    audit(session, principal, "consent.decide", case_id=grant.case_id if grant else None,
          purpose=data.purpose.value, outcome="allowed" if decision.allowed else "refused")
    return decision


def replicas(session: Session, *, settings: ConsentSettings, principal: Principal,
             disclosing_org: str | None = None) -> list[ConsentGrant]:
    """Consents other organisations replicated to this one (pseudonymous), newest validity first."""
    query = select(ConsentGrant).where(ConsentGrant.disclosing_org != settings.org)
    if disclosing_org is not None:
        query = query.where(ConsentGrant.disclosing_org == disclosing_org)
    grants = session.exec(query.order_by(col(ConsentGrant.valid_until).desc())).all()
    audit(session, principal, "consent.replicas.read")
    return list(grants)
