"""The SIP every principal holds: the plan's items and their status, overall responsibility, the plan shared
with each participating organisation under a consent for purpose sip, and the copies received from others.

The holder (the organisation that called the SIP meeting) keeps the plan; every change raises its
version and the whole plan goes to each participant whose invitation stands. A participant keeps the
newest version it received and moves only its own items on, by reporting to the holder.
"""

from __future__ import annotations

import hmac
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from nats.aio.client import Client
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal, Role
from tillsammans_common.db import run_db, session_scope, utcnow
from tillsammans_common.errors import Conflict, Forbidden, InvalidField, NotFound, ServiceUnavailable
from tillsammans_common.events import Envelope
from tillsammans_common.events.meetings import (
    ChildIdentity,
    PlanItemStatusChanged,
    SharedPlanItem,
    SipItemStatusReported,
    SipPlanShared,
)
from tillsammans_common.messaging.egress import Disclosure, disclose, prepare_disclosure, request_permits, send_receipt
from tillsammans_common.messaging.gate import DisclosureVerdict
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.messaging.refusals import Reject
from tillsammans_common.personnummer import normalize, pair_key
from tillsammans_common.settings import ServiceSettings
from tillsammans_common.timestamps import as_utc
from tillsammans_meetings.models import (
    ITEM_TRANSITIONS,
    OTHERS,
    ChildOut,
    Meeting,
    MeetingKind,
    MeetingStatus,
    OverallResponsibilityPut,
    PlanItem,
    PlanItemPublic,
    PlanItemStatus,
    PlanItemStatusPut,
    PlanShare,
    ReceivedPlan,
    ReceivedPlanItem,
    ReceivedPlanPublic,
    ReceivedPlanSummary,
    ReceivedStatus,
    SipPlanPublic,
)

log = logging.getLogger(__name__)

SIP_PURPOSE = "sip"
SHARER = "system:sip-plan"
"""Who asks the consent service when the holder shares a plan again on its own (after a participant's report)."""


# --- the plan at its holder ---------------------------------------------------------------------


def check_transition(current: PlanItemStatus, new: PlanItemStatus) -> None:
    """Raise Conflict unless an item may move from ``current`` to ``new`` (see ITEM_TRANSITIONS)."""
    if new not in ITEM_TRANSITIONS[current]:
        raise Conflict(f"an item that is {current.value} cannot become {new.value}")


def changed(meeting: Meeting) -> None:
    """The plan changed: raise its version, so the participants get it again (and keep only the newest)."""
    meeting.plan_version += 1


def _items(session: Session, meeting_id: str) -> list[PlanItem]:
    return list(session.exec(select(PlanItem).where(PlanItem.meeting_id == meeting_id)
                             .order_by(col(PlanItem.created_at), col(PlanItem.id))).all())


def plan_view(session: Session, meeting: Meeting) -> SipPlanPublic:
    """The plan with the four things a SIP states, and how it reached each participant."""
    session.flush()
    shares = [PlanShare(org=org, **share) for org, share in sorted((meeting.plan_shares or {}).items())]
    return SipPlanPublic(
        meeting_id=meeting.id, kind=meeting.kind, version=meeting.plan_version,
        child=ChildOut(personnummer=meeting.child_personnummer, name=meeting.child_name,
                       protected_identity=meeting.protected_identity),
        scheduled_at=meeting.scheduled_at, coordinator_org=meeting.coordinator_org,
        coordinator_user=meeting.coordinator_user, child_wish_org=meeting.child_wish_org,
        child_wish_person=meeting.child_wish_person, special_reason=meeting.special_reason,
        overall_responsible_org=meeting.overall_responsible_org, follow_up_at=meeting.follow_up_at,
        follow_up_id=meeting.follow_up_id,
        items=[PlanItemPublic.model_validate(item, from_attributes=True) for item in _items(session, meeting.id)],
        shared_with=shares,
    )


def _meeting(session: Session, access: policy.Access) -> Meeting:
    meeting = session.get(Meeting, access.facts.record_id or "")
    if meeting is None:
        raise NotFound("no such meeting")
    return meeting


def _running(session: Session, access: policy.Access) -> Meeting:
    # A cancel was sent to every invited organisation: the plan of a cancelled meeting no longer changes.
    meeting = _meeting(session, access)
    if meeting.status == MeetingStatus.CANCELLED:
        raise Conflict("the meeting is cancelled; its plan can no longer be changed")
    return meeting


def get_plan(session: Session, *, access: policy.Access) -> SipPlanPublic:
    """Read the plan (audited)."""
    meeting = _meeting(session, access)
    policy.audit_access(session, access, "meeting.plan.read", purpose=SIP_PURPOSE)
    return plan_view(session, meeting)


def set_overall_responsibility(session: Session, *, settings: ServiceSettings, access: policy.Access,
                               data: OverallResponsibilityPut, participating: set[str]) -> SipPlanPublic:
    """Name the principal with overall responsibility: this organisation or one whose invitation stands."""
    meeting = _running(session, access)
    if data.org not in participating:
        raise InvalidField("org", "must be this organisation or one invited to the meeting")
    if meeting.overall_responsible_org != data.org:
        meeting.overall_responsible_org = data.org
        changed(meeting)
        session.add(meeting)
    policy.audit_access(session, access, "meeting.plan.overall_responsibility", purpose=SIP_PURPOSE)
    return plan_view(session, meeting)


def _move(session: Session, *, settings: ServiceSettings, meeting: Meeting, item: PlanItem,
          status: PlanItemStatus, by: str) -> None:
    check_transition(item.status, status)
    item.status = status
    item.status_changed_by = by
    item.status_changed_at = utcnow()
    session.add(item)
    changed(meeting)
    session.add(meeting)
    record_event(session, PlanItemStatusChanged(
        meeting_id=meeting.id, case_id=meeting.case_id, plan_item_id=item.id, responsible_org=item.responsible_org,
        status=status.value,
    ), source=settings.source, org=settings.org, subject=meeting.case_id)


def set_item_status(session: Session, *, settings: ServiceSettings, access: policy.Access, item_id: str,
                    data: PlanItemStatusPut) -> PlanItemPublic:
    """Move one of this organisation's own items on (or one by others, which the holder records).

    Another principal's item is refused (403): that organisation reports its own items from its copy.
    """
    meeting = _running(session, access)
    item = session.get(PlanItem, item_id)
    if item is None or item.meeting_id != meeting.id:
        raise NotFound("no such item in this plan")
    if item.responsible_org not in (settings.org, OTHERS):
        raise Forbidden(f"the item is {item.responsible_org}'s: only that organisation moves it on")
    _move(session, settings=settings, meeting=meeting, item=item, status=data.status, by=access.principal.user)
    policy.audit_access(session, access, "meeting.plan_item.status", purpose=SIP_PURPOSE, record_id=item.id)
    session.flush()
    return PlanItemPublic.model_validate(item, from_attributes=True)


def apply_reported_status(session: Session, *, settings: ServiceSettings, envelope: Envelope,
                          event: SipItemStatusReported, participating: Callable[[Meeting], set[str]]) -> None:
    """Apply a participant's report on its own item; anything else is refused with a reason code (Reject)."""
    meeting = session.get(Meeting, event.plan_id)
    if meeting is None or meeting.kind is not MeetingKind.SIP:
        raise Reject("no such plan here", code="unknown_plan")
    item = session.get(PlanItem, event.item_id)
    if item is None or item.meeting_id != meeting.id:
        raise Reject("no such item in the plan", code="unknown_item")
    sender = envelope.source_org
    if sender not in participating(meeting):
        raise Reject("the sender takes no part in the plan", code="not_a_participant")
    if item.responsible_org != sender:
        raise Reject("the item is another principal's", code="not_own_item")
    try:
        status = PlanItemStatus(event.status)
    except ValueError:
        raise Reject("unknown status", code="invalid_status") from None
    if status is item.status:
        return  # the same report again: nothing to change
    try:
        _move(session, settings=settings, meeting=meeting, item=item, status=status, by=f"org:{sender}")
    except Conflict:
        raise Reject("the item cannot move to that status", code="invalid_transition") from None


# --- sharing the plan with the participants ---------------------------------------------------------


@dataclass(frozen=True)
class PlanSharing:
    """One version of a plan about to go to its participants: one disclosure each, not yet decided."""

    meeting_id: str
    version: int
    disclosures: list[Disclosure]


def pending_plans(session: Session) -> list[str]:
    """SIP meetings whose newest plan version has not been put to the participants yet."""
    return list(session.exec(select(Meeting.id).where(
        Meeting.kind == MeetingKind.SIP, col(Meeting.plan_version) > col(Meeting.plan_shared_version))).all())


def plan_sharing(session: Session, *, settings: ServiceSettings, meeting_id: str, principal: Principal,
                 participating: set[str]) -> PlanSharing | None:
    """The disclosures of a plan's newest version, or None when it has been shared already."""
    meeting = session.get(Meeting, meeting_id)
    if meeting is None or meeting.kind is not MeetingKind.SIP or meeting.plan_shared_version >= meeting.plan_version:
        return None
    items = [SharedPlanItem(item_id=item.id, action=item.action, responsible_org=item.responsible_org,
                            responsible_party=item.responsible_party, responsible_person=item.responsible_person,
                            due=item.due, status=item.status.value) for item in _items(session, meeting.id)]
    child = ChildIdentity(personnummer=meeting.child_personnummer, name=meeting.child_name,
                          protected_identity=meeting.protected_identity)
    everyone = sorted(participating)
    disclosures = [prepare_disclosure(SipPlanShared(
        plan_id=meeting.id, version=meeting.plan_version, kind=meeting.kind.value,
        scheduled_at=as_utc(meeting.scheduled_at),
        child_key=pair_key(meeting.child_personnummer, settings.pair_secret(org)), child=child,
        participants=everyone, coordinator_org=meeting.coordinator_org, coordinator_user=meeting.coordinator_user,
        overall_responsible_org=meeting.overall_responsible_org,
        follow_up_at=as_utc(meeting.follow_up_at) if meeting.follow_up_at else None, items=items,
    ), settings=settings, to_org=org, subject=meeting.id, principal=principal, child_ref=meeting.child_key)
        for org in everyone if org != settings.org]
    return PlanSharing(meeting_id=meeting.id, version=meeting.plan_version, disclosures=disclosures)


def record_sharing(session: Session, *, settings: ServiceSettings, sharing: PlanSharing,
                   verdicts: list[DisclosureVerdict]) -> None:
    """Queue the plan to each participant its consent service permitted; note the refusals (per organisation)."""
    meeting = session.get(Meeting, sharing.meeting_id)
    if meeting is None or meeting.plan_shared_version >= sharing.version:
        return  # a newer version went out meanwhile
    shares = dict(meeting.plan_shares or {})
    for disclosure, verdict in zip(sharing.disclosures, verdicts, strict=True):
        if meeting.protected_identity:
            # Every disclosure about a protected child waits for a person's review; plans are not reviewed yet.
            shares[disclosure.to_org] = {"version": sharing.version, "refused": "protected identity: manual review"}
        elif verdict.allowed and verdict.consent_id is not None:
            envelope = disclose(session, disclosure, verdict, settings=settings)
            shares[disclosure.to_org] = {"version": sharing.version, "consent_id": envelope.consentid}
        else:
            shares[disclosure.to_org] = {"version": sharing.version, "refused": verdict.reason[:200]}
    meeting.plan_shares = shares
    meeting.plan_shared_version = sharing.version
    session.add(meeting)


async def share_plans(*, engine: Engine, connection: Client, settings: ServiceSettings, principal: Principal | None,
                      participating: Callable[[Session, Meeting], set[str]],
                      meeting_ids: list[str] | None = None) -> None:
    """Share each pending plan's newest version with its participants, under consent decided now.

    A consent service that does not answer leaves the plan pending: the scheduler's next pass tries again.
    """
    sharer = principal or Principal(org=settings.org, user=SHARER, roles=frozenset({Role.INTEGRATION}), client=True)

    def pending() -> list[str]:
        with session_scope(engine) as session:
            return pending_plans(session)

    for meeting_id in meeting_ids if meeting_ids is not None else await run_db(engine, pending):
        def build(meeting_id: str = meeting_id) -> PlanSharing | None:
            with session_scope(engine) as session:
                meeting = session.get(Meeting, meeting_id)
                if meeting is None:
                    return None
                return plan_sharing(session, settings=settings, meeting_id=meeting_id, principal=sharer,
                                    participating=participating(session, meeting))

        sharing = await run_db(engine, build)
        if sharing is None:
            continue
        try:
            verdicts = await request_permits(connection, settings, sharing.disclosures)
        except ServiceUnavailable:
            log.warning("plan not shared: the consent service did not answer; retried on the next pass")
            continue

        def write(sharing: PlanSharing = sharing, verdicts: list[DisclosureVerdict] = verdicts) -> None:
            with session_scope(engine) as session:
                record_sharing(session, settings=settings, sharing=sharing, verdicts=verdicts)

        await run_db(engine, write)


# --- plans received from other organisations -------------------------------------------------------


def identity_matches_key(event: SipPlanShared, *, pair_secret: str) -> bool:
    """Whether the child in a plan is the child its consent was checked for (the pair's child key)."""
    return hmac.compare_digest(pair_key(normalize(event.child.personnummer), pair_secret), event.child_key)


def receive_plan(session: Session, *, envelope: Envelope, event: SipPlanShared) -> None:
    """Keep the newest version of a plan another organisation holds; an older or equal one changes nothing."""
    known = {status.value for status in PlanItemStatus}
    if any(item.status not in known for item in event.items):
        # Stored items are read back as PlanItemStatus: one the holder could not have written is refused.
        raise Reject("an item has an unknown status", code="invalid_status")
    row = session.get(ReceivedPlan, event.plan_id)
    if row is not None and row.from_org != envelope.source_org:
        raise Reject("the plan id belongs to another organisation's plan", code="other_holder")
    if row is not None and (row.version >= event.version or row.status is ReceivedStatus.WITHDRAWN):
        # Older than what is kept, or its consent was withdrawn here: a withdrawn plan comes back only
        # as a new plan under a new consent, never by a late version of the old one.
        return
    row = row or ReceivedPlan(id=event.plan_id, from_org=envelope.source_org, consent_id="", version=0,
                              kind=event.kind, scheduled_at=as_utc(event.scheduled_at), child_personnummer="",
                              child_name="", child_key="", items=[])
    row.consent_id = envelope.consentid or ""
    row.version = event.version
    row.kind = event.kind
    row.scheduled_at = as_utc(event.scheduled_at)
    row.child_personnummer = normalize(event.child.personnummer)
    row.child_name = event.child.name
    row.protected_identity = event.child.protected_identity
    row.child_key = event.child_key
    row.coordinator_org = event.coordinator_org
    row.coordinator_user = event.coordinator_user
    row.overall_responsible_org = event.overall_responsible_org
    row.follow_up_at = as_utc(event.follow_up_at) if event.follow_up_at else None
    row.items = [item.model_dump(mode="json") for item in event.items]
    row.updated_at = utcnow()
    session.add(row)


def mark_shares_withdrawn(session: Session, *, consent_id: str, child_key: str) -> None:
    """This organisation's consent was withdrawn: its plans no longer stand shared under it (the receivers purge)."""
    meetings = session.exec(select(Meeting).where(Meeting.kind == MeetingKind.SIP,
                                                  Meeting.child_key == child_key)).all()
    for meeting in meetings:
        shares = dict(meeting.plan_shares or {})
        for org, share in shares.items():
            if share.get("consent_id") == consent_id:
                shares[org] = {"version": share["version"], "refused": "consent withdrawn"}
        if shares != meeting.plan_shares:
            meeting.plan_shares = shares
            session.add(meeting)


def purge_received_plans(session: Session, *, consent_id: str, disclosing_org: str,
                         withdrawn_at: datetime) -> int:
    """Forget the plans received under a withdrawn consent: only that one arrived, and when, remains."""
    rows = session.exec(select(ReceivedPlan).where(ReceivedPlan.consent_id == consent_id,
                                                   ReceivedPlan.from_org == disclosing_org)).all()
    for row in rows:
        row.status = ReceivedStatus.WITHDRAWN
        row.withdrawn_at = row.withdrawn_at or withdrawn_at
        row.child_personnummer = row.child_name = row.child_key = ""
        row.protected_identity = False
        row.coordinator_user = None
        row.items = []
        session.add(row)
    return len(rows)


def list_received_plans(session: Session, *, principal: Principal) -> list[ReceivedPlanSummary]:
    """Plans other organisations share here, newest first, without identities; each listed is audited."""
    rows = session.exec(select(ReceivedPlan).order_by(col(ReceivedPlan.updated_at).desc())).all()
    for row in rows:
        audit(session, principal, "received_plan.list", purpose=SIP_PURPOSE, record_id=row.id,
              basis="role:" + principal.role.value, protected=row.protected_identity)
    if not rows:
        audit(session, principal, "received_plan.list", purpose=SIP_PURPOSE)
    return [ReceivedPlanSummary.model_validate(row, from_attributes=True) for row in rows]


def _received(session: Session, plan_id: str) -> ReceivedPlan:
    row = session.get(ReceivedPlan, plan_id)
    if row is None:
        raise NotFound("no such plan")
    return row


def get_received_plan(session: Session, *, principal: Principal, plan_id: str) -> ReceivedPlanPublic:
    """One received plan with the child and the actions (audited); after withdrawal only that it arrived."""
    row = _received(session, plan_id)
    audit(session, principal, "received_plan.read", purpose=SIP_PURPOSE, record_id=row.id,
          basis="role:" + principal.role.value, protected=row.protected_identity)
    shown = row.status is ReceivedStatus.RECEIVED
    summary = ReceivedPlanSummary.model_validate(row, from_attributes=True)
    return ReceivedPlanPublic(
        **summary.model_dump(),
        child=ChildOut(personnummer=row.child_personnummer, name=row.child_name,
                       protected_identity=row.protected_identity) if shown else None,
        coordinator_user=row.coordinator_user if shown else None,
        items=[ReceivedPlanItem.model_validate(item) for item in row.items] if shown else [],
    )


def report_item_status(session: Session, *, settings: ServiceSettings, principal: Principal, plan_id: str,
                       item_id: str, data: PlanItemStatusPut) -> ReceivedPlanPublic:
    """Move one of this organisation's own items of a received plan on: reported to the holder, who shares anew.

    Another principal's item is refused here (403) before anything is sent; the holder checks again.
    """
    row = _received(session, plan_id)
    if row.status is not ReceivedStatus.RECEIVED:
        raise Conflict("the consent this plan was shared under is withdrawn")
    item = next((item for item in row.items if item.get("item_id") == item_id), None)
    if item is None:
        raise NotFound("no such item in this plan")
    if item["responsible_org"] != settings.org:
        raise Forbidden(f"the item is {item['responsible_org']}'s: only that organisation moves it on")
    check_transition(PlanItemStatus(item["status"]), data.status)
    send_receipt(session, SipItemStatusReported(plan_id=row.id, item_id=item_id, status=data.status.value,
                                                reporting_org=settings.org, holder_org=row.from_org),
                 settings=settings, to_org=row.from_org, subject=row.id)
    audit(session, principal, "received_plan.item_status", purpose=SIP_PURPOSE, record_id=row.id,
          basis="role:" + principal.role.value, protected=row.protected_identity)
    return get_received_plan(session, principal=principal, plan_id=plan_id)


# --- the printed plan, for the family ---------------------------------------------------------------

STATUS_SV = {PlanItemStatus.PLANNED: "planerad", PlanItemStatus.IN_PROGRESS: "pågår", PlanItemStatus.DONE: "klar",
             PlanItemStatus.CANCELLED: "avbruten"}


def plan_document(session: Session, *, access: policy.Access) -> str:
    """The plan as a printable HTML page for the family: who does what, by when, and who holds it together.

    It names the child (it is the family's own copy); it is never logged. Every value is escaped.
    """
    meeting = _meeting(session, access)
    plan = plan_view(session, meeting)
    policy.audit_access(session, access, "meeting.plan.print", purpose=SIP_PURPOSE)
    e = html.escape

    def when(value: datetime | None) -> str:
        return as_utc(value).strftime("%Y-%m-%d %H:%M UTC") if value else "inte bokad"

    def row(item: PlanItemPublic) -> str:
        who = e(item.responsible_party or "") if item.responsible_org == OTHERS else e(item.responsible_org)
        return (f"<tr><td>{e(item.action)}</td><td>{who}</td><td>{e(item.responsible_person or '')}</td>"
                f"<td>{item.due.isoformat() if item.due else ''}</td><td>{STATUS_SV[item.status]}</td></tr>")

    principals = [item for item in plan.items if item.responsible_org != OTHERS]
    others = [item for item in plan.items if item.responsible_org == OTHERS]
    head = ("<tr><th>Insats</th><th>Ansvarig huvudman</th><th>Ansvarig person</th><th>Klart senast</th>"
            "<th>Status</th></tr>")
    coordinator = (f"{e(plan.coordinator_user or '')} ({e(plan.coordinator_org or '')})"
                   if plan.coordinator_org else "inte utsedd")
    return f"""<!DOCTYPE html>
<html lang="sv"><head><meta charset="utf-8"><title>Samordnad individuell plan (SIP)</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #888;padding:.3em;text-align:left}}@media print{{a{{display:none}}}}</style></head>
<body>
<h1>Samordnad individuell plan (SIP)</h1>
<p>För: <strong>{e(plan.child.name)}</strong></p>
<p>SIP-möte: {when(plan.scheduled_at)}. Planens version: {plan.version}.</p>
<h2>Samordningsperson</h2><p>{coordinator}</p>
<h2>Huvudman med övergripande ansvar</h2><p>{e(plan.overall_responsible_org or "inte bestämd")}</p>
<h2>Insatser och ansvarig huvudman</h2>
<table>{head}{"".join(row(item) for item in principals) or '<tr><td colspan="5">Inga insatser</td></tr>'}</table>
<h2>Insatser av andra</h2>
<table>{head}{"".join(row(item) for item in others) or '<tr><td colspan="5">Inga insatser</td></tr>'}</table>
<h2>Uppföljning</h2><p>{when(plan.follow_up_at)}</p>
<p><small>Planen bygger på SoL 2 kap. 7 § och HSL 16 kap. 4 §.</small></p>
</body></html>
"""
