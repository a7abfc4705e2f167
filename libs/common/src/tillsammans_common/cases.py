"""A child's case, the unit of access: each service's copy of what intake knows of it, and its delegations.

Intake opens one case per child and owns it; the organisation's other services learn each case
and each delegation from intake's events (``CaseRecorded``, ``DelegationRecorded``) and keep the
same two tables, so the access policy (policy.py) reads the same facts in every service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, and_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, Session, SQLModel, col, select

from tillsammans_common.db import utcnow
from tillsammans_common.errors import InvalidField, NotFound
from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import CaseRecorded, DelegationRecorded


class CaseRecord(SQLModel, table=True):
    """A child's case as this service knows it: its unit, its BBA, the child's key and marking; no identity."""

    __tablename__ = "case_record"

    case_id: str = Field(primary_key=True, max_length=64)
    unit_id: str | None = Field(default=None, index=True, max_length=64,
                                description="None for a child with protected identity.")
    bba_user: str = Field(index=True, max_length=128)
    child_key: str = Field(index=True, max_length=64)
    protected_identity: bool = False
    municipality_code: str | None = Field(
        default=None, max_length=4,
        description="SCB code of the child's municipality (decision 24); None when unknown or protected.")
    opened_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class CaseDelegation(SQLModel, table=True):
    """The BBA's recorded act of giving a colleague access to one case for a period."""

    __tablename__ = "case_delegation"

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, max_length=64)
    delegate_user: str = Field(index=True, max_length=128)
    granted_by: str = Field(max_length=128)
    valid_from: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    valid_until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def get_case(session: Session, case_id: str) -> CaseRecord:
    """The case, or 404 (a case this service has not learned of does not exist for it)."""
    case = session.get(CaseRecord, case_id)
    if case is None:
        raise NotFound("no such case")
    return case


def case_in_body(session: Session, case_id: str) -> CaseRecord:
    """The case a request body names, or 422 naming ``case_id`` (a body's reference, not the resource itself)."""
    case = session.get(CaseRecord, case_id)
    if case is None:
        raise InvalidField("case_id", "no such case in this organisation; case ids come from intake")
    return case


def delegation_holds(moment: datetime) -> ColumnElement[bool]:
    """The condition that a delegation row is in force at ``moment``: begun, not ended, not revoked."""
    return and_(col(CaseDelegation.valid_from) <= moment, col(CaseDelegation.valid_until) > moment,
                col(CaseDelegation.revoked_at).is_(None))


def active_delegates(session: Session, case_id: str, *, at: datetime | None = None) -> frozenset[str]:
    """Users with a delegation of the case that holds at ``at`` (now by default)."""
    rows = session.exec(select(col(CaseDelegation.delegate_user)).where(
        col(CaseDelegation.case_id) == case_id, delegation_holds(at or utcnow()))).all()
    return frozenset(rows)


def apply_case_recorded(session: Session, event: CaseRecorded) -> None:
    """Keep this service's copy of a case current; a protected marking is never dropped."""
    case = session.get(CaseRecord, event.case_id)
    if case is None:
        case = CaseRecord(case_id=event.case_id, bba_user=event.bba_user, child_key=event.child_key)
    case.protected_identity = case.protected_identity or event.protected_identity
    case.unit_id = None if case.protected_identity else event.unit_id
    # Where a protected child lives stays with intake; an event that omits it does not erase what was known.
    case.municipality_code = None if case.protected_identity else event.municipality_code or case.municipality_code
    case.bba_user, case.child_key, case.updated_at = event.bba_user, event.child_key, utcnow()
    session.add(case)


def apply_delegation(session: Session, event: DelegationRecorded) -> None:
    """Keep this service's copy of a delegation current (granted, or revoked)."""
    delegation = session.get(CaseDelegation, event.delegation_id) or CaseDelegation(
        id=event.delegation_id, case_id=event.case_id, delegate_user=event.delegate_user, granted_by=event.granted_by,
        valid_from=event.valid_from, valid_until=event.valid_until)
    if event.revoked and delegation.revoked_at is None:
        delegation.revoked_at = utcnow()
    session.add(delegation)


def keep_cases(infra: Any) -> None:
    """Subscribe a service (other than intake) to its organisation's cases and delegations."""
    from tillsammans_common.messaging.consumer import consume

    def on_case(session: Session, _: Envelope, event: CaseRecorded) -> None:
        apply_case_recorded(session, event)

    def on_delegation(session: Session, _: Envelope, event: DelegationRecorded) -> None:
        apply_delegation(session, event)

    consume(infra.broker, infra.engine, infra.settings, event=CaseRecorded, handler=on_case, durable="case-records")
    consume(infra.broker, infra.engine, infra.settings, event=DelegationRecorded, handler=on_delegation,
            durable="case-delegations")
