"""Intake's domain operations: raise and route concerns, keep the BBA directory and inbox."""

from __future__ import annotations

import json
import uuid
from importlib import resources
from pathlib import Path

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.errors import InvalidField, NotFound
from tillsammans_common.events.intake import ConcernRaised, ConcernRouted
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.personnummer import child_key
from tillsammans_common.wheel import all_area_codes
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.models import (
    Concern,
    ConcernCreate,
    ConcernPublic,
    InboxItem,
    InboxItemPublic,
    Unit,
    UnitPublic,
    UnitPut,
)

# Only the BBA is needed: two columns, not a whole ORM object, on the busiest write there is; the
# statement is built once so SQLAlchemy reuses its compiled form.
_UNIT_BBA = select(col(Unit.id), col(Unit.bba_user)).where(col(Unit.id) == bindparam("unit_id"))
_PROTECTED = select(col(Concern.id)).where(col(Concern.child_personnummer) == bindparam("personnummer"),
                                           col(Concern.protected_identity).is_(True)).limit(1)


def raise_concern(session: Session, *, settings: IntakeSettings, principal: Principal,
                  data: ConcernCreate) -> ConcernPublic:
    """Store a concern and route it to the BBA of the child's unit, in one transaction."""
    unknown = sorted(set(data.wheel_areas) - all_area_codes())
    if unknown:
        raise InvalidField("wheel_areas", f"unknown wheel area(s): {', '.join(unknown)}")
    unit = session.connection().execute(_UNIT_BBA, {"unit_id": data.unit_id}).first()
    if unit is None:
        raise InvalidField("unit_id", "no such unit in this organisation's directory")
    # Protected identity belongs to the child's record, not to one request: once marked, always marked.
    protected = data.child.protected_identity or session.connection().execute(
        _PROTECTED, {"personnummer": data.child.personnummer}).first() is not None
    concern = Concern(
        id=str(uuid.uuid4()), case_id=str(uuid.uuid4()), unit_id=unit.id,
        child_personnummer=data.child.personnummer, child_name=data.child.name,
        protected_identity=protected, wheel_areas=list(dict.fromkeys(data.wheel_areas)),
        description=data.description, raised_by_user=principal.user, raised_by_role=principal.role.value,
        bba_user=unit.bba_user,
    )
    session.add(concern)
    record_event(session, ConcernRaised(
        concern_id=concern.id, case_id=concern.case_id, unit_id=unit.id, wheel_areas=concern.wheel_areas,
        raised_by_role=principal.role.value, protected_identity=concern.protected_identity,
        child_key=child_key(concern.child_personnummer, settings.child_key_secret.get_secret_value()),
    ), source=settings.source, org=settings.org, subject=concern.case_id)
    record_event(session, ConcernRouted(
        concern_id=concern.id, case_id=concern.case_id, unit_id=unit.id, bba_user=unit.bba_user,
    ), source=settings.source, org=settings.org, subject=concern.case_id)
    audit(session, principal, "concern.raise", case_id=concern.case_id, purpose="early_support")
    return ConcernPublic.model_validate(concern, from_attributes=True)


def get_concern(session: Session, *, principal: Principal, concern_id: str) -> ConcernPublic:
    """Read a concern; the read is audited."""
    concern = session.get(Concern, concern_id)
    if concern is None:
        raise NotFound("no such concern")
    audit(session, principal, "concern.read", case_id=concern.case_id, purpose="early_support")
    return ConcernPublic.model_validate(concern, from_attributes=True)


def deliver_to_inbox(session: Session, *, event: ConcernRouted) -> None:
    """Put a routed concern in its BBA's inbox (applied once per event by the consumer)."""
    session.add(InboxItem(bba_user=event.bba_user, concern_id=event.concern_id, case_id=event.case_id))


def inbox(session: Session, *, principal: Principal) -> list[InboxItemPublic]:
    """The caller's inbox, newest first."""
    rows = session.exec(
        select(InboxItem, Concern).join(Concern, col(Concern.id) == col(InboxItem.concern_id))
        .where(InboxItem.bba_user == principal.user).order_by(col(InboxItem.received_at).desc())
    ).all()
    audit(session, principal, "inbox.read")
    return [InboxItemPublic(concern_id=item.concern_id, case_id=item.case_id, unit_id=concern.unit_id,
                            wheel_areas=concern.wheel_areas, received_at=item.received_at) for item, concern in rows]


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
    audit(session, principal, "unit.put")
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
