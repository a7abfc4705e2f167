"""Consent's domain operations: record and withdraw consents, decide disclosures, list replicas."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.cases import case_in_body, get_case
from tillsammans_common.db import utcnow
from tillsammans_common.errors import Conflict, InvalidField, NotFound
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.events.meetings import WithdrawalApplied
from tillsammans_common.messaging.consent_replica import (
    Decision,
    Terms,
    apply_granted,
    apply_withdrawn,
    decide,
    grant_of,
    why_not_covered,
)
from tillsammans_common.messaging.egress import share_consent
from tillsammans_common.messaging.gate import (
    AskBatch,
    DisclosureVerdict,
    Phase,
    Settlement,
    SettlementReport,
    VerdictBatch,
)
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.messaging.refusals import Reject
from tillsammans_common.models import ConsentGrant
from tillsammans_common.personnummer import InvalidIdentityNumber, age_on, child_key, normalize, pair_key
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.models import (
    Consent,
    ConsentAmend,
    ConsentCreate,
    ConsentDetail,
    ConsentHistory,
    ConsentStatus,
    ConsentWithdraw,
    Custody,
    DecisionFilter,
    DecisionOutcome,
    DecisionRequest,
    DisclosureDecision,
    GrantorRole,
    HistoryAction,
    LegalBasis,
    LegalBasisIn,
    WithdrawalReceipt,
)
from tillsammans_consent.text import consent_text

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
    # The number only tells the age here; nothing about it goes into the error.
    age = age_on(data.child.personnummer, data.valid_from.astimezone(SWEDISH_TIME).date())
    if age >= settings.mature_age:
        # A mature child controls their own secrecy: their consent suffices, and their no is a no.
        if data.child_view is not None and data.child_view.agrees is False:
            raise InvalidField("child_view.agrees", f"from age {settings.mature_age} the child decides: "
                                                    "the child's no is a no")
        if not any(g.role is GrantorRole.CHILD for g in data.grantors):
            raise InvalidField("grantors", f"from age {settings.mature_age} the child's own consent is required "
                                           "(a grantor with role child)")
        return
    if data.custody is Custody.JOINT and len(guardians) < 2:
        raise InvalidField("grantors", "joint custody needs the consent of both guardians (two distinct guardians)")
    if not guardians:
        raise InvalidField("grantors", "a guardian's consent is required")
    if data.child_view is None:
        raise InvalidField("child_view", "the child's view must be recorded: heard, or not heard with a note why")
    if not data.child_view.heard and not (data.child_view.note or "").strip():
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
    case = case_in_body(session, data.case_id)
    access = policy.check(principal, policy.Action.CASE_WORK, policy.Facts(case=policy.case_facts(session, case)))
    key = child_key(data.child.personnummer, settings.child_key_secret.get_secret_value())
    if key != case.child_key:
        # A consent names its child twice (case and identity); both must be the same child.
        raise InvalidField("child.personnummer", "is not the child of this case")
    consent = _record(session, settings=settings, user=principal.user, data=data, key=key, now=now)
    policy.audit_access(session, access, "consent.grant", purpose=data.purpose.value, record_id=consent.id)
    return consent


def _record(session: Session, *, settings: ConsentSettings, user: str, data: ConsentCreate, key: str, now: datetime,
            amends: Consent | None = None) -> Consent:
    # SQLite drops offsets, so store UTC; the event carries the same instants to every organisation.
    valid_from, valid_until = data.valid_from.astimezone(UTC), data.valid_until.astimezone(UTC)
    receiving_orgs = list(dict.fromkeys(data.receiving_orgs))
    categories = [category.value for category in dict.fromkeys(data.categories)]
    basis = data.legal_basis
    consent = Consent(
        id=str(uuid.uuid4()), case_id=data.case_id, child_personnummer=data.child.personnummer,
        child_key=key,
        custody=data.custody, grantors=[grantor.model_dump(mode="json") for grantor in data.grantors],
        child_view=data.child_view.model_dump(mode="json") if data.child_view is not None else None,
        disclosing_org=settings.org, receiving_orgs=receiving_orgs, categories=categories, purpose=data.purpose,
        valid_from=valid_from, valid_until=valid_until, recorded_by=user, created_at=now,
        legal_basis=(basis.basis if basis else settings.legal_basis).value,
        legal_basis_note=basis.note if basis else settings.legal_basis_note,
        revision=amends.revision + 1 if amends else 1, amends=amends.id if amends else None,
    )
    session.add(consent)
    session.add(ConsentHistory(consent_id=consent.id, action=HistoryAction.GRANTED, recorded_by=user,
                               by=",".join(grantor.role.value for grantor in data.grantors), at=now))
    event = ConsentGranted(
        consent_id=consent.id, case_id=consent.case_id, child_key=consent.child_key, disclosing_org=settings.org,
        receiving_orgs=receiving_orgs, categories=categories, purpose=data.purpose.value,
        valid_from=valid_from, valid_until=valid_until,
    )
    apply_granted(session, event)
    record_event(session, event, source=settings.source, org=settings.org, subject=consent.case_id)
    share_consent(session, event, settings=settings, child=consent.child_personnummer)
    return consent


def consent_facts(session: Session, consent_id: str) -> policy.Facts:
    """The policy's view of a consent: the child's case it was recorded in."""
    consent = session.get(Consent, consent_id)
    if consent is None:
        raise NotFound("no such consent")
    return policy.Facts(case=policy.case_facts(session, get_case(session, consent.case_id)), record_id=consent.id)


def withdraw_consent(session: Session, *, settings: ConsentSettings, access: policy.Access,
                     data: ConsentWithdraw) -> Consent:
    """Withdraw a consent and tell every organisation it named, in one transaction; 409 if already withdrawn.

    Withdrawal stops every revision: named by a revision that an amendment replaced, it withdraws
    the revision in force (the older ones already are).
    """
    consent = _current(session, access.facts.record_id or "")
    if consent.status is not ConsentStatus.ACTIVE:
        raise Conflict("the consent is already withdrawn")
    _withdraw(session, settings=settings, consent=consent, by=data.withdrawn_by, user=access.principal.user,
              action=HistoryAction.WITHDRAWN, now=utcnow())
    policy.audit_access(session, access, "consent.withdraw", purpose=consent.purpose.value, record_id=consent.id)
    return consent


def _current(session: Session, consent_id: str) -> Consent:
    # The newest revision of the consent: follow the amendments (a chain that ends, since each adds one).
    consent = session.get(Consent, consent_id)
    if consent is None:
        raise NotFound("no such consent")
    while consent.amended_by is not None:
        newer = session.get(Consent, consent.amended_by)
        if newer is None:
            break
        consent = newer
    return consent


def _withdraw(session: Session, *, settings: ConsentSettings, consent: Consent, by: str, user: str,
              action: HistoryAction, now: datetime) -> None:
    # A conditional update, so two concurrent withdrawals (or amendments) cannot both succeed.
    result = session.execute(
        update(Consent).where(col(Consent.id) == consent.id, col(Consent.status) == ConsentStatus.ACTIVE)
        .values(status=ConsentStatus.WITHDRAWN, withdrawn_at=now, withdrawn_by=by)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("the consent is already withdrawn")
    # The version moves in its own statement so the conditional update above stays the one that decides.
    session.execute(update(Consent).where(col(Consent.id) == consent.id)
                    .values(version=Consent.version + 1).execution_options(synchronize_session=False))
    session.refresh(consent)
    session.add(ConsentHistory(consent_id=consent.id, action=action, by=by, recorded_by=user, at=now))
    event = ConsentWithdrawn(consent_id=consent.id, case_id=consent.case_id, child_key=consent.child_key,
                             disclosing_org=consent.disclosing_org, receiving_orgs=list(consent.receiving_orgs),
                             withdrawn_at=now)
    apply_withdrawn(session, event)
    record_event(session, event, source=settings.source, org=settings.org, subject=consent.case_id)
    share_consent(session, event, settings=settings, child=consent.child_personnummer)


def amend_consent(session: Session, *, settings: ConsentSettings, access: policy.Access,
                  data: ConsentAmend) -> Consent:
    """Replace the consent in force by a new revision with the amended terms, in one transaction.

    The old revision is withdrawn (receivers purge what they got under it) and the new one granted
    and replicated, naming the old in ``amends``; the same rules as a new consent apply (422 naming
    the field, nothing written). 409 when the revision named is no longer in force.
    """
    old = session.get(Consent, access.facts.record_id or "")
    if old is None:
        raise NotFound("no such consent")
    if old.status is not ConsentStatus.ACTIVE:
        newer = f" (replaced by {old.amended_by})" if old.amended_by else ""
        raise Conflict(f"only the consent in force can be amended{newer}")
    basis = data.legal_basis or LegalBasisIn(basis=LegalBasis(old.legal_basis), note=old.legal_basis_note)
    create = ConsentCreate.model_validate({
        "case_id": old.case_id, "child": {"personnummer": old.child_personnummer},
        "custody": data.custody or old.custody, "grantors": data.grantors, "child_view": data.child_view,
        "receiving_orgs": data.receiving_orgs, "categories": data.categories, "purpose": old.purpose,
        "valid_from": data.valid_from, "valid_until": data.valid_until, "legal_basis": basis,
    })
    now = utcnow()
    check_grant(create, settings=settings, now=now)
    by = ",".join(grantor.role.value for grantor in data.grantors)
    _withdraw(session, settings=settings, consent=old, by=f"amended by {by}", user=access.principal.user,
              action=HistoryAction.AMENDED, now=now)
    new = _record(session, settings=settings, user=access.principal.user, data=create, key=old.child_key, now=now,
                  amends=old)
    old.amended_by = new.id
    session.add(old)
    policy.audit_access(session, access, "consent.amend", purpose=old.purpose.value, record_id=new.id)
    return new


def consent_text_of(session: Session, *, access: policy.Access) -> str:
    """The consent's terms in plain Swedish, to print and sign; the read is audited."""
    consent = session.get(Consent, access.facts.record_id or "")
    if consent is None:
        raise NotFound("no such consent")
    policy.audit_access(session, access, "consent.text.read", purpose=consent.purpose.value)
    return consent_text(consent)


def get_consent(session: Session, *, access: policy.Access) -> ConsentDetail:
    """Read a consent with the child's identity, grantors and history; the read is audited."""
    consent_id = access.facts.record_id or ""
    consent = session.get(Consent, consent_id)
    if consent is None:
        raise NotFound("no such consent")
    history = session.exec(select(ConsentHistory).where(ConsentHistory.consent_id == consent_id)
                           .order_by(col(ConsentHistory.id))).all()
    receipts = session.exec(select(WithdrawalReceipt).where(WithdrawalReceipt.consent_id == consent_id)).all()
    policy.audit_access(session, access, "consent.read", purpose=consent.purpose.value)
    return ConsentDetail.of_with_history(consent, list(history), list(receipts), consent_text(consent))


def case_consents(session: Session, *, access: policy.Access) -> list[Consent]:
    """The consents recorded in a case, newest first; one audit record per consent read (with its purpose)."""
    consents = session.exec(select(Consent).where(Consent.case_id == access.case_id)
                            .order_by(col(Consent.created_at).desc())).all()
    for consent in consents:
        policy.audit_access(session, access, "consent.list", purpose=consent.purpose.value, record_id=consent.id)
    if not consents:
        policy.audit_access(session, access, "consent.list")
    return list(consents)


def decide_disclosure(session: Session, *, settings: ConsentSettings, principal: Principal,
                      data: DecisionRequest) -> Decision:
    """Answer from the local replica whether a consent covers the disclosure; audited with its outcome."""
    members = sorted({settings.org, *settings.peers})
    for field, org in (("disclosing_org", data.disclosing_org), ("receiving_org", data.receiving_org)):
        if org not in members:
            raise InvalidField(field, f"must be an organisation of the federation: {', '.join(members)}")
    if data.receiving_org == data.disclosing_org:
        raise InvalidField("receiving_org", "must differ from disclosing_org")
    if data.child is not None and data.child_key is None:
        # This organisation's own consents are under its own key; another's under the key of the pair.
        key = (child_key(data.child.personnummer, settings.child_key_secret.get_secret_value())
               if data.disclosing_org == settings.org
               else pair_key(data.child.personnummer, settings.pair_secret(data.disclosing_org)))
    elif data.child is None and data.child_key is not None:
        key = data.child_key
    else:
        raise InvalidField("child", "give either child.personnummer or child_key, not both")
    decision = decide(session, disclosing_org=data.disclosing_org, receiving_org=data.receiving_org,
                      child_key=key, categories=[category.value for category in data.categories],
                      purpose=data.purpose.value, at=data.at)
    grant = (grant_of(session, disclosing_org=data.disclosing_org, consent_id=decision.consent_id)
             if decision.consent_id else None)
    audit(session, principal, "consent.decide", case_id=(grant.case_id or None) if grant else None,
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


def covering(consents: list[Consent], *, receiving_org: str, categories: list[str], purpose: str,
             at: datetime) -> tuple[Consent | None, str]:
    """The first of this organisation's own consents that covers a disclosure now, or why none does."""
    reasons: list[str] = []
    for consent in consents:
        reason = why_not_covered(Terms(
            receiving_orgs=consent.receiving_orgs, categories=consent.categories, purpose=consent.purpose.value,
            valid_from=consent.valid_from, valid_until=consent.valid_until,
            withdrawn=consent.status is not ConsentStatus.ACTIVE), receiving_org=receiving_org,
            categories=categories, purpose=purpose, at=at)
        if reason is None:
            return consent, "covered by consent"
        reasons.append(reason)
    return None, reasons[0] if reasons else "no consent recorded"


def _as_utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is stored in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def decide_disclosures(session: Session, *, settings: ConsentSettings, batch: AskBatch,
                       now: datetime | None = None) -> VerdictBatch:
    """Answer the disclosure gate from this organisation's own consent records, recording every answer.

    Only consents this organisation recorded count: a replica another organisation sent can never
    open this organisation's gate. The consents read are share-locked (PostgreSQL), so a withdrawal
    committing meanwhile waits for this answer and then sees its lease (see ``open_lease_deadline``).
    """
    now = now or utcnow()
    verdicts: list[DisclosureVerdict] = []
    for item in batch.asks:
        query = select(Consent).where(Consent.child_key == item.child_ref, Consent.disclosing_org == settings.org)
        if item.consent_id is not None:
            query = query.where(Consent.id == item.consent_id)
        elif batch.phase is Phase.SEND:
            # A message about to leave must name the consent it was queued under.
            query = query.where(col(Consent.id).is_(None))
        consents = list(session.exec(query.order_by(col(Consent.valid_until).desc()).with_for_update(read=True)))
        consent, reason = covering(consents, receiving_org=item.receiving_org, categories=item.categories,
                                   purpose=item.purpose, at=now)
        named = consent or (consents[0] if item.consent_id is not None and consents else None)
        allowed = consent is not None
        # Every permit is a lease: the one given as a message is queued lets the relay send it straight
        # away (no second round trip), and a withdrawal waits for it like for any other.
        lease = settings.disclosure_lease_seconds if allowed else 0.0
        record = DisclosureDecision(
            id=str(uuid.uuid4()), decided_at=now, phase=batch.phase.value, event_id=item.event_id,
            event_type=item.event_type, consent_id=named.id if named else item.consent_id,
            consent_version=named.version if named else None, case_id=named.case_id if named else None,
            purpose=item.purpose, categories=list(item.categories), receiving_org=item.receiving_org,
            requested_by=item.requested_by, requested_role=item.requested_role, trace_id=item.trace_id,
            outcome=DecisionOutcome.PERMIT if allowed else DecisionOutcome.DENY, reason=reason,
            lease_until=now + timedelta(seconds=lease) if lease else None,
        )
        session.add(record)
        verdicts.append(DisclosureVerdict(
            decision_id=record.id, event_id=item.event_id, allowed=allowed, consent_id=record.consent_id,
            consent_version=record.consent_version, reason=reason, lease_seconds=lease, decided_at=now))
    return VerdictBatch(verdicts=verdicts)


def settle_disclosures(session: Session, *, report: SettlementReport) -> None:
    """Record what the relay did with permitted messages; only the first report of a permit counts."""
    now = utcnow()
    for decision_id, settlement in report.settlements.items():
        session.execute(update(DisclosureDecision).where(
            col(DisclosureDecision.id) == decision_id, col(DisclosureDecision.outcome) == DecisionOutcome.PERMIT,
            col(DisclosureDecision.settled_at).is_(None),
        ).values(settled_at=now, settlement=settlement.value).execution_options(synchronize_session=False))


def open_lease_deadline(session: Session, *, consent_id: str) -> datetime | None:
    """The latest lease under which a message of this consent may still leave, or None when none may.

    A permit is closed once the relay reports it sent, or that its lease ran out before it tried.
    A failed publish stays open until its lease ends: the message may have left all the same.
    """
    leases = session.exec(select(DisclosureDecision.lease_until).where(
        DisclosureDecision.consent_id == consent_id, DisclosureDecision.outcome == DecisionOutcome.PERMIT,
        col(DisclosureDecision.lease_until).is_not(None),
        or_(col(DisclosureDecision.settlement).is_(None),
            col(DisclosureDecision.settlement) == Settlement.FAILED.value),
    )).all()
    now = utcnow()
    open_until = [_as_utc(lease) for lease in leases if lease is not None and _as_utc(lease) > now]
    return max(open_until, default=None)


def list_decisions(session: Session, *, principal: Principal, filters: DecisionFilter) -> list[DisclosureDecision]:
    """Disclosure decisions, oldest first, filtered; the read is audited."""
    query = select(DisclosureDecision)
    for column, value in ((DisclosureDecision.consent_id, filters.consent_id),
                          (DisclosureDecision.case_id, filters.case_id),
                          (DisclosureDecision.receiving_org, filters.receiving_org),
                          (DisclosureDecision.outcome, filters.outcome),
                          (DisclosureDecision.phase, filters.phase)):
        if value is not None:
            query = query.where(column == value)
    if filters.since is not None:
        query = query.where(col(DisclosureDecision.decided_at) >= filters.since)
    if filters.until is not None:
        query = query.where(col(DisclosureDecision.decided_at) < filters.until)
    rows = session.exec(query.order_by(col(DisclosureDecision.decided_at), col(DisclosureDecision.id))
                        .limit(filters.limit)).all()
    audit(session, principal, "disclosure_decision.list", case_id=filters.case_id)
    return list(rows)


def record_withdrawal_receipt(session: Session, *, settings: ConsentSettings, sender: str,
                              event: WithdrawalApplied) -> None:
    """Note that a receiver removed what it held under one of this organisation's withdrawn consents."""
    consent = session.get(Consent, event.consent_id)
    if consent is None or consent.disclosing_org != settings.org or sender not in consent.receiving_orgs:
        raise Reject("receipt for a consent this organisation did not give to the sender")
    if consent.status is not ConsentStatus.WITHDRAWN:
        raise Reject("receipt for a consent that is not withdrawn")
    if session.get(WithdrawalReceipt, (event.consent_id, sender)) is None:
        session.add(WithdrawalReceipt(consent_id=event.consent_id, receiving_org=sender,
                                      purged_records=event.purged_records, purged_at=event.purged_at))
