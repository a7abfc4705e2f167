"""Intake's domain operations: raise and route concerns, keep the BBA directory and inbox, file and receive
orosanmälningar."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, or_
from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.cases import CaseDelegation, CaseRecord, get_case
from tillsammans_common.db import utcnow
from tillsammans_common.errors import Conflict, InvalidField, NotFound
from tillsammans_common.events.intake import (
    CaseRecorded,
    ConcernRaised,
    ConcernRouted,
    DelegationRecorded,
    ReportAcknowledged,
    ReportFiled,
)
from tillsammans_common.events.mapping import MappingCompleted, MappingOpened
from tillsammans_common.messaging.egress import file_statutory_report, send_receipt
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.messaging.refusals import Reject
from tillsammans_common.models import OutboxMessage
from tillsammans_common.personnummer import age_on, child_key
from tillsammans_common.settings import OrgKind
from tillsammans_common.timestamps import as_utc
from tillsammans_common.wheel import latest
from tillsammans_intake import routing, ss12000
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.models import (
    PROTECTED_NAME,
    CaseChild,
    CaseMapping,
    CasePublic,
    CaseSummary,
    CaseTransfer,
    Concern,
    ConcernCreate,
    ConcernPublic,
    ConcernStatusPublic,
    DelegationCreate,
    DelegationPublic,
    DirectoryImportResult,
    InboxItem,
    InboxItemPublic,
    ReceivedReport,
    ReceivedReportPublic,
    ReceivedReportSummary,
    Report,
    ReportCreate,
    ReportPublic,
    ReportStatus,
    RoutedBy,
    TransferCreate,
    TransferPublic,
    Unit,
    UnitKind,
    UnitPublic,
    UnitPut,
)

# Only the BBA is needed: two columns, not a whole ORM object, on the busiest write there is; the
# statement is built once so SQLAlchemy reuses its compiled form.
_UNIT_BBA = select(col(Unit.id), col(Unit.bba_user), col(Unit.municipality_code)).where(
    col(Unit.id) == bindparam("unit_id"))
_CHILDS_CASE = select(col(CaseChild.case_id)).where(col(CaseChild.child_personnummer) == bindparam("personnummer"))
PURPOSE = "early_support"
MAX_DELEGATION = timedelta(days=366)


def raise_concern(session: Session, *, settings: IntakeSettings, principal: Principal,
                  data: ConcernCreate) -> ConcernPublic:
    """Store a concern in the child's case (opened if the child has none) and route it to the case's BBA."""
    wheel_id = _check_wheel_areas(data, settings)
    unit_id, bba_user, routed_by, unit_municipality = _find_unit(session, settings, data)
    policy.check_unit_scope(principal, unit_id)
    key = child_key(data.child.personnummer, settings.child_key_secret.get_secret_value())
    case, changed = _childs_case(session, data, unit_id=unit_id, bba_user=bba_user, key=key,
                                 municipality=data.home_municipality or unit_municipality)
    concern = Concern(
        id=str(uuid.uuid4()), case_id=case.case_id, unit_id=unit_id, routed_by=routed_by, wheel_id=wheel_id,
        child_personnummer=data.child.personnummer, child_name=data.child.name,
        protected_identity=case.protected_identity, wheel_areas=list(dict.fromkeys(data.wheel_areas)),
        description=data.description, raised_by_user=principal.user, raised_by_role=principal.role.value,
        bba_user=case.bba_user, home_municipality=data.home_municipality,
    )
    session.add(concern)
    if changed:
        _announce_case(session, settings, case)
    # The unit would tell where a protected child is: it stays out of every event about one.
    shown_unit = None if case.protected_identity else case.unit_id
    record_event(session, ConcernRaised(
        concern_id=concern.id, case_id=case.case_id, unit_id=shown_unit, wheel_areas=concern.wheel_areas,
        wheel_id=wheel_id, raised_by_role=principal.role.value, protected_identity=case.protected_identity,
        child_key=key,
    ), source=settings.source, org=settings.org, subject=case.case_id)
    record_event(session, ConcernRouted(
        concern_id=concern.id, case_id=case.case_id, unit_id=shown_unit, bba_user=case.bba_user,
    ), source=settings.source, org=settings.org, subject=case.case_id)
    audit(session, principal, "concern.raise", case_id=case.case_id, purpose=PURPOSE, record_id=concern.id,
          unit_id=case.unit_id, basis="role:" + principal.role.value, protected=case.protected_identity)
    return _concern_public(concern, case)


def _check_wheel_areas(data: ConcernCreate, settings: IntakeSettings) -> str:
    """The concern's one wheel; 422 if it is unknown or an area is not one of its areas (never a mix of two)."""
    wheel_id = data.wheel_id or settings.default_wheel
    wheel = latest(wheel_id)
    if wheel is None:
        raise InvalidField("wheel_id", "no such wheel")
    unknown = sorted(set(data.wheel_areas) - wheel.area_codes())
    if unknown:
        raise InvalidField("wheel_areas", f"not area(s) of wheel {wheel_id}: {', '.join(unknown)}")
    return wheel_id


def _find_unit(session: Session, settings: IntakeSettings,
               data: ConcernCreate) -> tuple[str, str, RoutedBy, str | None]:
    """The unit and BBA a concern goes to (the named unit, the child's case's, the routing rules', or the desk's)
    and the municipality the unit serves (the child's, when the raiser did not say)."""
    if data.unit_id is not None:
        unit = session.connection().execute(_UNIT_BBA, {"unit_id": data.unit_id}).first()
        if unit is None:
            raise InvalidField("unit_id", "no such unit in this organisation's directory")
        return unit.id, unit.bba_user, RoutedBy.NAMED_UNIT, unit.municipality_code
    existing = session.connection().execute(_CHILDS_CASE, {"personnummer": data.child.personnummer}).first()
    case = get_case(session, existing.case_id) if existing is not None else None
    if case is not None and case.unit_id is not None:
        return case.unit_id, case.bba_user, RoutedBy.CHILDS_CASE, case.municipality_code
    # Only units that could hold the BBA of some child of the municipality are read.
    candidates = session.exec(select(Unit).where(
        Unit.municipality_code == data.home_municipality,
        col(Unit.kind).in_([kind for rule in routing.RULES for kind in rule.kinds]))).all()
    decision = routing.route(candidates, stage=data.child_stage, municipality=data.home_municipality,
                             age=age_on(data.child.personnummer, utcnow().date()))
    unit_id = decision.unit_id or _intake_desk(session, settings)
    found = session.get(Unit, unit_id)
    if found is None:
        raise InvalidField("unit_id", "the configured intake desk is not in the directory: name the child's unit")
    return found.id, found.bba_user, decision.routed_by, found.municipality_code


def _intake_desk(session: Session, settings: IntakeSettings) -> str:
    """The organisation's named fallback: the configured unit, else the directory's intake desk."""
    if settings.intake_desk_unit:
        return settings.intake_desk_unit
    desk = session.exec(select(Unit.id).where(Unit.kind == UnitKind.INTAKE_DESK).order_by(col(Unit.id))).first()
    if desk is None:
        raise InvalidField("unit_id", "no rule found the child's unit and this organisation's directory has "
                                      "no intake desk: name the child's unit")
    return desk


def _childs_case(session: Session, data: ConcernCreate, *, unit_id: str, bba_user: str,
                 key: str, municipality: str | None) -> tuple[CaseRecord, bool]:
    """The child's case and whether it is new or changed: one case per child, whoever raises the concern."""
    existing = session.connection().execute(_CHILDS_CASE, {"personnummer": data.child.personnummer}).first()
    if existing is None:
        opened = CaseRecord(case_id=str(uuid.uuid4()), unit_id=unit_id, bba_user=bba_user, child_key=key,
                            protected_identity=data.child.protected_identity, municipality_code=municipality)
        session.add(opened)
        session.add(CaseChild(case_id=opened.case_id, child_personnummer=data.child.personnummer,
                              child_name=data.child.name))
        session.flush()  # the unique personnummer makes a concurrent second case fail here, not later
        return opened, True
    case = session.get(CaseRecord, existing.case_id, with_for_update=True)
    assert case is not None  # written with its case_child row, never without
    # Protected identity belongs to the child's record, not to one request: once marked, always marked.
    # The case keeps its unit and BBA: naming another unit in a concern never moves a child's case.
    changed = False
    if data.child.protected_identity and not case.protected_identity:
        case.protected_identity, changed = True, True
    if case.municipality_code is None and municipality is not None:
        # A case opened before its municipality was known learns it from the first concern that says.
        case.municipality_code, changed = municipality, True
    if changed:
        case.updated_at = utcnow()
        session.add(case)
    return case, changed


def _announce_case(session: Session, settings: IntakeSettings, case: CaseRecord) -> None:
    record_event(session, CaseRecorded(
        case_id=case.case_id, unit_id=None if case.protected_identity else case.unit_id, bba_user=case.bba_user,
        child_key=case.child_key, protected_identity=case.protected_identity,
        # Where a protected child lives stays here, like its unit.
        municipality_code=None if case.protected_identity else case.municipality_code,
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


def transfer_case(session: Session, *, settings: IntakeSettings, access: policy.Access,
                  data: TransferCreate) -> TransferPublic:
    """Hand the case to another unit's BBA with its concerns; the other services learn the new BBA by event.

    The intake desk routes a concern on this way, and a BBA hands over a child who moved. The old
    BBA's access ends with it (and the delegations the old BBA made), as access follows the case.
    """
    case = session.get(CaseRecord, access.facts.record_id, with_for_update=True)
    if case is None:
        raise NotFound("no such case")
    unit = session.get(Unit, data.unit_id)
    if unit is None:
        raise InvalidField("unit_id", "no such unit in this organisation's directory")
    if unit.kind is UnitKind.INTAKE_DESK and case.unit_id != unit.id:
        raise InvalidField("unit_id", "the intake desk receives concerns no rule could route; hand the case "
                                      "to the child's unit")
    policy.audit_access(session, access, "case.transfer", purpose=PURPOSE)
    shown_unit = None if case.protected_identity else unit.id
    if case.unit_id == unit.id and case.bba_user == unit.bba_user:
        return TransferPublic(case_id=case.case_id, unit_id=shown_unit, bba_user=case.bba_user,
                              transferred=False, moved_concerns=0)
    session.add(CaseTransfer(id=str(uuid.uuid4()), case_id=case.case_id, from_unit_id=case.unit_id,
                             to_unit_id=unit.id, from_bba_user=case.bba_user, to_bba_user=unit.bba_user,
                             reason=data.reason, transferred_by=access.principal.user))
    case.unit_id, case.bba_user, case.updated_at = unit.id, unit.bba_user, utcnow()
    session.add(case)
    _announce_case(session, settings, case)
    concerns = session.exec(select(Concern).where(Concern.case_id == case.case_id)).all()
    for concern in concerns:
        concern.unit_id, concern.bba_user = unit.id, unit.bba_user
        session.add(concern)
        # Into the new BBA's inbox, by the same event and consumer as a concern routed when raised.
        record_event(session, ConcernRouted(concern_id=concern.id, case_id=case.case_id, unit_id=shown_unit,
                                            bba_user=unit.bba_user, handed_over=True),
                     source=settings.source, org=settings.org, subject=case.case_id)
    return TransferPublic(case_id=case.case_id, unit_id=shown_unit, bba_user=unit.bba_user, transferred=True,
                          moved_concerns=len(concerns))


def deliver_to_inbox(session: Session, *, event: ConcernRouted) -> None:
    """Put a routed concern in its BBA's inbox (applied once per event by the consumer); handed over, it moves."""
    item = session.exec(select(InboxItem).where(InboxItem.concern_id == event.concern_id)).first() if (
        event.handed_over) else None  # a new concern's first routing, the busy path, needs no read
    if item is None:
        session.add(InboxItem(bba_user=event.bba_user, concern_id=event.concern_id, case_id=event.case_id))
        return
    item.bba_user, item.received_at = event.bba_user, utcnow()
    session.add(item)


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


def list_units(session: Session, *, settings: IntakeSettings, stale: bool | None = None) -> list[UnitPublic]:
    """Every unit of the directory with its BBA, by id; ``stale`` keeps only the stale (or only the current) ones."""
    statement = select(Unit).order_by(col(Unit.id))
    if stale is not None:
        current = col(Unit.confirmed_at) >= _stale_before(settings)
        statement = statement.where(or_(col(Unit.confirmed_at).is_(None), ~current) if stale else current)
    return [_unit_public(unit, settings) for unit in session.exec(statement).all()]


def _stale_before(settings: IntakeSettings) -> datetime:
    return utcnow() - timedelta(days=settings.stale_after_days)


def _unit_public(unit: Unit, settings: IntakeSettings) -> UnitPublic:
    confirmed = as_utc(unit.confirmed_at) if unit.confirmed_at is not None else None
    public = UnitPublic.model_validate(unit, from_attributes=True)
    return public.model_copy(update={"stale": confirmed is None or confirmed < _stale_before(settings)})


def put_unit(session: Session, *, settings: IntakeSettings, principal: Principal, unit_id: str,
             data: UnitPut) -> UnitPublic:
    """Create or replace a unit and its BBA (an edit is not a confirmation: that is its own act)."""
    fields = _with_default_ages(data.model_dump())
    unit = session.get(Unit, unit_id) or Unit(id=unit_id, **fields)
    for field, value in fields.items():
        setattr(unit, field, value)
    unit.source, unit.updated_at = "api", utcnow()
    session.add(unit)
    audit(session, principal, "unit.put", record_id=unit_id, basis="role:admin")
    session.flush()  # fills the defaults the public shape shows
    return _unit_public(unit, settings)


def _with_default_ages(fields: dict[str, Any]) -> dict[str, Any]:
    ages = routing.KIND_AGES[UnitKind(fields["kind"])]
    low = ages[0] if fields.get("min_age") is None else fields["min_age"]
    high = ages[-1] if fields.get("max_age") is None else fields["max_age"]
    if low > high:
        raise InvalidField("max_age" if fields.get("max_age") is not None else "min_age",
                           f"the ages served must form a range ({low} is above {high})")
    return {**fields, "min_age": low, "max_age": high}


def confirm_unit(session: Session, *, settings: IntakeSettings, principal: Principal, unit_id: str) -> UnitPublic:
    """Record that an admin checked the unit and its BBA are current."""
    unit = session.get(Unit, unit_id, with_for_update=True)
    if unit is None:
        raise NotFound("no such unit in this organisation's directory")
    unit.confirmed_at = utcnow()
    session.add(unit)
    audit(session, principal, "unit.confirm", record_id=unit_id, basis="role:admin")
    return _unit_public(unit, settings)


def import_directory(session: Session, *, settings: IntakeSettings, principal: Principal | None,
                     export: ss12000.SS12000Export) -> DirectoryImportResult:
    """Create or refresh the school units of an SS 12000 export and confirm them; all or nothing."""
    now = utcnow()
    # Every rule is checked before the first write, so a refused export changes nothing.
    units = ss12000.units_from(export, bba_roles=settings.ss12000_bba_roles,
                               deputy_roles=settings.ss12000_deputy_roles, today=now.date())
    created, updated = [], []
    for fields in units:
        unit = session.get(Unit, fields["id"], with_for_update=True)
        if unit is None:
            session.add(Unit(**fields, source="ss12000", confirmed_at=now, updated_at=now))
            created.append(fields["id"])
            continue
        # SS 12000 knows school types, not school years: ages an admin narrowed (F-6, 7-9) are kept
        # unless the unit changed kind.
        keep_ages = unit.kind == fields["kind"]
        for field, value in fields.items():
            if not (keep_ages and field in ("min_age", "max_age")):
                setattr(unit, field, value)
        unit.source, unit.confirmed_at, unit.updated_at = "ss12000", now, now
        session.add(unit)
        updated.append(fields["id"])
    named = {fields["id"] for fields in units}
    not_in_export = [unit_id for unit_id in session.exec(
        select(Unit.id).where(Unit.source == "ss12000").order_by(col(Unit.id))).all() if unit_id not in named]
    if principal is not None:
        audit(session, principal, "directory.import", basis="role:admin")
    session.flush()
    return DirectoryImportResult(created=created, updated=updated, confirmed_at=now, not_in_export=not_in_export)


def seed_directory(session: Session, *, settings: IntakeSettings) -> int:
    """Load the directory at start-up: an SS 12000 export every time, a list of units on first start only."""
    source = _directory_source(settings.directory_file, settings.org)
    if isinstance(source, ss12000.SS12000Export):
        result = import_directory(session, settings=settings, principal=None, export=source)
        session.commit()
        return len(result.created)
    if session.exec(select(Unit).limit(1)).first() is not None:
        return 0
    now = utcnow()
    for raw in source:
        fields = _with_default_ages(UnitPut.model_validate({k: v for k, v in raw.items() if k != "id"}).model_dump())
        session.add(Unit(id=raw["id"], **fields, source="file", confirmed_at=now))
    session.commit()
    return len(source)


def _directory_source(path: Path | None, org: str) -> list[dict[str, Any]] | ss12000.SS12000Export:
    if path is None:
        demo = resources.files("tillsammans_intake").joinpath("directory.json").read_text(encoding="utf-8")
        return list(json.loads(demo).get(org, []))
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "organisations" in data:
        return ss12000.SS12000Export.model_validate(data)
    return list(data) if isinstance(data, list) else list(data.get(org, []))

# --- Orosanmälan (SoL 14 kap. 1 §): filed here, received by social services' intake ---------------------

REPORT_PURPOSE = "orosanmalan"
DESK_BASIS = "intake-desk"


def report_facts(session: Session, report_id: str) -> policy.Facts:
    """The policy's view of a filed report: its case, and who filed it."""
    report = session.get(Report, report_id)
    if report is None:
        raise NotFound("no such report")
    return policy.Facts(case=policy.case_facts(session, get_case(session, report.case_id)), record_id=report.id,
                        reporter=report.filed_by_user)


def file_report(session: Session, *, settings: IntakeSettings, access: policy.Access, data: ReportCreate,
                concern_id: str | None = None) -> ReportPublic:
    """File an orosanmälan about the case's child with the social services of the child's municipality.

    No consent is asked for (the law obliges the reporter); ``concern_id`` is the concern the route
    named, else the body's. 422 names the field when a concern or mapping is not of this case, when
    the child's municipality is not known, or when no social services of the federation serves it.
    """
    case = get_case(session, access.case_id or "")
    concern = _concern_of_case(session, case.case_id, concern_id or data.concern_id)
    mapping = _mapping_of_case(session, case.case_id, data.mapping_id)
    municipality = _report_municipality(session, case, concern, data.home_municipality)
    receivers = [org for org in settings.members_serving(OrgKind.SOCIAL_SERVICES, municipality) if org != settings.org]
    if not receivers:
        raise InvalidField("home_municipality",
                           f"no social services of the federation serves municipality {municipality}")
    if mapping is not None:
        wheel_id, areas = mapping.wheel_id, list(mapping.flagged_areas)
    elif concern is not None:
        wheel_id, areas = concern.wheel_id, list(concern.wheel_areas)
    else:
        wheel_id, areas = settings.default_wheel, []
    child = session.get(CaseChild, case.case_id)
    assert child is not None  # a case is written with its child, never without
    unit = session.get(Unit, case.unit_id) if case.unit_id else None
    principal = access.principal
    report = Report(id=str(uuid.uuid4()), case_id=case.case_id, concern_id=concern.id if concern else None,
                    mapping_id=mapping.mapping_id if mapping else None, to_org=receivers[0],
                    municipality_code=municipality, grounds=data.grounds, wheel_id=wheel_id, wheel_areas=areas,
                    urgent=data.urgent, legal_basis=ReportFiled.statutory_basis, filed_by_user=principal.user,
                    filed_by_role=principal.role.value, envelope_id="")
    event = ReportFiled(
        report_id=report.id, reporting_org=settings.org, receiving_org=report.to_org, municipality_code=municipality,
        child_personnummer=child.child_personnummer, child_name=child.child_name,
        protected_identity=case.protected_identity, grounds=data.grounds, wheel_id=wheel_id, wheel_areas=areas,
        # The unit would tell where a protected child is; social services call the contact instead.
        reporting_unit=None if case.protected_identity or unit is None else unit.name,
        reported_by_role=principal.role.value, contact_user=principal.user, urgent=data.urgent,
        legal_basis=ReportFiled.statutory_basis, filed_at=report.filed_at)
    envelope = file_statutory_report(session, event, settings=settings, to_org=report.to_org, subject=report.id,
                                     municipality_code=municipality, principal=principal, case_id=case.case_id,
                                     basis=access.basis, protected=case.protected_identity)
    report.envelope_id = envelope.id
    session.add(report)
    policy.audit_access(session, access, "report.file", purpose=REPORT_PURPOSE, record_id=report.id)
    session.flush()
    return _report_public(session, report)


def _concern_of_case(session: Session, case_id: str, concern_id: str | None) -> Concern | None:
    if concern_id is None:
        return None
    concern = session.get(Concern, concern_id)
    if concern is None or concern.case_id != case_id:
        raise InvalidField("concern_id", "no such concern in this case")
    return concern


def _mapping_of_case(session: Session, case_id: str, mapping_id: str | None) -> CaseMapping | None:
    if mapping_id is None:
        return None
    mapping = session.get(CaseMapping, mapping_id)
    if mapping is None or mapping.case_id != case_id:
        raise InvalidField("mapping_id", "no such mapping of this case (known to intake)")
    return mapping


def _report_municipality(session: Session, case: CaseRecord, concern: Concern | None, given: str | None) -> str:
    """The child's municipality for a report: as given, else the concern's, else the case's (or its latest
    concern's), else the unit's; 422 when none is known."""
    if given is not None:
        return given
    if concern is not None and concern.home_municipality is not None:
        return concern.home_municipality
    if case.municipality_code is not None:
        return case.municipality_code
    latest_known = session.exec(select(Concern.home_municipality).where(
        Concern.case_id == case.case_id, col(Concern.home_municipality).is_not(None))
        .order_by(col(Concern.created_at).desc())).first()
    if latest_known is not None:
        return latest_known
    unit = session.get(Unit, case.unit_id) if case.unit_id else None
    if unit is not None and unit.municipality_code is not None:
        return unit.municipality_code
    raise InvalidField("home_municipality", "the child's municipality is not known: give home_municipality")


def get_report(session: Session, *, access: policy.Access) -> ReportPublic:
    """A filed report and where it is, for its reporter and the case's BBA; audited."""
    report = session.get(Report, access.facts.record_id)
    if report is None:
        raise NotFound("no such report")
    policy.audit_access(session, access, "report.read", purpose=REPORT_PURPOSE)
    return _report_public(session, report)


def _report_public(session: Session, report: Report) -> ReportPublic:
    row = session.exec(select(OutboxMessage.seq, OutboxMessage.published_at).where(
        OutboxMessage.event_id == report.envelope_id)).first()
    published = row[1] if row is not None else None
    # No row: the relay published it and the row has since been purged (only published rows are).
    sent = row is None or published is not None
    status = (ReportStatus.ACKNOWLEDGED if report.acknowledged_at is not None
              else ReportStatus.SENT if sent else ReportStatus.QUEUED)
    return ReportPublic(
        id=report.id, case_id=report.case_id, concern_id=report.concern_id, mapping_id=report.mapping_id,
        to_org=report.to_org, municipality_code=report.municipality_code, grounds=report.grounds,
        wheel_id=report.wheel_id, wheel_areas=report.wheel_areas, urgent=report.urgent,
        legal_basis=report.legal_basis, filed_by_user=report.filed_by_user, filed_at=report.filed_at, status=status,
        sent_at=as_utc(published) if published is not None else None,
        acknowledged_at=as_utc(report.acknowledged_at) if report.acknowledged_at is not None else None,
        receiver_reference=report.receiver_reference)


def acknowledge_report(session: Session, *, event: ReportAcknowledged) -> None:
    """Record social services' receipt of a report filed here (applied once per message by the consumer)."""
    report = session.get(Report, event.report_id, with_for_update=True)
    if report is None or report.to_org != event.receiving_org:
        raise Reject("no report of ours went to that organisation", code="unknown_report")
    if report.acknowledged_at is None:
        report.acknowledged_at, report.receiver_reference = event.received_at, event.receiver_reference
        session.add(report)


def receive_report(session: Session, *, settings: IntakeSettings, event: ReportFiled) -> None:
    """Store an orosanmälan for social services' intake desk and acknowledge it, in one transaction."""
    existing = session.exec(select(ReceivedReport).where(ReceivedReport.from_org == event.reporting_org,
                                                         ReceivedReport.report_id == event.report_id)).first()
    if existing is not None:
        return  # the reporter's own id, seen before: received and acknowledged once already
    received = ReceivedReport(
        id=str(uuid.uuid4()), from_org=event.reporting_org, report_id=event.report_id,
        municipality_code=event.municipality_code, child_personnummer=event.child_personnummer,
        child_name=event.child_name, protected_identity=event.protected_identity, grounds=event.grounds,
        wheel_id=event.wheel_id, wheel_areas=list(event.wheel_areas), reporting_unit=event.reporting_unit,
        reported_by_role=event.reported_by_role, contact_user=event.contact_user, urgent=event.urgent,
        legal_basis=event.legal_basis, filed_at=event.filed_at, received_at=utcnow())
    session.add(received)
    send_receipt(session, ReportAcknowledged(
        report_id=event.report_id, reporting_org=event.reporting_org, receiving_org=settings.org,
        receiver_reference=received.id, received_at=received.received_at,
    ), settings=settings, to_org=event.reporting_org, subject=event.report_id)


def _check_desk(session: Session, settings: IntakeSettings, principal: Principal) -> str:
    """The intake desk's unit id, after checking the caller works there (403 otherwise)."""
    try:
        desk = session.get(Unit, _intake_desk(session, settings))
    except InvalidField:
        desk = None
    if desk is None:
        raise NotFound("this organisation's directory has no intake desk")
    policy.check_desk(principal, desk.id, staff=frozenset({desk.bba_user, *desk.deputies}))
    return desk.id


def list_received_reports(session: Session, *, settings: IntakeSettings,
                          access: policy.Access) -> list[ReceivedReportSummary]:
    """Received orosanmälningar for the intake desk, urgent first, then newest; each shown report is audited."""
    desk = _check_desk(session, settings, access.principal)
    rows = session.exec(select(ReceivedReport).order_by(col(ReceivedReport.urgent).desc(),
                                                        col(ReceivedReport.received_at).desc())).all()
    for row in rows:
        audit(session, access.principal, "received_report.list", purpose=REPORT_PURPOSE, record_id=row.id,
              unit_id=desk, basis=DESK_BASIS, protected=row.protected_identity)
    if not rows:
        audit(session, access.principal, "received_report.list", purpose=REPORT_PURPOSE, basis=DESK_BASIS)
    return [ReceivedReportSummary(id=row.id, from_org=row.from_org, protected_identity=row.protected_identity,
                                  child_name=PROTECTED_NAME if row.protected_identity else row.child_name,
                                  urgent=row.urgent, received_at=as_utc(row.received_at)) for row in rows]


def get_received_report(session: Session, *, settings: IntakeSettings, access: policy.Access,
                        report_id: str) -> ReceivedReportPublic:
    """One received orosanmälan with the child and the grounds, for the intake desk; audited."""
    desk = _check_desk(session, settings, access.principal)
    received = session.get(ReceivedReport, report_id)
    if received is None:
        raise NotFound("no such received report")
    audit(session, access.principal, "received_report.read", purpose=REPORT_PURPOSE, record_id=received.id,
          unit_id=desk, basis=DESK_BASIS, protected=received.protected_identity)
    return ReceivedReportPublic.model_validate(received, from_attributes=True)


def record_mapping(session: Session, *, event: MappingOpened | MappingCompleted) -> None:
    """Learn a mapping of a case from mapping's own events, so a report can name it (the completed one wins)."""
    mapping = session.get(CaseMapping, event.mapping_id) or CaseMapping(
        mapping_id=event.mapping_id, case_id=event.case_id, wheel_id=event.wheel_id)
    if isinstance(event, MappingCompleted):
        mapping.flagged_areas, mapping.completed = list(event.flagged_areas), True
    session.add(mapping)
