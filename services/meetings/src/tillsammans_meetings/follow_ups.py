"""Follow-ups that cannot be forgotten: a meeting held, follow-ups and actions overdue, and the list of them.

Overdue is decided row by row with one conditional UPDATE (``... WHERE overdue_at IS NULL``) in the
same transaction as the event that announces it, so two schedulers on one database announce each
row once, and a scheduler that restarts carries on where the database says it is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.db import session_scope, utcnow
from tillsammans_common.errors import Conflict, NotFound
from tillsammans_common.events.meetings import FollowUpOverdue, PlanItemOverdue
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.settings import ServiceSettings
from tillsammans_common.timestamps import as_utc
from tillsammans_meetings.models import (
    CLOSED_ITEM_STATUSES,
    FollowUpPublic,
    FollowUpsPublic,
    Meeting,
    MeetingKind,
    MeetingPublic,
    OverduePlanItem,
    OverdueReceivedItem,
    PlanItem,
    PlanItemStatus,
    ReceivedPlan,
    ReceivedStatus,
)

Clock = Callable[[], datetime]
OPEN_ITEM_STATUSES = [status for status in PlanItemStatus if status not in CLOSED_ITEM_STATUSES]
"""An action in one of these can become overdue; a done or cancelled one never does."""


def mark_held(session: Session, *, access: policy.Access, view: Callable[[Session, Meeting], MeetingPublic],
              now: datetime | None = None) -> MeetingPublic:
    """Record that the meeting was held; a follow-up held is no longer one that can be overdue."""
    meeting = session.get(Meeting, access.facts.record_id or "")
    if meeting is None:
        raise NotFound("no such meeting")
    if meeting.held_at is not None:
        raise Conflict("the meeting is already recorded as held")
    meeting.held_at = now or utcnow()
    session.add(meeting)
    policy.audit_access(session, access, "meeting.held", purpose="follow_up")
    return view(session, meeting)


def overdue_follow_ups(session: Session, now: datetime) -> list[str]:
    """Follow-ups whose time passed without being held, not yet marked overdue."""
    return list(session.exec(select(Meeting.id).where(
        Meeting.kind == MeetingKind.FOLLOW_UP, col(Meeting.held_at).is_(None), col(Meeting.overdue_at).is_(None),
        col(Meeting.scheduled_at) < now)).all())


def overdue_items(session: Session, now: datetime) -> list[str]:
    """Plan items whose due date passed without being done or cancelled, not yet marked overdue."""
    return list(session.exec(select(PlanItem.id).where(
        col(PlanItem.due).is_not(None), col(PlanItem.due) < as_utc(now).date(), col(PlanItem.overdue_at).is_(None),
        col(PlanItem.status).in_(OPEN_ITEM_STATUSES))).all())


def mark_follow_up_overdue(session: Session, *, settings: ServiceSettings, meeting_id: str, now: datetime) -> bool:
    """Mark one follow-up overdue and announce it, unless another pass (or instance) did, or it was held."""
    claimed = session.connection().execute(
        update(Meeting).where(col(Meeting.id) == meeting_id, col(Meeting.overdue_at).is_(None),
                              col(Meeting.held_at).is_(None)).values(overdue_at=now))
    if claimed.rowcount != 1:
        return False
    meeting = session.get(Meeting, meeting_id)
    assert meeting is not None
    record_event(session, FollowUpOverdue(
        meeting_id=meeting.id, follow_up_of=meeting.follow_up_of, case_id=meeting.case_id,
        scheduled_at=as_utc(meeting.scheduled_at), coordinator_org=meeting.coordinator_org,
    ), source=settings.source, org=settings.org, subject=meeting.case_id)
    return True


def mark_item_overdue(session: Session, *, settings: ServiceSettings, item_id: str, now: datetime) -> bool:
    """Mark one plan item overdue and announce it, unless another pass (or instance) did, or it was closed."""
    claimed = session.connection().execute(
        update(PlanItem).where(col(PlanItem.id) == item_id, col(PlanItem.overdue_at).is_(None),
                               col(PlanItem.status).in_(OPEN_ITEM_STATUSES)).values(overdue_at=now))
    if claimed.rowcount != 1:
        return False
    item = session.get(PlanItem, item_id)
    meeting = session.get(Meeting, item.meeting_id) if item else None
    assert item is not None and meeting is not None and item.due is not None
    record_event(session, PlanItemOverdue(
        meeting_id=meeting.id, case_id=meeting.case_id, plan_item_id=item.id, responsible_org=item.responsible_org,
        due=item.due,
    ), source=settings.source, org=settings.org, subject=meeting.case_id)
    return True


def mark_overdue(engine: Engine, *, settings: ServiceSettings, now: datetime) -> int:
    """One pass: mark (and announce) every follow-up and plan item that became overdue; how many this pass did.

    The candidates are read first; each is then claimed in a transaction of its own whose first
    statement is the conditional UPDATE, so a row another instance claimed meanwhile is skipped.
    """
    with session_scope(engine) as session:
        follow_ups, items = overdue_follow_ups(session, now), overdue_items(session, now)
    marked = 0
    for meeting_id in follow_ups:
        with session_scope(engine) as session:
            marked += mark_follow_up_overdue(session, settings=settings, meeting_id=meeting_id, now=now)
    for item_id in items:
        with session_scope(engine) as session:
            marked += mark_item_overdue(session, settings=settings, item_id=item_id, now=now)
    return marked


def list_follow_ups(session: Session, *, principal: Principal, overdue: bool, org: str,
                    facts: Callable[[Session, str], policy.Facts], today: date | None = None) -> FollowUpsPublic:
    """The follow-ups (all open ones, or only the overdue) and the overdue actions of plans the caller may read.

    Each row is admitted by the same rule as reading its meeting (the case's BBA, delegates, the
    unit's integration, the one who booked it, the samordningsperson), and each admitted one is audited.
    Coordinators and integrations also see this organisation's own open actions, past their due date,
    in the plans other organisations share here.
    """
    day = today or utcnow().date()
    query = select(Meeting).where(Meeting.kind == MeetingKind.FOLLOW_UP, col(Meeting.held_at).is_(None))
    if overdue:
        query = query.where(col(Meeting.overdue_at).is_not(None))
    follow_ups: list[FollowUpPublic] = []
    for meeting in session.exec(query.order_by(col(Meeting.scheduled_at))).all():
        access = policy.decide(principal, policy.Action.MEETING_READ, facts(session, meeting.id))
        if access is not None:
            policy.audit_access(session, access, "follow_up.list", purpose="follow_up")
            follow_ups.append(FollowUpPublic.model_validate(meeting, from_attributes=True))
    items: list[OverduePlanItem] = []
    rows = session.exec(select(PlanItem, Meeting).where(
        col(PlanItem.meeting_id) == col(Meeting.id), col(PlanItem.overdue_at).is_not(None),
        col(PlanItem.status).in_(OPEN_ITEM_STATUSES)).order_by(col(PlanItem.due))).all()
    for item, meeting in rows:
        assert item.overdue_at is not None  # the query says so
        access = policy.decide(principal, policy.Action.MEETING_READ, facts(session, meeting.id))
        if access is not None:
            policy.audit_access(session, access, "plan_item.overdue.list", purpose="sip", record_id=item.id)
            items.append(OverduePlanItem(
                id=item.id, meeting_id=meeting.id, case_id=meeting.case_id, responsible_org=item.responsible_org,
                responsible_person=item.responsible_person, due=item.due, status=item.status,
                overdue_at=as_utc(item.overdue_at)))
    return FollowUpsPublic(follow_ups=follow_ups, overdue_plan_items=items,
                           overdue_in_received_plans=_overdue_in_received_plans(
                               session, principal=principal, org=org, today=day))


def _overdue_in_received_plans(session: Session, *, principal: Principal, org: str,
                               today: date) -> list[OverdueReceivedItem]:
    # This organisation's own actions in the plans others hold: the holder's scheduler watches them too,
    # but the principal that must act sees them here, from its own copy.
    if policy.decide(principal, policy.Action.RECEIVED_PLANS_READ) is None:
        return []
    overdue: list[OverdueReceivedItem] = []
    for plan in session.exec(select(ReceivedPlan).where(ReceivedPlan.status == ReceivedStatus.RECEIVED)).all():
        mine = [item for item in plan.items if item.get("responsible_org") == org and item.get("due")
                and date.fromisoformat(item["due"]) < today
                and PlanItemStatus(item["status"]) not in CLOSED_ITEM_STATUSES]
        for item in mine:
            overdue.append(OverdueReceivedItem(plan_id=plan.id, from_org=plan.from_org, item_id=item["item_id"],
                                               responsible_person=item.get("responsible_person"),
                                               due=date.fromisoformat(item["due"]), status=item["status"]))
        if mine:
            audit(session, principal, "received_plan.overdue.list", purpose="sip", record_id=plan.id,
                  basis="role:" + principal.role.value, protected=plan.protected_identity)
    return sorted(overdue, key=lambda item: item.due)
