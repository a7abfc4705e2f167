"""Need-to-know on meetings, through HTTP: a relation to the child's case (or to the meeting), never a role alone.

The case is seeded in meetings and in the consent service beside it, as intake's ``CaseRecorded``
would record it: case-1 is Testbarn Testsson's, at norrskolan, with bba.norrskolan as its BBA.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.testing import bearer, count_rows, engine_of
from tillsammans_consent.models import DisclosureDecision
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import Invitation, Meeting

BBA = bearer("school", "bba", "bba.norrskolan")
# The BBA of another unit of the same organisation: the same role, no relation to this child.
OTHER_BBA = bearer("school", "bba", "bba.sodraskolan")
AUDITOR = bearer("school", "auditor", "granskare.ann")
Factory = Callable[..., Any]


@pytest.fixture
def client(tmp_path: Path, nats_url: str, with_consent: Factory) -> Any:
    with (TestClient(create_app(MeetingsSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data"))) as c,
          with_consent(c)):
        yield c


def _consent(client: TestClient) -> TestClient:
    consent: TestClient = client.app.state.test_consent  # type: ignore[attr-defined]
    return consent


def _decisions(client: TestClient) -> int:
    """Disclosure decisions the consent service beside meetings has recorded (each question it was asked)."""
    return count_rows(_consent(client), DisclosureDecision)


def _nothing_written(client: TestClient) -> None:
    assert count_rows(client, Meeting) == 0
    assert count_rows(client, Invitation) == 0
    assert count_rows(client, OutboxMessage) == 0


def _refusals(client: TestClient, user: str) -> list[tuple[str | None, str | None, str | None]]:
    """(outcome, reason, case id) of the audit records of ``user``'s refused accesses."""
    with Session(engine_of(client)) as session:
        rows = session.exec(select(AuditRecord.outcome, AuditRecord.reason, AuditRecord.case_id).where(
            col(AuditRecord.user) == user, col(AuditRecord.outcome) != "ok")).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def _meeting(client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> dict[str, Any]:
    seed(client)
    grant(client, receiving=["region"], share=False)
    called = client.post("/meetings", json=meeting_body("region"), headers=BBA)
    assert called.status_code == 201, called.text
    return called.json()  # type: ignore[no-any-return]


def test_another_units_bba_neither_reads_nor_runs_the_meeting(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    meeting_id = _meeting(client, seed, grant, meeting_body)["id"]
    read = client.get(f"/meetings/{meeting_id}", headers=OTHER_BBA)
    assert read.status_code == 403, read.text
    assert "20130412" not in read.text and "Testbarn" not in read.text
    appoint = {"child_not_asked_reason": "För ung att fråga.",
               "appointed": {"org": "school", "user": "bba.sodraskolan"}}
    refused = client.put(f"/meetings/{meeting_id}/coordinator", json=appoint, headers=OTHER_BBA)
    assert refused.status_code == 403, refused.text
    # Nothing changed, and both refusals are in the audit trail, naming the case.
    shown = client.get(f"/meetings/{meeting_id}", headers=BBA)
    assert shown.status_code == 200 and shown.json()["coordinator_user"] is None
    assert _refusals(client, "bba.sodraskolan") == [("denied", "no-relation", "case-1")] * 2
    # The case's own BBA may do what the other was refused.
    assert client.put(f"/meetings/{meeting_id}/coordinator", json={
        **appoint, "appointed": {"org": "school", "user": "samordnare.lo"}}, headers=BBA).status_code == 200


def test_an_auditor_reads_no_meeting(client: TestClient, seed: Factory, grant: Factory,
                                     meeting_body: Factory) -> None:
    meeting_id = _meeting(client, seed, grant, meeting_body)["id"]
    refused = client.get(f"/meetings/{meeting_id}", headers=AUDITOR)
    assert refused.status_code == 403, refused.text
    assert "20130412" not in refused.text and "Testbarn" not in refused.text
    assert _refusals(client, "granskare.ann") == [("denied", "no-relation", "case-1")]


def test_the_appointed_coordinator_reads_and_books_the_follow_up(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    meeting_id = _meeting(client, seed, grant, meeting_body)["id"]
    coordinator = bearer("school", "coordinator", "samordnare.lo")
    follow_up = {"follow_up_at": (datetime.now(UTC) + timedelta(days=40)).isoformat()}
    # Before being appointed, holding the role is not enough.
    assert client.get(f"/meetings/{meeting_id}", headers=coordinator).status_code == 403
    assert client.post(f"/meetings/{meeting_id}/follow-up", json=follow_up, headers=coordinator).status_code == 403

    appointed = client.put(f"/meetings/{meeting_id}/coordinator", headers=BBA, json={
        "child_not_asked_reason": "För ung att fråga.", "appointed": {"org": "school", "user": "samordnare.lo"}})
    assert appointed.status_code == 200, appointed.text
    read = client.get(f"/meetings/{meeting_id}", headers=coordinator)
    assert read.status_code == 200, read.text
    assert read.json()["coordinator_user"] == "samordnare.lo"
    booked = client.post(f"/meetings/{meeting_id}/follow-up", json=follow_up, headers=coordinator)
    assert booked.status_code == 200, booked.text
    assert booked.json()["status"] == "follow_up_booked"
    # Another coordinator of the same organisation is still not the samordningsperson of this meeting.
    other = bearer("school", "coordinator", "samordnare.per")
    assert client.get(f"/meetings/{meeting_id}", headers=other).status_code == 403
    assert client.post(f"/meetings/{meeting_id}/follow-up", json=follow_up, headers=other).status_code == 403
    with Session(engine_of(client)) as session:
        accesses = session.exec(select(AuditRecord.action, AuditRecord.basis).where(
            col(AuditRecord.user) == "samordnare.lo", col(AuditRecord.outcome) == "ok")).all()
    assert ("meeting.read", "coordinator") in accesses and ("meeting.follow_up.book", "coordinator") in accesses


def test_calling_a_meeting_in_a_case_without_a_relation_is_refused_before_consent_is_asked(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client)
    grant(client, receiving=["region"], share=False)  # a consent that would cover the invitation
    for headers, user in ((OTHER_BBA, "bba.sodraskolan"), (bearer("school", "professional", "mentor.anna"),
                                                            "mentor.anna")):
        refused = client.post("/meetings", json=meeting_body("region"), headers=headers)
        assert refused.status_code == 403, refused.text
        assert not refused.json()["type"].endswith("/consent-required")
        assert "20130412" not in refused.text and "Testbarn" not in refused.text
        assert _refusals(client, user) == [("denied", "no-relation", "case-1")]
    assert _decisions(client) == 0  # the consent service was asked nothing
    _nothing_written(client)

    # The same call by the case's BBA goes through, and asks the consent service: the count above means it.
    called = client.post("/meetings", json=meeting_body("region"), headers=BBA)
    assert called.status_code == 201, called.text
    assert _decisions(client) >= 1


def test_a_meeting_in_a_case_this_organisation_does_not_know_is_422(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client)
    grant(client, receiving=["region"], share=False)
    unknown = client.post("/meetings", json=meeting_body("region", case_id="case-nobody-opened"), headers=BBA)
    assert unknown.status_code == 422, unknown.text
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["errors"][0]["field"] == "case_id"
    assert "20130412" not in unknown.text
    assert _decisions(client) == 0
    _nothing_written(client)


def test_a_meeting_whose_child_is_not_the_cases_child_is_422(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client)
    grant(client, receiving=["region"], share=False)
    other_child = {"personnummer": "20100101-0006", "name": "Annat Barn"}
    mismatch = client.post("/meetings", json=meeting_body("region", child=other_child), headers=BBA)
    assert mismatch.status_code == 422, mismatch.text
    assert mismatch.json()["errors"][0]["field"] == "child.personnummer"
    assert "20100101" not in mismatch.text and "Annat" not in mismatch.text
    assert _decisions(client) == 0
    _nothing_written(client)
    # In the other child's own case the same child passes this check (and then needs a consent of its own).
    seed(client, case_id="case-2", personnummer=other_child["personnummer"])
    own_case = client.post("/meetings", json=meeting_body("region", case_id="case-2", child=other_child), headers=BBA)
    assert own_case.status_code == 403 and own_case.json()["type"].endswith("/consent-required"), own_case.text
    _nothing_written(client)


def test_a_case_marked_protected_makes_the_meeting_protected(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client, protected=True)  # unit_id is dropped for a protected case: the BBA's own relation remains
    grant(client, receiving=["region"], share=False)
    called = client.post("/meetings", json=meeting_body("region"), headers=BBA)  # the body does not say so
    assert called.status_code == 201, called.text
    assert called.json()["child"]["protected_identity"] is True
    assert [i["status"] for i in called.json()["invitations"]] == ["awaiting_review"]
    with Session(engine_of(client)) as session:
        queued = session.exec(select(OutboxMessage).where(col(OutboxMessage.stream) == "INBOX")).all()
    assert queued == []
