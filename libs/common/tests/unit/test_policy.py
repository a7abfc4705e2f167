"""The need-to-know table of decision 19, row by row, against policy.decide (the HTTP version is in the services)."""

from __future__ import annotations

import pytest

from tillsammans_common.auth import Principal, Role
from tillsammans_common.policy import (
    ROLE_RULES,
    Action,
    CaseFacts,
    Facts,
    check,
    decide,
)

CASE = CaseFacts(case_id="case-1", unit_id="norrskolan", bba_user="bba.norrskolan", delegates=frozenset({"kurator"}))
PROTECTED = CaseFacts(case_id="case-2", unit_id=None, bba_user="bba.norrskolan", protected_identity=True)
MEETING = Facts(case=CASE, record_id="m-1", participants=frozenset({"kallare"}),
                coordinator=("school", "samordnare"), raiser="mentor")


def person(user: str, *roles: Role, units: tuple[str, ...] = ()) -> Principal:
    """A signed-in person of the school."""
    return Principal(org="school", user=user, roles=frozenset(roles), units=frozenset(units))


CALLERS = {
    "case's BBA": person("bba.norrskolan", Role.BBA),
    "BBA by unit claim (deputy)": person("ställföreträdare", Role.BBA, units=("norrskolan",)),
    "another unit's BBA": person("bba.solrosen", Role.BBA, units=("solrosen",)),
    "delegate": person("kurator", Role.PROFESSIONAL),
    "professional": person("lärare", Role.PROFESSIONAL),
    "caller of the meeting": person("kallare", Role.COORDINATOR),
    "coordinator of the meeting": person("samordnare", Role.COORDINATOR),
    "coordinator of another meeting": person("annan", Role.COORDINATOR),
    "raiser": person("mentor", Role.PROFESSIONAL),
    "integration of the unit": Principal(org="school", user="journal", roles=frozenset({Role.INTEGRATION}),
                                         units=frozenset({"norrskolan"}), client=True),
    "integration of another unit": Principal(org="school", user="journal2", roles=frozenset({Role.INTEGRATION}),
                                             units=frozenset({"solrosen"}), client=True),
    "auditor": person("granskare", Role.AUDITOR),
    "admin": person("operatör", Role.ADMIN),
    "auditor named as delegate": person("kurator", Role.AUDITOR),
}

# Expected basis per (caller, action) on MEETING; a missing entry means refused. Written out by
# hand from the decision's table, so a change of the code that the table does not make fails here.
EXPECTED: dict[str, dict[Action, str]] = {
    "case's BBA": {a: "bba-of-unit" for a in (Action.CASE_READ, Action.CASE_WORK, Action.CASE_DELEGATE,
                                               Action.CONCERN_STATUS, Action.MEETING_READ, Action.MEETING_RUN)},
    "BBA by unit claim (deputy)": {a: "bba-of-unit" for a in (
        Action.CASE_READ, Action.CASE_WORK, Action.CASE_DELEGATE, Action.CONCERN_STATUS, Action.MEETING_READ,
        Action.MEETING_RUN)},
    "another unit's BBA": {},
    "delegate": {a: "delegate" for a in (Action.CASE_READ, Action.CASE_WORK, Action.CONCERN_STATUS,
                                         Action.MEETING_READ, Action.MEETING_RUN)},
    "professional": {},
    "caller of the meeting": {Action.MEETING_READ: "participant"},
    "coordinator of the meeting": {Action.MEETING_READ: "coordinator", Action.MEETING_RUN: "coordinator"},
    "coordinator of another meeting": {},
    "raiser": {Action.CONCERN_STATUS: "raiser"},
    "integration of the unit": {a: "integration-unit" for a in (
        Action.CASE_READ, Action.CASE_WORK, Action.CONCERN_STATUS, Action.MEETING_READ, Action.MEETING_RUN)},
    "integration of another unit": {},
    "auditor": {},
    "admin": {},
    "auditor named as delegate": {},
}
RECORD_ACTIONS = [Action.CASE_READ, Action.CASE_WORK, Action.CASE_DELEGATE, Action.CONCERN_STATUS,
                  Action.MEETING_READ, Action.MEETING_RUN]


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("action", RECORD_ACTIONS)
def test_record_rules(caller: str, action: Action) -> None:
    access = decide(CALLERS[caller], action, MEETING)
    expected = EXPECTED[caller].get(action)
    assert (access.basis if access else None) == expected


def test_a_coordinator_of_another_organisation_with_the_same_user_id_is_not_ours() -> None:
    elsewhere = Facts(case=CASE, record_id="m-1", coordinator=("region", "samordnare"))
    assert decide(CALLERS["coordinator of the meeting"], Action.MEETING_RUN, elsewhere) is None


def test_a_protected_child_has_no_unit_so_only_the_named_bba_and_delegates_relate() -> None:
    facts = Facts(case=PROTECTED)
    assert decide(CALLERS["case's BBA"], Action.CASE_READ, facts) is not None
    assert decide(CALLERS["BBA by unit claim (deputy)"], Action.CASE_READ, facts) is None
    assert decide(CALLERS["integration of the unit"], Action.CASE_READ, facts) is None
    access = decide(CALLERS["case's BBA"], Action.CASE_READ, facts)
    assert access is not None and access.protected


ROLE_TABLE: dict[Action, set[Role]] = {
    Action.CONCERN_RAISE: {Role.PROFESSIONAL, Role.BBA, Role.COORDINATOR, Role.INTEGRATION},
    Action.INBOX_READ: {Role.BBA},
    Action.DIRECTORY_READ: set(Role),
    Action.DIRECTORY_WRITE: {Role.ADMIN},
    Action.WHEEL_READ: set(Role),
    Action.AUDIT_READ: {Role.AUDITOR},
    Action.DISCLOSURE_REVIEW: {Role.REVIEWER},
    Action.DISCLOSURE_ASK: {Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION},
    Action.RECEIVED_INVITATIONS_READ: {Role.COORDINATOR, Role.INTEGRATION},
    Action.REPLICAS_READ: {Role.BBA, Role.COORDINATOR, Role.INTEGRATION},
    Action.CONSULTATION_ASK: {Role.BBA, Role.COORDINATOR, Role.INTEGRATION},
    Action.CONSULTATION_READ: {Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION},
    Action.CONSULTATION_ANSWER: {Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION},
    Action.FORUM_MANAGE: {Role.BBA, Role.COORDINATOR, Role.INTEGRATION},
    Action.FORUM_READ: {Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION},
    Action.OPERATE: {Role.ADMIN},
}


def test_every_action_has_exactly_one_rule() -> None:
    assert set(ROLE_TABLE) == set(ROLE_RULES)
    assert set(ROLE_TABLE) | set(RECORD_ACTIONS) == set(Action)


@pytest.mark.parametrize("action", sorted(ROLE_TABLE))
@pytest.mark.parametrize("role", sorted(Role))
def test_role_rules(action: Action, role: Role) -> None:
    access = decide(person("x", role), action)
    assert (access is not None) == (role in ROLE_TABLE[action])


def test_a_refusal_is_a_403_naming_the_case_and_a_fixed_reason() -> None:
    from tillsammans_common.auth import AccessRefused

    with pytest.raises(AccessRefused) as refused:
        check(CALLERS["another unit's BBA"], Action.CASE_READ, Facts(case=CASE))
    assert refused.value.status_code == 403
    assert (refused.value.reason, refused.value.case_id, refused.value.action) == ("no-relation", "case-1", "case.read")
