"""Need-to-know: the one place that answers "may this principal do this action on this record?".

Two kinds of rule (docs/decisions/0019-need-to-know.md has the table, and tests check it row by row):
- an action on a child's record is allowed by a *relation* between the caller and the record (the
  BBA of the child's unit, a delegate of that BBA, a participant of the meeting, ...);
- an action on no child's record (the directory, the audit trail, anonymous consultations) is
  allowed by *role* alone.
Auditors and admins hold no relation to any child, so they never read child data. Routes state
their rule in their signature through the dependencies at the end of this module; lists are
narrowed by ``visible_cases``, the same rule written as a query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Path, Request, status
from sqlalchemy import false, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from tillsammans_common.audit import audit
from tillsammans_common.auth import AccessRefused, Principal, Role, require
from tillsammans_common.cases import CaseDelegation, CaseRecord, active_delegates, delegation_holds, get_case
from tillsammans_common.db import utcnow
from tillsammans_common.web import run_query


class Action(StrEnum):
    """What a caller asks to do."""

    CASE_READ = "case.read"
    """Read a child's case data: a concern with the child, a mapping, a consent, a meeting."""
    CASE_WORK = "case.work"
    """Act on a child's case: map, complete a mapping, record or withdraw consent, call a meeting."""
    CASE_DELEGATE = "case.delegate"
    """Give a colleague access to the case for a period, or take it back."""
    CASE_TRANSFER = "case.transfer"
    """Hand the case over to another unit and its BBA (the intake desk routing a concern on, a child who moved)."""
    CONCERN_STATUS = "concern.status"
    """See where a concern is (not the child's situation)."""
    MEETING_READ = "meeting.read"
    MEETING_RUN = "meeting.run"
    """Appoint the coordinator, add plan items, book the follow-up."""
    CONCERN_RAISE = "concern.raise"
    INBOX_READ = "inbox.read"
    DIRECTORY_READ = "directory.read"
    DIRECTORY_WRITE = "directory.write"
    WHEEL_READ = "wheel.read"
    AUDIT_READ = "audit.read"
    DISCLOSURE_REVIEW = "disclosure.review"
    DISCLOSURE_ASK = "disclosure.ask"
    """Ask whether a disclosure is covered (the answer carries no identity)."""
    RECEIVED_INVITATIONS_READ = "received_invitations.read"
    INVITATION_ANSWER = "invitation.answer"
    """Accept (naming participants) or decline an invitation another organisation sent."""
    RECEIVED_INVITATION_CALENDAR = "received_invitation.calendar"
    """Fetch a received invitation's meeting as a calendar file (no child data in it)."""
    RECEIVED_PLANS_READ = "received_plans.read"
    """Read the SIPs other organisations share here (the child may have no case here yet)."""
    RECEIVED_PLAN_REPORT = "received_plans.report"
    """Move this organisation's own items of another organisation's SIP on (reported to its holder)."""
    REPLICAS_READ = "replicas.read"
    CONSULTATION_ASK = "consultation.ask"
    CONSULTATION_READ = "consultation.read"
    CONSULTATION_ANSWER = "consultation.answer"
    """Answer an anonymous consultation another organisation asked (advice, or "we can help")."""
    FORUM_MANAGE = "forum.manage"
    """Define a recurring forum and put this organisation's anonymous consultations on its agenda."""
    FORUM_READ = "forum.read"
    """See a forum, its occurrences, its agenda (anonymous) and its calendar."""
    OPERATE = "operate"
    """Dead letters and other operations of the service itself (no child data)."""
    REPORT_FILE = "report.file"
    """File an orosanmälan to social services from a child's case or concern (no consent needed)."""
    REPORT_READ = "report.read"
    """See an orosanmälan this organisation filed and where it is (queued, sent, acknowledged)."""
    RECEIVED_REPORTS_READ = "received_reports.read"
    """Read the orosanmälningar social services received (its intake desk only, see ``check_desk``)."""


class Relation(StrEnum):
    """How a caller stands to a record: the basis an audit record names."""

    BBA_OF_UNIT = "bba-of-unit"
    DELEGATE = "delegate"
    INTEGRATION_UNIT = "integration-unit"
    PARTICIPANT = "participant"
    COORDINATOR = "coordinator"
    RAISER = "raiser"
    REPORTER = "reporter"
    RECEIVER = "receiver"
    """A coordinator or integration of the organisation that received the invitation."""


# Roles a person needs to stand in a relation to a child at all: an auditor or admin never does.
PERSON_ROLES = frozenset({Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.REVIEWER})

CASE_RELATIONS = frozenset({Relation.BBA_OF_UNIT, Relation.DELEGATE, Relation.INTEGRATION_UNIT})

RECORD_RULES: dict[Action, frozenset[Relation]] = {
    Action.CASE_READ: CASE_RELATIONS,
    Action.CASE_WORK: CASE_RELATIONS,
    Action.CASE_DELEGATE: frozenset({Relation.BBA_OF_UNIT}),
    Action.CASE_TRANSFER: frozenset({Relation.BBA_OF_UNIT}),
    Action.CONCERN_STATUS: CASE_RELATIONS | {Relation.RAISER},
    Action.MEETING_READ: CASE_RELATIONS | {Relation.PARTICIPANT, Relation.COORDINATOR},
    Action.MEETING_RUN: CASE_RELATIONS | {Relation.COORDINATOR},
    # The duty to report is each professional's own: whoever may act on the case, or raised the concern.
    Action.REPORT_FILE: CASE_RELATIONS | {Relation.RAISER},
    # A report tells the child is feared to be harmed: its reporter and the case's BBA, not every delegate.
    Action.REPORT_READ: frozenset({Relation.BBA_OF_UNIT, Relation.REPORTER}),
    Action.RECEIVED_INVITATION_CALENDAR: frozenset({Relation.RECEIVER, Relation.PARTICIPANT}),
}
"""Actions on a child's record, and the relations that allow each."""

ROLE_RULES: dict[Action, frozenset[Role]] = {
    Action.CONCERN_RAISE: frozenset({Role.PROFESSIONAL, Role.BBA, Role.COORDINATOR, Role.INTEGRATION}),
    Action.INBOX_READ: frozenset({Role.BBA}),
    Action.DIRECTORY_READ: frozenset(Role),
    Action.DIRECTORY_WRITE: frozenset({Role.ADMIN}),
    Action.WHEEL_READ: frozenset(Role),
    Action.AUDIT_READ: frozenset({Role.AUDITOR}),
    Action.DISCLOSURE_REVIEW: frozenset({Role.REVIEWER}),
    Action.DISCLOSURE_ASK: frozenset({Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION}),
    Action.RECEIVED_INVITATIONS_READ: frozenset({Role.COORDINATOR, Role.INTEGRATION}),
    Action.INVITATION_ANSWER: frozenset({Role.COORDINATOR, Role.INTEGRATION}),
    Action.RECEIVED_PLANS_READ: frozenset({Role.COORDINATOR, Role.INTEGRATION}),
    Action.RECEIVED_PLAN_REPORT: frozenset({Role.COORDINATOR, Role.INTEGRATION}),
    Action.REPLICAS_READ: frozenset({Role.BBA, Role.COORDINATOR, Role.INTEGRATION}),
    Action.CONSULTATION_ASK: frozenset({Role.BBA, Role.COORDINATOR, Role.INTEGRATION}),
    Action.CONSULTATION_READ: frozenset({Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION}),
    Action.CONSULTATION_ANSWER: frozenset({Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION}),
    Action.FORUM_MANAGE: frozenset({Role.BBA, Role.COORDINATOR, Role.INTEGRATION}),
    Action.FORUM_READ: frozenset({Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION}),
    Action.OPERATE: frozenset({Role.ADMIN}),
    Action.RECEIVED_REPORTS_READ: frozenset({Role.BBA, Role.COORDINATOR, Role.PROFESSIONAL, Role.INTEGRATION}),
}
"""Actions on no child's record, and the roles that allow each."""


@dataclass(frozen=True)
class CaseFacts:
    """What the policy needs to know of a child's case."""

    case_id: str
    unit_id: str | None
    bba_user: str
    protected_identity: bool = False
    delegates: frozenset[str] = frozenset()
    """Users whose delegation of the case holds now."""


@dataclass(frozen=True)
class Facts:
    """What the policy needs to know of a record: its case, and the people it names."""

    case: CaseFacts | None = None
    record_id: str | None = None
    participants: frozenset[str] = field(default_factory=frozenset)
    coordinator: tuple[str, str] | None = None
    """The samordningsperson as (organisation, user): one of another organisation is no local user."""
    raiser: str | None = None
    reporter: str | None = None
    """Who filed an orosanmälan (a user of this organisation)."""
    received_here: bool = False
    """The record is an invitation another organisation sent here (its receivers relate to it)."""


@dataclass(frozen=True)
class Access:
    """An allowed access: who, to what, and on which basis (the audit record names it)."""

    principal: Principal
    action: Action
    facts: Facts = Facts()
    basis: str = ""

    @property
    def case_id(self) -> str | None:
        """The case accessed, if any."""
        return self.facts.case.case_id if self.facts.case else None

    @property
    def protected(self) -> bool:
        """Whether the child has protected identity (outputs narrow, the audit record says so)."""
        return self.facts.case.protected_identity if self.facts.case else False


def relations(principal: Principal, facts: Facts) -> frozenset[Relation]:
    """Every relation the caller holds to the record."""
    held: set[Relation] = set()
    person = not principal.client and principal.holds(*PERSON_ROLES)
    case = facts.case
    if case is not None:
        if principal.holds(Role.BBA) and not principal.client and (
                case.bba_user == principal.user or (case.unit_id is not None and case.unit_id in principal.units)):
            held.add(Relation.BBA_OF_UNIT)
        if person and principal.user in case.delegates:
            held.add(Relation.DELEGATE)
        if principal.holds(Role.INTEGRATION) and case.unit_id in principal.units:
            held.add(Relation.INTEGRATION_UNIT)
    if person and principal.user in facts.participants:
        held.add(Relation.PARTICIPANT)
    if person and facts.coordinator == (principal.org, principal.user):
        held.add(Relation.COORDINATOR)
    if not principal.client and facts.raiser is not None and principal.user == facts.raiser:
        held.add(Relation.RAISER)
    if not principal.client and facts.reporter is not None and principal.user == facts.reporter:
        held.add(Relation.REPORTER)
    if facts.received_here and principal.holds(Role.COORDINATOR, Role.INTEGRATION):
        held.add(Relation.RECEIVER)
    return frozenset(held)


def decide(principal: Principal, action: Action, facts: Facts | None = None) -> Access | None:
    """The access if ``action`` is allowed, else None."""
    if action in ROLE_RULES:
        allowed_roles = ROLE_RULES[action]
        if not principal.holds(*allowed_roles):
            return None
        return Access(principal, action, facts or Facts(), basis="role:" + next(
            role.value for role in Role if role in principal.roles and role in allowed_roles))
    held = relations(principal, facts or Facts()) & RECORD_RULES[action]
    if not held:
        return None
    # Name the strongest basis: the order of Relation is the order of responsibility.
    return Access(principal, action, facts or Facts(), basis=next(r.value for r in Relation if r in held))


def check(principal: Principal, action: Action, facts: Facts | None = None) -> Access:
    """The access, or a 403 that the audit trail records (no relation to the record, or no such role)."""
    access = decide(principal, action, facts)
    if access is None:
        case_id = facts.case.case_id if facts and facts.case else None
        reason = "role" if action in ROLE_RULES else "no-relation"
        detail = ("your role may not do this" if reason == "role"
                  else "this record is outside your need to know")
        raise AccessRefused(status.HTTP_403_FORBIDDEN, detail, reason=reason, principal=principal,
                            action=action.value, case_id=case_id)
    return access


def check_unit_scope(principal: Principal, unit_id: str) -> None:
    """An integration acts only for its own unit(s): 403 (audited) for any other."""
    if principal.holds(Role.INTEGRATION) and unit_id not in principal.units:
        raise AccessRefused(status.HTTP_403_FORBIDDEN, "this integration is not scoped to that unit",
                            reason="unit-scope", principal=principal, action=Action.CONCERN_RAISE.value)


def check_desk(principal: Principal, desk_unit: str, *, staff: frozenset[str]) -> None:
    """Received orosanmälningar are for social services' intake desk only: 403 (audited) for anyone else.

    A person must be one of the desk's ``staff`` (its BBA and deputies) or hold the desk unit among
    their units; an integration must be scoped to the desk unit.
    """
    at_desk = desk_unit in principal.units
    if not principal.client and principal.user in staff:
        at_desk = True
    if not at_desk:
        raise AccessRefused(status.HTTP_403_FORBIDDEN, "received reports are for the intake desk only",
                            reason="desk-scope", principal=principal, action=Action.RECEIVED_REPORTS_READ.value)


def audit_access(session: Session, access: Access, action: str, *, purpose: str | None = None,
                 record_id: str | None = None) -> None:
    """Record an allowed access with its basis and the child's marking, in the access's transaction."""
    case = access.facts.case
    audit(session, access.principal, action, case_id=case.case_id if case else None, purpose=purpose,
          record_id=record_id or access.facts.record_id, unit_id=case.unit_id if case else None,
          basis=access.basis, protected=access.protected)


LISTED = "visible-cases"
"""The basis of a list's records: the query itself admitted only cases ``visible_cases`` allows."""


def audit_listed(session: Session, principal: Principal, action: str, cases: list[CaseRecord], *,
                 purpose: str | None = None) -> None:
    """Record a list access: one record per case shown (the log review asks per child), one if none was."""
    for case in {case.case_id: case for case in cases}.values():
        audit(session, principal, action, case_id=case.case_id, purpose=purpose, unit_id=case.unit_id,
              basis=LISTED, protected=case.protected_identity)
    if not cases:
        audit(session, principal, action, purpose=purpose, basis=LISTED)


def case_facts(session: Session, case: CaseRecord) -> CaseFacts:
    """The policy's view of a case, with the delegations that hold now."""
    return CaseFacts(case_id=case.case_id, unit_id=case.unit_id, bba_user=case.bba_user,
                     protected_identity=case.protected_identity, delegates=active_delegates(session, case.case_id))


def facts_of_case(session: Session, case_id: str) -> Facts:
    """The policy's view of the case named in a path (404 if this service does not know it)."""
    return Facts(case=case_facts(session, get_case(session, case_id)), record_id=case_id)


def visible_cases(principal: Principal, action: Action = Action.CASE_READ) -> ColumnElement[bool]:
    """The rule for ``action`` as a condition on ``case_record``, to narrow a list in its query.

    Only case relations can be written this way; relations to one record (participant,
    coordinator, raiser) are added by the list that knows that record.
    """
    allowed = RECORD_RULES[action]
    clauses: list[ColumnElement[bool]] = []
    if Relation.BBA_OF_UNIT in allowed and principal.holds(Role.BBA) and not principal.client:
        clauses.append(col(CaseRecord.bba_user) == principal.user)
        if principal.units:
            clauses.append(col(CaseRecord.unit_id).in_(sorted(principal.units)))
    if Relation.INTEGRATION_UNIT in allowed and principal.holds(Role.INTEGRATION) and principal.units:
        clauses.append(col(CaseRecord.unit_id).in_(sorted(principal.units)))
    if Relation.DELEGATE in allowed and not principal.client and principal.holds(*PERSON_ROLES):
        clauses.append(col(CaseRecord.case_id).in_(select(col(CaseDelegation.case_id)).where(
            col(CaseDelegation.delegate_user) == principal.user, delegation_holds(utcnow()))))
    return or_(*clauses) if clauses else false()


# --- FastAPI dependencies: a route states its rule in its signature ---------------------------------

CurrentPrincipal = Annotated[Principal, require()]
"""Any signed-in caller of this organisation (the rule is then checked on the record)."""


def allowed(action: Action) -> Any:
    """A dependency for an action on no child's record: the caller's role must allow it (403 otherwise)."""
    roles = tuple(sorted(ROLE_RULES[action]))

    async def dependency(principal: Principal = require(*roles)) -> Access:
        return check(principal, action)

    return Depends(dependency)


Resolver = Callable[[Session, str], Facts]


RECORD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
"""What a record's id (a server-made UUID, or a case id) looks like in a path."""
RECORD_ID_MAX_LENGTH = 64
RecordId = Annotated[str, Path(min_length=1, max_length=RECORD_ID_MAX_LENGTH, pattern=RECORD_ID_PATTERN,
                               description="The record's id.")]
"""A path parameter naming a record that a route reads itself (not through ``on_record``)."""


def on_record(action: Action, resolve: Resolver, *, param: str) -> Any:
    """A dependency for an action on the record named by path parameter ``param``.

    ``resolve`` loads the record's facts (404 if there is none); the caller needs a relation the
    rule allows (403, audited, otherwise).
    """

    # Declared (not read from request.path_params) so the OpenAPI names the parameter and states what an id
    # looks like, and a malformed one is a 422 before any lookup.
    async def dependency(request: Request, principal: Principal = require(),
                         record_id: str = Path(alias=param, min_length=1, max_length=RECORD_ID_MAX_LENGTH,
                                               pattern=RECORD_ID_PATTERN, description=f"The {param[:-3]}'s id.")
                         ) -> Access:
        facts = await run_query(request.app.state.infra.engine, lambda session: resolve(session, record_id))
        return check(principal, action, facts)

    return Depends(dependency)
