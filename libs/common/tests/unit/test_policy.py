"""The need-to-know table of decision 19, row by row, against policy.decide (the HTTP version is in the services)."""

from __future__ import annotations

import pytest

from tillsammans_common.auth import AccessRefused, Principal, Role
from tillsammans_common.policy import (
    ROLE_RULES,
    Action,
    CaseFacts,
    Facts,
    check,
    check_desk,
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
                                               Action.CASE_TRANSFER, Action.CONCERN_STATUS, Action.MEETING_READ,
                                               Action.MEETING_RUN, Action.REPORT_FILE, Action.REPORT_READ)},
    "BBA by unit claim (deputy)": {a: "bba-of-unit" for a in (
        Action.CASE_READ, Action.CASE_WORK, Action.CASE_DELEGATE, Action.CASE_TRANSFER, Action.CONCERN_STATUS,
        Action.MEETING_READ, Action.MEETING_RUN, Action.REPORT_FILE, Action.REPORT_READ)},
    "another unit's BBA": {},
    # A delegate may file an orosanmälan (the duty is everyone's) but not read the reports of others.
    "delegate": {a: "delegate" for a in (Action.CASE_READ, Action.CASE_WORK, Action.CONCERN_STATUS,
                                         Action.MEETING_READ, Action.MEETING_RUN, Action.REPORT_FILE)},
    "professional": {},
    "caller of the meeting": {Action.MEETING_READ: "participant"},
    "coordinator of the meeting": {Action.MEETING_READ: "coordinator", Action.MEETING_RUN: "coordinator"},
    "coordinator of another meeting": {},
    "raiser": {Action.CONCERN_STATUS: "raiser", Action.REPORT_FILE: "raiser"},
    "integration of the unit": {a: "integration-unit" for a in (
        Action.CASE_READ, Action.CASE_WORK, Action.CONCERN_STATUS, Action.MEETING_READ, Action.MEETING_RUN,
        Action.REPORT_FILE)},
    "integration of another unit": {},
    "auditor": {},
    "admin": {},
    "auditor named as delegate": {},
}
RECORD_ACTIONS = [Action.CASE_READ, Action.CASE_WORK, Action.CASE_DELEGATE, Action.CASE_TRANSFER,
                  Action.CONCERN_STATUS, Action.MEETING_READ, Action.MEETING_RUN, Action.REPORT_FILE,
                  Action.REPORT_READ]


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
    Action.INVITATION_ANSWER: {Role.COORDINATOR, Role.INTEGRATION},
    Action.RECEIVED_PLANS_READ: {Role.COORDINATOR, Role.INTEGRATION},
    Action.RECEIVED_PLAN_REPORT: {Role.COORDINATOR, Role.INTEGRATION},
    Action.REPLICAS_READ: {Role.BBA, Role.COORDINATOR, Role.INTEGRATION},
    Action.CONSULTATION_ASK: {Role.BBA, Role.COORDINATOR, Role.INTEGRATION},
    Action.CONSULTATION_READ: {Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION},
    Action.CONSULTATION_ANSWER: {Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION},
    Action.FORUM_MANAGE: {Role.BBA, Role.COORDINATOR, Role.INTEGRATION},
    Action.FORUM_READ: {Role.BBA, Role.PROFESSIONAL, Role.COORDINATOR, Role.INTEGRATION},
    Action.OPERATE: {Role.ADMIN},
    Action.RECEIVED_REPORTS_READ: {Role.BBA, Role.COORDINATOR, Role.PROFESSIONAL, Role.INTEGRATION},
}


# A received invitation (decision 25): no case here; its receivers and the people it names relate to it.
RECEIVED = Facts(record_id="i-1", participants=frozenset({"lakare.bup"}), received_here=True)
RECEIVED_CALLERS: dict[str, tuple[Principal, str | None]] = {
    "receiving coordinator": (person("samordnare.bvc", Role.COORDINATOR), "receiver"),
    "receiving integration": (Principal(org="school", user="journal", roles=frozenset({Role.INTEGRATION}),
                                        client=True), "receiver"),
    "named participant": (person("lakare.bup", Role.PROFESSIONAL), "participant"),
    "colleague not named": (person("annan.bup", Role.PROFESSIONAL), None),
    "BBA": (person("bba.bvc", Role.BBA), None),
    "auditor": (person("granskare", Role.AUDITOR), None),
    "admin": (person("operatör", Role.ADMIN), None),
    "participant's name on an integration": (Principal(org="school", user="lakare.bup",
                                                       roles=frozenset({Role.INTEGRATION}), client=True), "receiver"),
    "participant's name on an auditor": (person("lakare.bup", Role.AUDITOR), None),
}
RECEIVED_ACTIONS = [Action.RECEIVED_INVITATION_CALENDAR]


@pytest.mark.parametrize("caller", sorted(RECEIVED_CALLERS))
def test_received_invitation_rules(caller: str) -> None:
    principal, expected = RECEIVED_CALLERS[caller]
    access = decide(principal, Action.RECEIVED_INVITATION_CALENDAR, RECEIVED)
    assert (access.basis if access else None) == expected


def test_a_meeting_of_ours_is_no_received_invitation() -> None:
    # The receiver relation needs a received invitation: a coordinator gets nothing from our own meeting by it.
    assert decide(person("annan", Role.COORDINATOR), Action.RECEIVED_INVITATION_CALENDAR, MEETING) is None


def test_every_action_has_exactly_one_rule() -> None:
    assert set(ROLE_TABLE) == set(ROLE_RULES)
    assert set(ROLE_TABLE) | set(RECORD_ACTIONS) | set(RECEIVED_ACTIONS) == set(Action)


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


def test_a_report_is_read_by_its_reporter_and_the_cases_bba_only() -> None:
    report = Facts(case=CASE, record_id="r-1", reporter="mentor")
    assert (access := decide(CALLERS["raiser"], Action.REPORT_READ, report)) and access.basis == "reporter"
    assert decide(CALLERS["case's BBA"], Action.REPORT_READ, report) is not None
    for other in ("delegate", "professional", "integration of the unit", "auditor", "another unit's BBA"):
        assert decide(CALLERS[other], Action.REPORT_READ, report) is None
    # A client with the reporter's user id is not the reporter.
    client = Principal(org="school", user="mentor", roles=frozenset({Role.INTEGRATION}), client=True)
    assert decide(client, Action.REPORT_READ, report) is None


@pytest.mark.parametrize(("caller", "at_desk"), [
    (Principal(org="social", user="mottagning.ifo", roles=frozenset({Role.BBA})), True),  # the desk's BBA
    (Principal(org="social", user="handläggare", roles=frozenset({Role.PROFESSIONAL}),
               units=frozenset({"mottagning"})), True),  # works at the desk
    (Principal(org="social", user="journal", roles=frozenset({Role.INTEGRATION}), units=frozenset({"mottagning"}),
               client=True), True),
    (Principal(org="social", user="bba.ifo", roles=frozenset({Role.BBA}), units=frozenset({"ifo-barn"})), False),
    (Principal(org="social", user="mottagning.ifo", roles=frozenset({Role.INTEGRATION}), client=True), False),
])
def test_received_reports_are_for_the_intake_desk_only(caller: Principal, at_desk: bool) -> None:
    try:
        check_desk(caller, "mottagning", staff=frozenset({"mottagning.ifo"}))
    except AccessRefused as refused:
        assert not at_desk and refused.status_code == 403 and refused.reason == "desk-scope"
    else:
        assert at_desk
