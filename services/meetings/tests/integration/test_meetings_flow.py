"""Meetings of one organisation against a real nats-server and a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tillsammans_common.cases import CaseRecord
from tillsammans_common.events import Envelope
from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.testing import bearer, count_rows, engine_of, wait_for
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import ChildRecord, Consultation, DisclosureReview, Invitation, Meeting, PlanItem

BBA = bearer("school", "bba", "bba.norrskolan")
Factory = Callable[..., Any]


def _outbox(client: TestClient) -> list[OutboxMessage]:
    with Session(engine_of(client)) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.seq)).all())  # type: ignore[arg-type]


def _events(client: TestClient, event_type: str) -> list[dict[str, Any]]:
    return [Envelope.from_bytes(row.body).data for row in _outbox(client)
            if row.nats_subject == f"school.{event_type}"]


@pytest.fixture
def client(tmp_path: Path, nats_url: str, with_consent: Factory) -> Any:
    with (TestClient(create_app(MeetingsSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data"))) as c,
          with_consent(c)):
        yield c


def _called(client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory, *orgs: str) -> dict[str, Any]:
    seed(client)  # case-1, the child's case at norrskolan, bba.norrskolan its BBA
    grant(client, receiving=list(orgs), share=False)
    response = client.post("/meetings", json=meeting_body(*orgs), headers=BBA)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_meeting_under_consent_then_coordinator_plan_and_follow_up(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client)
    consent = grant(client, receiving=["region"], share=False)
    response = client.post("/meetings", json=meeting_body("region"), headers=BBA)
    assert response.status_code == 201, response.text
    meeting = response.json()
    assert meeting["status"] == "called" and meeting["called_by"] == "bba.norrskolan"
    assert meeting["child"]["personnummer"] == "201304121237"
    assert [(i["to_org"], i["consent_id"], i["status"]) for i in meeting["invitations"]] == [
        ("region", consent.consent_id, "sent")]
    # The invitation is queued for region's inbox under the consent; the meeting event stays inside.
    subjects = [row.nats_subject for row in _outbox(client)]
    assert subjects == ["inbox.region.school.meetings.invitation.sent.v1", "school.meetings.meeting.called.v1"]
    invitation = Envelope.from_bytes(_outbox(client)[0].body)
    # Its subject is the meeting's server-generated id; the case id chosen by the caller stays here.
    assert invitation.consentid == consent.consent_id and invitation.subject == meeting["id"]
    assert b"case-1" not in _outbox(client)[0].body and "case_id" not in invitation.data
    called = _events(client, "meetings.meeting.called.v1")[0]
    assert called["invited_orgs"] == ["region"] and "child" not in called
    assert "201304121237" not in json.dumps(called)

    meeting_id = meeting["id"]
    early = client.post(f"/meetings/{meeting_id}/follow-up", headers=BBA,
                        json={"follow_up_at": (datetime.now(UTC) + timedelta(days=40)).isoformat()})
    assert early.status_code == 409
    assert "coordinator" in early.json()["detail"]

    wish = {"org": "region", "person": "kurator.lo"}
    appointed = client.put(f"/meetings/{meeting_id}/coordinator", headers=BBA,
                           json={"child_wish": wish, "appointed": {"org": "region", "user": "kurator.lo"}})
    assert appointed.status_code == 200, appointed.text
    assert appointed.json()["coordinator_org"] == "region"
    assert appointed.json()["coordinator_user"] == "kurator.lo"
    assert _events(client, "meetings.coordinator.appointed.v1") == [
        {"meeting_id": meeting_id, "case_id": "case-1", "coordinator_org": "region", "matches_child_wish": True}]

    item = client.post(f"/meetings/{meeting_id}/plan-items", headers=BBA,
                       json={"action": "Närvaroplan", "responsible_org": "school", "responsible_role": "mentor",
                             "due": "2030-01-31"})
    assert item.status_code == 201, item.text
    assert item.json()["responsible_org"] == "school" and item.json()["due"] == "2030-01-31"
    not_invited = client.post(f"/meetings/{meeting_id}/plan-items", headers=BBA,
                              json={"action": "Samtal", "responsible_org": "social"})
    assert not_invited.status_code == 422
    assert not_invited.json()["errors"][0]["field"] == "responsible_org"
    assert len(_events(client, "meetings.plan_item.added.v1")) == 1

    before = client.post(f"/meetings/{meeting_id}/follow-up", headers=BBA,
                         json={"follow_up_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
    assert before.status_code == 422
    assert before.json()["errors"][0]["field"] == "follow_up_at"
    follow_up_at = datetime.now(UTC) + timedelta(days=49)
    booked = client.post(f"/meetings/{meeting_id}/follow-up", headers=BBA,
                         json={"follow_up_at": follow_up_at.isoformat()})
    assert booked.status_code == 200, booked.text
    assert booked.json()["status"] == "follow_up_booked"
    assert datetime.fromisoformat(booked.json()["follow_up_at"]) == follow_up_at
    assert len(_events(client, "meetings.follow_up.booked.v1")) == 1

    # The case's BBA reads the plan; a colleague of the school with no relation to the case does not.
    assert client.get(f"/meetings/{meeting_id}",
                      headers=bearer("school", "professional", "mentor.anna")).status_code == 403
    read = client.get(f"/meetings/{meeting_id}", headers=BBA)
    assert read.status_code == 200
    assert [p["action"] for p in read.json()["plan_items"]] == ["Närvaroplan"]
    assert read.json()["follow_up_at"] == booked.json()["follow_up_at"]


def test_coordinator_rules_child_asked_first_and_special_reason(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    meeting_id = _called(client, seed, grant, meeting_body, "region")["id"]
    url = f"/meetings/{meeting_id}/coordinator"
    wish = {"org": "region", "person": "kurator.lo"}

    not_asked = client.put(url, headers=BBA, json={"child_wish": None, "appointed": {"org": "school", "user": "a"}})
    assert not_asked.status_code == 422
    assert not_asked.json()["errors"][0]["field"] == "child_not_asked_reason"

    other = {"org": "school", "user": "specialpedagog.eva"}
    no_reason = client.put(url, headers=BBA, json={"child_wish": wish, "appointed": other})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "special_reason"
    blank = client.put(url, headers=BBA, json={"child_wish": wish, "appointed": other, "special_reason": "  "})
    assert blank.status_code == 422
    assert blank.json()["errors"][0]["field"] == "special_reason"
    same_org_other_person = client.put(url, headers=BBA, json={
        "child_wish": wish, "appointed": {"org": "region", "user": "psykolog.bo"}})
    assert same_org_other_person.status_code == 422

    not_invited = client.put(url, headers=BBA, json={
        "child_wish": {"org": "social", "person": "kim"}, "appointed": {"org": "social", "user": "kim"}})
    assert not_invited.status_code == 422
    assert not_invited.json()["errors"][0]["field"] == "appointed.org"

    with_reason = client.put(url, headers=BBA, json={
        "child_wish": wish, "appointed": other, "special_reason": "Kuratorn är föräldraledig under hösten."})
    assert with_reason.status_code == 200, with_reason.text
    assert with_reason.json()["special_reason"] == "Kuratorn är föräldraledig under hösten."
    assert with_reason.json()["child_wish_person"] == "kurator.lo"

    reason = "Barnet ville inte välja."
    without_wish = client.put(url, headers=BBA, json={"child_not_asked_reason": reason, "appointed": other})
    assert without_wish.status_code == 200, without_wish.text
    assert without_wish.json()["child_wish_org"] is None
    assert without_wish.json()["child_not_asked_reason"] == reason
    events = _events(client, "meetings.coordinator.appointed.v1")
    assert [e["matches_child_wish"] for e in events] == [False, False]

    missing = client.put("/meetings/nope/coordinator", headers=BBA,
                         json={"child_wish": wish, "appointed": {"org": "region", "user": "kurator.lo"}})
    assert missing.status_code == 404


def test_invited_organisations_and_fields_are_validated_and_nothing_is_written(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client)
    grant(client, receiving=["region"], share=False)
    cases = [
        (meeting_body("school"), "invited_orgs"),
        (meeting_body("moon"), "invited_orgs"),
        (meeting_body(), "invited_orgs"),
        (meeting_body("region", concern_summary="x" * 2001), "concern_summary"),
        (meeting_body("region", flagged_areas=["moon"]), "flagged_areas"),
        (meeting_body("region", scheduled_at="2030-01-01T10:00:00"), "scheduled_at"),
        (meeting_body("region", scheduled_at="9999-12-31T23:59:59-05:00"), "scheduled_at"),  # overflows UTC
        (meeting_body("region", scheduled_at="0001-01-01T00:30:00+01:00"), "scheduled_at"),
        (meeting_body("region", kind="party"), "kind"),
        (meeting_body("region", child={**meeting_body()["child"], "personnummer": "20130412-1234"}),
         "child.personnummer"),
    ]
    for body, field in cases:
        response = client.post("/meetings", json=body, headers=BBA)
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"].startswith(field), response.json()
        assert "20130412" not in response.text
    assert count_rows(client, Meeting) == 0
    assert count_rows(client, OutboxMessage) == 0


def test_without_consent_the_whole_call_is_refused_and_nothing_is_written(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client)
    grant(client, receiving=["region"], share=False)
    refused = client.post("/meetings", json=meeting_body("region", "social"), headers=BBA)
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["type"].endswith("/consent-required")
    assert problem["org"] == "social"
    assert "no consent" in problem["detail"] and "social" in problem["detail"]
    assert "20130412" not in refused.text and "Testbarn" not in refused.text
    assert count_rows(client, Meeting) == 0
    assert count_rows(client, Invitation) == 0
    assert count_rows(client, OutboxMessage) == 0

    narrow = grant(client, receiving=["social"], categories=["identity"], share=False)
    still = client.post("/meetings", json=meeting_body("social"), headers=BBA)
    assert still.status_code == 403
    assert "does not cover concern, mapping_summary" in still.json()["detail"]
    assert narrow.consent_id not in still.text
    assert count_rows(client, Meeting) == 0


def _inbox_rows(client: TestClient) -> list[OutboxMessage]:
    return [row for row in _outbox(client) if row.stream == "INBOX"]


def test_protected_identity_waits_for_another_users_review_before_anything_is_queued(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client)
    grant(client, receiving=["region"], share=False)
    child = {**meeting_body()["child"], "protected_identity": True}
    self_declared = client.post("/meetings", headers=BBA, json=meeting_body(
        "region", child=child, manual_review={"reviewed_by": "registrator.per"}))
    assert self_declared.status_code == 422  # a review is an act of its own, never a field the caller fills in

    called = client.post("/meetings", json=meeting_body("region", child=child), headers=BBA)
    assert called.status_code == 201, called.text
    meeting = called.json()
    assert meeting["child"]["protected_identity"] is True and meeting["manually_reviewed_by"] is None
    assert [i["status"] for i in meeting["invitations"]] == ["awaiting_review"]
    assert _inbox_rows(client) == []

    url = f"/meetings/{meeting['id']}/disclosure-review"
    approve = {"decision": "approve"}
    assert client.post(url, json=approve, headers=bearer("school", "bba", "bba.annan")).status_code == 403
    own = client.post(url, json=approve, headers=bearer("school", "reviewer", "bba.norrskolan"))
    assert own.status_code == 403 and "four eyes" in own.json()["detail"]
    assert _inbox_rows(client) == []

    reviewed = client.post(url, json=approve, headers=bearer("school", "reviewer", "registrator.per"))
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["manually_reviewed_by"] == "registrator.per"
    assert [i["status"] for i in reviewed.json()["invitations"]] == ["sent"]
    [row] = _inbox_rows(client)
    sent = Envelope.from_bytes(row.body)
    assert sent.data["child"]["protected_identity"] is True and sent.consentid
    with Session(engine_of(client)) as session:
        review = session.exec(select(DisclosureReview)).one()
    assert (review.requested_by, review.reviewed_by, review.decision) == ("bba.norrskolan", "registrator.per",
                                                                          "approve")
    again = client.post(url, json=approve, headers=bearer("school", "reviewer", "registrator.per"))
    assert again.status_code == 409

    # The marking belongs to the child's record: a later call that leaves it out still waits for review.
    later = client.post("/meetings", json=meeting_body("region"), headers=BBA)
    assert later.status_code == 201
    assert later.json()["child"]["protected_identity"] is True
    assert [i["status"] for i in later.json()["invitations"]] == ["awaiting_review"]
    later_url = f"/meetings/{later.json()['id']}/disclosure-review"
    reviewer = bearer("school", "reviewer", "registrator.per")
    no_reason = client.post(later_url, json={"decision": "reject"}, headers=reviewer)
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "note"
    rejected = client.post(later_url, json={"decision": "reject", "note": "Vårdnadshavare oense."}, headers=reviewer)
    assert rejected.status_code == 200
    assert [i["status"] for i in rejected.json()["invitations"]] == ["review_rejected"]
    assert len(_inbox_rows(client)) == 1


def test_anonymous_consultation_carries_no_identity(client: TestClient) -> None:
    body = {"invited_orgs": ["region", "social"], "age_band": "10-12", "wheel_areas": ["trygghet", "hemmet"],
            "question": "Hur stöttar vi en elev med ökande frånvaro?"}
    response = client.post("/consultations", json=body, headers=BBA)
    assert response.status_code == 201, response.text
    consultation = response.json()
    assert consultation["invited_orgs"] == ["region", "social"] and consultation["age_band"] == "10-12"
    rows = _outbox(client)
    assert sorted(row.nats_subject for row in rows) == [
        "inbox.region.school.meetings.consultation.requested.v1",
        "inbox.social.school.meetings.consultation.requested.v1"]
    for row in rows:
        envelope = Envelope.from_bytes(row.body)
        # Its subject is the consultation, not a case: nothing links it to a child.
        assert envelope.subject == consultation["id"] and envelope.consentid is None
        assert set(envelope.data) == {"consultation_id", "age_band", "wheel_areas", "question", "proposed_at"}

    for bad, field in ((dict(body, question="Gäller 130412-1237, vad gör vi?"), "question"),
                       (dict(body, age_band="10-13"), "age_band"),
                       (dict(body, invited_orgs=["school"]), "invited_orgs"),
                       (dict(body, wheel_areas=["moon"]), "wheel_areas"),
                       (dict(body, question="x" * 1001), "question")):
        refused = client.post("/consultations", json=bad, headers=BBA)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == field
        assert "130412" not in refused.text
    assert count_rows(client, Consultation) == 1
    assert len(_outbox(client)) == 2


def test_the_anonymous_screen_reads_identity_in_any_written_form_and_the_childs_name(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    _called(client, seed, grant, meeting_body, "region")  # case-1 is Testbarn Testsson's
    body = {"invited_orgs": ["region"], "age_band": "10-12", "wheel_areas": ["trygghet"], "case_id": "case-1"}
    leaks = ["Gäller 2013 04 12 - 1237.", "Nummer ２０１３０４１２１２３７.", "Nr ٢٠١٣٠٤١٢-١٢٣٧",
             "13.04.12.12.37 gäller det", "Ring 070-123 45 67", "Mejla mamma.testsson(at)exempel.se",
             "Hur går det för TESTBARN?", "Frågan gäller T e s t s s o n"]
    outbox_before = len(_outbox(client))
    for question in leaks:
        refused = client.post("/consultations", json={**body, "question": question}, headers=BBA)
        assert refused.status_code == 422, question
        assert refused.json()["errors"][0]["field"] == "question"
        assert question not in refused.text and "1237" not in refused.text
        assert "testbarn" not in refused.text.lower() and "testsson" not in refused.text.lower()
    assert len(_outbox(client)) == outbox_before
    fine = client.post("/consultations", json={**body, "question": "Möte 2024-05-12 kl 10.30, 3 syskon i klass 7B."},
                       headers=BBA)
    assert fine.status_code == 201, fine.text
    sent = Envelope.from_bytes(_outbox(client)[-1].body)
    assert "case-1" not in str(sent.model_dump()) and fine.json()["case_id"] == "case-1"


def test_idempotency_key_returns_first_result_and_writes_once(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    seed(client)
    grant(client, receiving=["region"], share=False)
    headers = {**BBA, "Idempotency-Key": "meet-1"}
    body = meeting_body("region")
    first = client.post("/meetings", json=body, headers=headers)
    second = client.post("/meetings", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    other = client.post("/meetings", json={**body, "concern_summary": "annat"}, headers=headers)
    assert other.status_code == 409
    assert count_rows(client, Meeting) == 1
    assert count_rows(client, Invitation) == 1
    assert len(_outbox(client)) == 2

    item_headers = {**BBA, "Idempotency-Key": "item-1"}
    url = f"/meetings/{first.json()['id']}/plan-items"
    for _ in range(2):
        assert client.post(url, json={"action": "A", "responsible_org": "school"},
                           headers=item_headers).status_code == 201
    assert count_rows(client, PlanItem) == 1


def test_authentication_and_authorisation(client: TestClient, seed: Factory, grant: Factory,
                                          meeting_body: Factory) -> None:
    meeting_id = _called(client, seed, grant, meeting_body, "region")["id"]
    body = meeting_body("region")
    assert client.post("/meetings", json=body).status_code == 401
    garbage = client.post("/meetings", json=body, headers={"Authorization": "Bearer nonsense"})
    assert garbage.status_code == 401
    assert garbage.headers["content-type"] == "application/problem+json"
    assert client.post("/meetings", json=body, headers=bearer("region", "bba")).status_code == 403
    assert client.post("/meetings", json=body, headers=bearer("school", "professional")).status_code == 403
    assert client.post("/consultations", json={}, headers=bearer("school", "auditor")).status_code == 403
    assert client.get(f"/meetings/{meeting_id}", headers=bearer("school", "auditor")).status_code == 403
    assert client.get(f"/meetings/{meeting_id}", headers=bearer("region", "bba")).status_code == 403
    coordinator = {"child_wish": None, "child_not_asked_reason": "r", "appointed": {"org": "school", "user": "u"}}
    assert client.put(f"/meetings/{meeting_id}/coordinator", json=coordinator,
                      headers=bearer("school", "integration")).status_code == 403
    # The coordinator role alone runs no meeting: only the samordningsperson appointed to this one does.
    assert client.put(f"/meetings/{meeting_id}/coordinator", json=coordinator,
                      headers=bearer("school", "coordinator")).status_code == 403
    assert client.put(f"/meetings/{meeting_id}/coordinator", json=coordinator, headers=BBA).status_code == 200
    assert client.put(f"/meetings/{meeting_id}/coordinator", json=coordinator,
                      headers=bearer("school", "coordinator", "u")).status_code == 200
    assert client.get("/received-invitations", headers=bearer("school", "professional")).status_code == 403
    # Received invitations name a child with no case here yet: for coordinators and integrations, not the BBA.
    assert client.get("/received-invitations", headers=BBA).status_code == 403
    assert client.get("/received-invitations", headers=bearer("school", "coordinator")).status_code == 200
    assert client.get("/consultations/received", headers=bearer("school", "professional")).status_code == 200
    assert client.get("/meetings/nope", headers=BBA).status_code == 404


def test_reads_and_writes_are_audited(client: TestClient, seed: Factory, grant: Factory,
                                     meeting_body: Factory) -> None:
    meeting_id = _called(client, seed, grant, meeting_body, "region")["id"]
    appointed = {"child_not_asked_reason": "För ung att fråga.",
                 "appointed": {"org": "school", "user": "samordnare.lo"}}
    assert client.put(f"/meetings/{meeting_id}/coordinator", json=appointed, headers=BBA).status_code == 200
    assert client.get(f"/meetings/{meeting_id}", headers=bearer("school", "coordinator", "samordnare.lo")).is_success
    assert client.post(f"/meetings/{meeting_id}/plan-items", headers=BBA,
                       json={"action": "A", "responsible_org": "region"}).status_code == 201
    assert client.post("/consultations", headers=BBA, json={
        "invited_orgs": ["social"], "age_band": "6-9", "wheel_areas": ["halsa"], "question": "Hur?"}).is_success
    with Session(engine_of(client)) as session:
        records = session.exec(select(AuditRecord.action, AuditRecord.user, AuditRecord.case_id,
                                      AuditRecord.basis)).all()
    # Each access names the relation that allowed it.
    assert ("meeting.call", "bba.norrskolan", "case-1", "bba-of-unit") in records
    assert ("meeting.coordinator.appoint", "bba.norrskolan", "case-1", "bba-of-unit") in records
    assert ("meeting.read", "samordnare.lo", "case-1", "coordinator") in records
    assert ("meeting.plan_item.add", "bba.norrskolan", "case-1", "bba-of-unit") in records
    assert ("consultation.request", "bba.norrskolan", None) in [record[:3] for record in records]


def test_a_marking_made_where_the_child_enters_reaches_meetings_and_cannot_be_dropped(
        tmp_path: Path, nats_url: str, client: TestClient, grant: Factory, meeting_body: Factory) -> None:
    from tillsammans_intake.config import IntakeSettings
    from tillsammans_intake.main import create_app as create_intake_app

    consent_client: TestClient = client.app.state.test_consent  # type: ignore[attr-defined]
    with TestClient(create_intake_app(IntakeSettings(org="school", nats_url=nats_url,
                                                     data_dir=tmp_path / "data"))) as intake:
        child = {**meeting_body()["child"], "protected_identity": True}
        raised = intake.post("/concerns", headers=bearer("school", "professional", "mentor.anna"), json={
            "unit_id": "norrskolan", "child": child, "wheel_areas": ["trygghet"], "description": "Oro."})
        assert raised.status_code == 201, raised.text
        # A later concern that leaves the marking out is still protected: it belongs to the child's record.
        unmarked = intake.post("/concerns", headers=bearer("school", "professional", "mentor.anna"), json={
            "unit_id": "norrskolan", "child": meeting_body()["child"], "wheel_areas": ["halsa"], "description": "Oro."})
        assert unmarked.json()["protected_identity"] is True
        # Intake opened one case for the child and announces it: meetings and consent learn it, no seeding.
        case_id = raised.json()["case_id"]
        assert unmarked.json()["case_id"] == case_id

        def record_at_meetings() -> bool:
            with Session(engine_of(client)) as session:
                return bool(session.exec(select(ChildRecord.protected_identity)).first())

        def case_at(service: TestClient) -> CaseRecord | None:
            with Session(engine_of(service)) as session:
                return session.get(CaseRecord, case_id)

        wait_for(record_at_meetings, message="intake's marking at meetings")
        case = wait_for(lambda: case_at(client), message="the child's case at meetings")
        wait_for(lambda: case_at(consent_client), message="the child's case at consent")
        assert case.protected_identity is True and case.unit_id is None and case.bba_user == "bba.norrskolan"
    grant(client, receiving=["region"], share=False, case_id=case_id)
    called = client.post("/meetings", json=meeting_body("region", case_id=case_id), headers=BBA)
    assert called.status_code == 201, called.text
    assert called.json()["child"]["protected_identity"] is True
    assert [i["status"] for i in called.json()["invitations"]] == ["awaiting_review"]
    assert _inbox_rows(client) == []
