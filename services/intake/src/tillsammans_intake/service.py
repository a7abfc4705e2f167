"""Intake's domain operations: raise and route concerns, keep the BBA directory and inbox."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from importlib import resources
from pathlib import Path

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.cases import CaseDelegation, CaseRecord, get_case
from tillsammans_common.db import utcnow
from tillsammans_common.errors import Conflict, InvalidField, NotFound
from tillsammans_common.events.intake import CaseRecorded, ConcernRaised, ConcernRouted, DelegationRecorded
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.personnummer import child_key
from tillsammans_common.timestamps import as_utc
from tillsammans_common.wheel import all_area_codes
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.models import (
    PROTECTED_NAME,
    CaseChild,
    CasePublic,
    CaseSummary,
    Concern,
    ConcernCreate,
    ConcernPublic,
    ConcernStatusPublic,
    DelegationCreate,
    DelegationPublic,
    InboxItem,
    InboxItemPublic,
    Unit,
    UnitPublic,
    UnitPut,
)

# Only the BBA is needed: two columns, not a whole ORM object, on the busiest write there is; the
# statement is built once so SQLAlchemy reuses its compiled form.
_UNIT_BBA = select(col(Unit.id), col(Unit.bba_user)).where(col(Unit.id) == bindparam("unit_id"))
_CHILDS_CASE = select(col(CaseChild.case_id)).where(col(CaseChild.child_personnummer) == bindparam("personnummer"))
PURPOSE = "early_support"
MAX_DELEGATION = timedelta(days=366)


def raise_concern(session: Session, *, settings: IntakeSettings, principal: Principal,
                  data: ConcernCreate) -> ConcernPublic:
    """Store a concern in the child's case (opened if the child has none) and route it to the case's BBA."""
    unknown = sorted(set(data.wheel_areas) - all_area_codes())
    if unknown:
        raise InvalidField("wheel_areas", f"unknown wheel area(s): {', '.join(unknown)}")
    unit = session.connection().execute(_UNIT_BBA, {"unit_id": data.unit_id}).first()
    if unit is None:
        raise InvalidField("unit_id", "no such unit in this organisation's directory")
    policy.check_unit_scope(principal, unit.id)
    key = child_key(data.child.personnummer, settings.child_key_secret.get_secret_value())
    case, changed = _childs_case(session, data, unit_id=unit.id, bba_user=unit.bba_user, key=key)
    concern = Concern(
        id=str(uuid.uuid4()), case_id=case.case_id, unit_id=unit.id,
        child_personnummer=data.child.personnummer, child_name=data.child.name,
        protected_identity=case.protected_identity, wheel_areas=list(dict.fromkeys(data.wheel_areas)),
        description=data.description, raised_by_user=principal.user, raised_by_role=principal.role.value,
        bba_user=case.bba_user,
    )
    session.add(concern)
    if changed:
        _announce_case(session, settings, case)
    # The unit would tell where a protected child is: it stays out of every event about one.
    shown_unit = None if case.protected_identity else case.unit_id
    record_event(session, ConcernRaised(
        concern_id=concern.id, case_id=case.case_id, unit_id=shown_unit, wheel_areas=concern.wheel_areas,
        raised_by_role=principal.role.value, protected_identity=case.protected_identity, child_key=key,
    ), source=settings.source, org=settings.org, subject=case.case_id)
    record_event(session, ConcernRouted(
        concern_id=concern.id, case_id=case.case_id, unit_id=shown_unit, bba_user=case.bba_user,
    ), source=settings.source, org=settings.org, subject=case.case_id)
    audit(session, principal, "concern.raise", case_id=case.case_id, purpose=PURPOSE, record_id=concern.id,
          unit_id=case.unit_id, basis="role:" + principal.role.value, protected=case.protected_identity)
    return _concern_public(concern, case)


def _childs_case(session: Session, data: ConcernCreate, *, unit_id: str, bba_user: str,
                 key: str) -> tuple[CaseRecord, bool]:
    """The child's case and whether it is new or changed: one case per child, whoever raises the concern."""
    existing = session.connection().execute(_CHILDS_CASE, {"personnummer": data.child.personnummer}).first()
    if existing is None:
        opened = CaseRecord(case_id=str(uuid.uuid4()), unit_id=unit_id, bba_user=bba_user, child_key=key,
                            protected_identity=data.child.protected_identity)
        session.add(opened)
        session.add(CaseChild(case_id=opened.case_id, child_personnummer=data.child.personnummer,
                              child_name=data.child.name))
        session.flush()  # the unique personnummer makes a concurrent second case fail here, not later
        return opened, True
    case = session.get(CaseRecord, existing.case_id, with_for_update=True)
    assert case is not None  # written with its case_child row, never without
    # Protected identity belongs to the child's record, not to one request: once marked, always marked.
    # The case keeps its unit and BBA: naming another unit in a concern never moves a child's case.
    if data.child.protected_identity and not case.protected_identity:
        case.protected_identity, case.updated_at = True, utcnow()
        session.add(case)
        return case, True
    return case, False


def _announce_case(session: Session, settings: IntakeSettings, case: CaseRecord) -> None:
    record_event(session, CaseRecorded(
        case_id=case.case_id, unit_id=None if case.protected_identity else case.unit_id, bba_user=case.bba_user,
        child_key=case.child_key, protected_identity=case.protected_identity,
    ), source=settings.source, org=settings.org, subject=case.case_id)


def concern_facts(session: Session, concern_id: str) -> policy.Facts:
    """The policy's view of a concern: its case, and who raised it."""
    concern = session.get(Concern, concern_id)
    if concern is None:
        raise NotFound("no such concern")
    return policy.Facts(case=policy.case_facts(session, get_case(session, concern.case_id)),
                        record_id=concern.id, raiser=concern.raised_by_user)


def get_concern(session: Session, *, access: policy.Access) -> ConcernPublic:
    """Read a concern with the child; the read is audited."""
    concern = session.get(Concern, access.facts.record_id)
    if concern is None:
        raise NotFound("no such concern")
    policy.audit_access(session, access, "concern.read", purpose=PURPOSE)
    return _concern_public(concern, get_case(session, concern.case_id))


def concern_status(session: Session, *, access: policy.Access) -> ConcernStatusPublic:
    """Where a concern is, for its raiser as for the case's BBA; audited."""
    concern = session.get(Concern, access.facts.record_id)
    if concern is None:
        raise NotFound("no such concern")
    policy.audit_access(session, access, "concern.status", purpose=PURPOSE)
    return ConcernStatusPublic(id=concern.id, case_id=concern.case_id, status=concern.status,
                               created_at=as_utc(concern.created_at))


def _concern_public(concern: Concern, case: CaseRecord) -> ConcernPublic:
    public = ConcernPublic.model_validate(concern, from_attributes=True)
    return public.model_copy(update={"unit_id": None}) if case.protected_identity else public


def deliver_to_inbox(session: Session, *, event: ConcernRouted) -> None:
    """Put a routed concern in its BBA's inbox (applied once per event by the consumer)."""
    session.add(InboxItem(bba_user=event.bba_user, concern_id=event.concern_id, case_id=event.case_id))


def inbox(session: Session, *, access: policy.Access) -> list[InboxItemPublic]:
    """The caller's inbox, newest first: the concerns of the cases the caller is BBA of."""
    principal = access.principal
    rows = session.exec(
        select(InboxItem, Concern, CaseRecord).join(Concern, col(Concern.id) == col(InboxItem.concern_id))
        .join(CaseRecord, col(CaseRecord.case_id) == col(InboxItem.case_id))
        .where(InboxItem.bba_user == principal.user, policy.visible_cases(principal))
        .order_by(col(InboxItem.received_at).desc())
    ).all()
    policy.audit_listed(session, principal, "inbox.read", [case for _, _, case in rows], purpose=PURPOSE)
    return [InboxItemPublic(concern_id=item.concern_id, case_id=item.case_id,
                            unit_id=None if case.protected_identity else concern.unit_id,
                            wheel_areas=concern.wheel_areas, received_at=item.received_at)
            for item, concern, case in rows]


def list_cases(session: Session, *, principal: Principal) -> list[CaseSummary]:
    """The cases the caller has a need to know, newest first (the policy narrows the query itself)."""
    rows = session.exec(
        select(CaseRecord, CaseChild).join(CaseChild, col(CaseChild.case_id) == col(CaseRecord.case_id))
        .where(policy.visible_cases(principal)).order_by(col(CaseRecord.opened_at).desc())
    ).all()
    policy.audit_listed(session, principal, "case.list", [case for case, _ in rows], purpose=PURPOSE)
    return [CaseSummary(case_id=case.case_id, unit_id=None if case.protected_identity else case.unit_id,
                        child_name=PROTECTED_NAME if case.protected_identity else child.child_name,
                        protected_identity=case.protected_identity, bba_user=case.bba_user,
                        opened_at=case.opened_at) for case, child in rows]


def get_case_detail(session: Session, *, access: policy.Access) -> CasePublic:
    """A child's case with its concerns and delegations; audited."""
    case = get_case(session, access.facts.record_id or "")
    child = session.get(CaseChild, case.case_id)
    assert child is not None
    concerns = session.exec(select(Concern).where(Concern.case_id == case.case_id)
                            .order_by(col(Concern.created_at))).all()
    delegations = session.exec(select(CaseDelegation).where(CaseDelegation.case_id == case.case_id)
                               .order_by(col(CaseDelegation.recorded_at))).all()
    policy.audit_access(session, access, "case.read", purpose=PURPOSE)
    return CasePublic(
        case_id=case.case_id, child_personnummer=child.child_personnummer, child_name=child.child_name,
        unit_id=None if case.protected_identity else case.unit_id, bba_user=case.bba_user,
        protected_identity=case.protected_identity, opened_at=case.opened_at,
        concerns=[ConcernStatusPublic(id=c.id, case_id=c.case_id, status=c.status, created_at=as_utc(c.created_at))
                  for c in concerns],
        delegations=[DelegationPublic.model_validate(d, from_attributes=True) for d in delegations])


def delegate(session: Session, *, settings: IntakeSettings, access: policy.Access,
             data: DelegationCreate) -> DelegationPublic:
    """Record the BBA's delegation of the case to a colleague for a period, and tell the other services."""
    principal = access.principal
    valid_from = data.valid_from or utcnow()
    if data.valid_until <= valid_from:
        raise InvalidField("valid_until", "must be after valid_from")
    if data.valid_until - valid_from > MAX_DELEGATION:
        raise InvalidField("valid_until", "a delegation lasts at most a year; delegate again to renew it")
    if data.delegate_user == principal.user:
        raise InvalidField("delegate_user", "the BBA already has access to the case")
    delegation = CaseDelegation(id=str(uuid.uuid4()), case_id=access.facts.record_id or "",
                                delegate_user=data.delegate_user, granted_by=principal.user,
                                valid_from=valid_from, valid_until=data.valid_until)
    session.add(delegation)
    _announce_delegation(session, settings, delegation)
    policy.audit_access(session, access, "case.delegate", purpose=PURPOSE, record_id=delegation.id)
    session.flush()
    return DelegationPublic.model_validate(delegation, from_attributes=True)


def revoke_delegation(session: Session, *, settings: IntakeSettings, access: policy.Access,
                      delegation_id: str) -> DelegationPublic:
    """Take a delegation back from now on; 409 if it already was."""
    delegation = session.get(CaseDelegation, delegation_id, with_for_update=True)
    if delegation is None or delegation.case_id != access.facts.record_id:
        raise NotFound("no such delegation of this case")
    if delegation.revoked_at is not None:
        raise Conflict("the delegation is already revoked")
    delegation.revoked_at = utcnow()
    session.add(delegation)
    _announce_delegation(session, settings, delegation)
    policy.audit_access(session, access, "case.revoke_delegation", purpose=PURPOSE, record_id=delegation.id)
    return DelegationPublic.model_validate(delegation, from_attributes=True)


def _announce_delegation(session: Session, settings: IntakeSettings, delegation: CaseDelegation) -> None:
    record_event(session, DelegationRecorded(
        delegation_id=delegation.id, case_id=delegation.case_id, delegate_user=delegation.delegate_user,
        granted_by=delegation.granted_by, valid_from=delegation.valid_from, valid_until=delegation.valid_until,
        revoked=delegation.revoked_at is not None,
    ), source=settings.source, org=settings.org, subject=delegation.case_id)


def list_units(session: Session) -> list[UnitPublic]:
    """Every unit of the directory with its BBA, by id."""
    return [UnitPublic.model_validate(unit, from_attributes=True)
            for unit in session.exec(select(Unit).order_by(col(Unit.id))).all()]


def put_unit(session: Session, *, principal: Principal, unit_id: str, data: UnitPut) -> UnitPublic:
    """Create or replace a unit and its BBA."""
    unit = session.get(Unit, unit_id) or Unit(id=unit_id, **data.model_dump())
    for field, value in data.model_dump().items():
        setattr(unit, field, value)
    session.add(unit)
    audit(session, principal, "unit.put", record_id=unit_id, basis="role:admin")
    session.flush()  # fills the defaults the public shape shows
    return UnitPublic.model_validate(unit, from_attributes=True)


def seed_directory(session: Session, *, settings: IntakeSettings) -> int:
    """Load the unit directory on first start; returns how many units were added."""
    if session.exec(select(Unit).limit(1)).first() is not None:
        return 0
    units = _directory_source(settings.directory_file, settings.org)
    for raw in units:
        session.add(Unit.model_validate(raw))
    session.commit()
    return len(units)


def _directory_source(path: Path | None, org: str) -> list[dict[str, str]]:
    if path is not None:
        data = json.loads(path.read_text(encoding="utf-8"))
        return list(data) if isinstance(data, list) else list(data.get(org, []))
    demo = json.loads(resources.files("tillsammans_intake").joinpath("directory.json").read_text(encoding="utf-8"))
    return list(demo.get(org, []))
