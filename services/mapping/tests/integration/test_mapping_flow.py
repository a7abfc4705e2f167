"""Mapping against a real nats-server and a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from tillsammans_common.cases import apply_delegation
from tillsammans_common.db import utcnow
from tillsammans_common.events import EVENTS_STREAM
from tillsammans_common.events.intake import DelegationRecorded
from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.testing import bearer, seed_case, wait_for
from tillsammans_mapping.config import MappingSettings
from tillsammans_mapping.main import create_app
from tillsammans_mapping.models import AreaAssessment, Mapping

BBA = bearer("school", "bba", "bba.norrskolan")
CASE = "4b7f3c1e-8a52-4d0e-9c1a-2f6e5d4c3b2a"
CHILD = "20130412-1237"
"""The child of CASE: intake opened the case for this child at Norrskolan, whose BBA is bba.norrskolan."""
NOTE = "Eleven berättar om bråk hemma och vill inte gå hem efter skolan."
ANSWERS = {
    "has_all_information": False, "information_note": "Hälsa och hemsituation behöver belysas.",
    "obstacles": "Otrygghet och oro hemma.", "own_actions": "Samtal med mentor varje vecka.",
    "organisation_actions": "Elevhälsan följer närvaron.",
    "help_needed": "Stöd från socialtjänst och regionens hälso- och sjukvård.",
}
COMPLETED_SUBJECT = "school.mapping.mapping.completed.v1"


@contextmanager
def _client(tmp_path: Path, nats_url: str, *, unit_id: str = "norrskolan", bba_user: str = "bba.norrskolan",
            **settings: Any) -> Iterator[TestClient]:
    """A running mapping service that has learned CASE (as intake's CaseRecorded would tell it)."""
    options: dict[str, Any] = {"org": "school", "nats_url": nats_url, "data_dir": tmp_path / "data", **settings}
    with TestClient(create_app(MappingSettings(**options))) as client:
        _seed(client, CASE, CHILD, unit_id=unit_id, bba_user=bba_user)
        yield client
        # Every event written must reach NATS; and stopping while the relay is mid-publish can lose the
        # relay's cancellation on Python 3.11 (a libs/common issue), which would hang the shutdown.
        wait_for(lambda: all(_published_at(client)), message="outbox drained to NATS")


def _engine(client: TestClient) -> Engine:
    engine: Engine = client.app.state.infra.engine  # type: ignore[attr-defined]
    return engine


def _seed(client: TestClient, case_id: str, personnummer: str, *, unit_id: str = "norrskolan",
          bba_user: str = "bba.norrskolan") -> None:
    seed_case(_engine(client), client.app.state.settings,  # type: ignore[attr-defined]
              case_id=case_id, personnummer=personnummer, unit_id=unit_id, bba_user=bba_user)


def _delegate(client: TestClient, user: str, case_id: str = CASE) -> None:
    """The case's BBA gives ``user`` access to the case for a day (as intake's DelegationRecorded would say)."""
    now = utcnow()
    with Session(_engine(client)) as session:
        apply_delegation(session, DelegationRecorded(
            delegation_id=str(uuid.uuid4()), case_id=case_id, delegate_user=user, granted_by="bba.norrskolan",
            valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(days=1)))
        session.commit()


def _count(client: TestClient, model: type) -> int:
    with Session(_engine(client)) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def _published_at(client: TestClient) -> list[object]:
    with Session(_engine(client)) as session:
        return list(session.exec(select(OutboxMessage.published_at)).all())


def _outbox_subjects(client: TestClient) -> list[str]:
    with Session(_engine(client)) as session:
        return list(session.exec(select(OutboxMessage.nats_subject).order_by(col(OutboxMessage.seq))).all())


def _open(client: TestClient, case_id: str = CASE, headers: dict[str, str] = BBA, **body: Any) -> dict[str, Any]:
    response = client.post("/mappings", json={"case_id": case_id, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _assess(client: TestClient, mapping_id: str, area: str, level: str, note: str | None = NOTE) -> None:
    response = client.put(f"/mappings/{mapping_id}/areas/{area}", json={"level": level, "note": note}, headers=BBA)
    assert response.status_code == 200, response.text


def _ready_to_complete(client: TestClient) -> str:
    mapping_id: str = _open(client)["id"]
    _assess(client, mapping_id, "trygghet", "serious_concern")
    assert client.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=BBA).status_code == 200
    return mapping_id


async def _last_on_stream(nats_url: str, subject: str) -> dict[str, Any]:
    connection = await nats.connect(nats_url)
    try:
        message = await connection.jetstream().get_last_msg(EVENTS_STREAM, subject)
        assert message.data is not None
        envelope: dict[str, Any] = json.loads(message.data)
        return envelope
    finally:
        await connection.close()


def test_seed_001_journey_flags_areas_and_suggests_region_and_social(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url, peers=["school", "region", "social"]) as client:
        opened = _open(client, wheel_id="sormland")
        assert (opened["status"], opened["wheel_id"], opened["wheel_version"]) == ("open", "sormland", 1)
        assert opened["flagged_areas"] is None and opened["suggested_orgs"] is None
        mapping_id = opened["id"]
        for area, level in (("trygghet", "serious_concern"), ("hemmet", "some_concern"),
                            ("relationer", "some_concern"), ("larande", "no_concern")):
            _assess(client, mapping_id, area, level)
        # A delegate: a professional of the same organisation the BBA delegated the case to answers
        # the five questions (without the delegation she may not).
        delegate = bearer("school", "professional", "kurator.karin")
        refused = client.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=delegate)
        assert refused.status_code == 403, refused.text
        _delegate(client, "kurator.karin")
        answered = client.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=delegate)
        assert answered.status_code == 200, answered.text
        assert answered.json()["questions"] == ANSWERS

        completed = client.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 2}, headers=BBA)
        assert completed.status_code == 200, completed.text
        body = completed.json()
        assert body["status"] == "completed"
        assert body["trappan_step"] == 2
        assert body["completed_by"] == "bba.norrskolan"
        # Wheel order of the JSON: larande, hemmet, relationer, trygghet.
        assert [area["area_code"] for area in body["areas"]] == ["larande", "hemmet", "relationer", "trygghet"]
        assert body["flagged_areas"] == ["hemmet", "relationer", "trygghet"]
        # hemmet suggests social before relationer suggests region; school is this organisation.
        assert body["suggested_orgs"] == ["social", "region"]
        assert client.get(f"/mappings/{mapping_id}", headers=BBA).json() == body

        assert _outbox_subjects(client) == ["school.mapping.mapping.opened.v1", COMPLETED_SUBJECT]
        wait_for(lambda: _count(client, OutboxMessage) == 2 and all(_published_at(client)),
                 message="outbox rows published")
        envelope = asyncio.run(_last_on_stream(nats_url, COMPLETED_SUBJECT))
        assert envelope["type"] == "mapping.mapping.completed.v1"
        assert envelope["source"] == "/orgs/school/mapping"
        assert envelope["subject"] == CASE
        assert envelope["data"] == {
            "mapping_id": mapping_id, "case_id": CASE, "wheel_id": "sormland", "wheel_version": 1,
            "flagged_areas": ["hemmet", "relationer", "trygghet"], "suggested_orgs": ["social", "region"],
            "trappan_step": 2, "suggestions": [
                {"org": "social", "name": "Eskilstuna kommun, socialtjänsten", "kind": "social_services",
                 "roles": ["social_worker", "family_therapist"], "areas": ["hemmet", "relationer", "trygghet"]},
                {"org": "region", "name": "Region Sörmland", "kind": "health_care", "roles": ["bup"],
                 "areas": ["relationer"]}]}
        with Session(_engine(client)) as session:
            bodies = b"".join(session.exec(select(OutboxMessage.body)).all()).decode()
        for free_text in [NOTE, *[value for value in ANSWERS.values() if isinstance(value, str)]]:
            assert free_text not in bodies


def test_suggestions_are_limited_to_peers_and_exclude_this_organisation(tmp_path: Path, nats_url: str) -> None:
    region_bba = bearer("region", "bba", "bba.bvc")
    with _client(tmp_path, nats_url, org="region", peers=["region", "school"], unit_id="bvc-centrum",
                 bba_user="bba.bvc") as client:
        mapping_id = _open(client, headers=region_bba, wheel_id="girfec")["id"]
        for area in ("safe", "healthy", "achieving"):
            response = client.put(f"/mappings/{mapping_id}/areas/{area}", json={"level": "some_concern"},
                                  headers=region_bba)
            assert response.status_code == 200, response.text
        client.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=region_bba)
        completed = client.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 1}, headers=region_bba)
        assert completed.status_code == 200, completed.text
        # safe -> social (not a peer), healthy -> region (this organisation), achieving -> school.
        assert completed.json()["flagged_areas"] == ["safe", "healthy", "achieving"]
        assert completed.json()["suggested_orgs"] == ["school"]


def test_invalid_open_is_a_problem_naming_the_field_and_writes_nothing(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        unknown = client.post("/mappings", json={"case_id": CASE, "wheel_id": "moon"}, headers=BBA)
        assert unknown.status_code == 422
        assert unknown.headers["content-type"] == "application/problem+json"
        assert unknown.json()["errors"][0]["field"] == "wheel_id"

        version = client.post("/mappings", json={"case_id": CASE, "wheel_version": 99}, headers=BBA)
        assert version.status_code == 422
        assert version.json()["errors"][0]["field"] == "wheel_version"

        identity = client.post("/mappings", json={"case_id": "20130412-1237"}, headers=BBA)
        assert identity.status_code == 422
        assert identity.json()["errors"][0]["field"] == "case_id"
        assert "20130412" not in identity.text

        extra = client.post("/mappings", json={"case_id": CASE, "child_name": "Alva"}, headers=BBA)
        assert extra.status_code == 422
        assert extra.json()["errors"][0]["field"] == "child_name"
        assert "Alva" not in extra.text

        assert _count(client, Mapping) == 0
        assert _count(client, OutboxMessage) == 0


def test_invalid_assessment_is_a_problem_naming_the_field_and_writes_nothing(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _open(client)["id"]
        other_wheel = client.put(f"/mappings/{mapping_id}/areas/safe", json={"level": "some_concern"}, headers=BBA)
        assert other_wheel.status_code == 422
        assert other_wheel.headers["content-type"] == "application/problem+json"
        assert other_wheel.json()["errors"][0]["field"] == "area_code"

        level = client.put(f"/mappings/{mapping_id}/areas/hemmet", json={"level": "worried"}, headers=BBA)
        assert level.status_code == 422
        assert level.json()["errors"][0]["field"] == "level"

        long_note = client.put(f"/mappings/{mapping_id}/areas/hemmet",
                               json={"level": "some_concern", "note": "x" * 2001}, headers=BBA)
        assert long_note.status_code == 422
        assert long_note.json()["errors"][0]["field"] == "note"

        blank = client.put(f"/mappings/{mapping_id}/questions", json={"obstacles": "  "}, headers=BBA)
        assert blank.status_code == 422
        assert blank.json()["errors"][0]["field"] == "obstacles"

        assert _count(client, AreaAssessment) == 0
        assert client.get(f"/mappings/{mapping_id}", headers=BBA).json()["questions"]["obstacles"] is None


def test_reassessing_an_area_replaces_the_assessment(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _open(client)["id"]
        _assess(client, mapping_id, "hemmet", "unknown", note=None)
        delegate = bearer("school", "professional", "kurator.karin")
        _delegate(client, "kurator.karin")
        again = client.put(f"/mappings/{mapping_id}/areas/hemmet", json={"level": "serious_concern", "note": NOTE},
                           headers=delegate)
        assert again.status_code == 200
        assert again.json()["level"] == "serious_concern"
        assert again.json()["assessed_by"] == "kurator.karin"
        areas = client.get(f"/mappings/{mapping_id}", headers=BBA).json()["areas"]
        assert [(area["area_code"], area["level"], area["note"]) for area in areas] == [
            ("hemmet", "serious_concern", NOTE)]


def test_completion_needs_an_assessed_area_all_five_answers_and_a_trappan_step(tmp_path: Path,
                                                                                nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _open(client)["id"]
        complete = f"/mappings/{mapping_id}/complete"
        nothing = client.post(complete, json={"trappan_step": 1}, headers=BBA)
        assert nothing.status_code == 422
        assert nothing.headers["content-type"] == "application/problem+json"
        assert [error["field"] for error in nothing.json()["errors"]] == [
            "areas", "questions.has_all_information", "questions.obstacles", "questions.own_actions",
            "questions.organisation_actions", "questions.help_needed"]

        _assess(client, mapping_id, "larande", "no_concern")
        partial = {"has_all_information": True, "obstacles": "Inget just nu.", "own_actions": "Följa upp."}
        assert client.put(f"/mappings/{mapping_id}/questions", json=partial, headers=BBA).status_code == 200
        some = client.post(complete, json={"trappan_step": 1}, headers=BBA)
        assert some.status_code == 422
        assert [error["field"] for error in some.json()["errors"]] == [
            "questions.organisation_actions", "questions.help_needed"]

        assert client.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=BBA).status_code == 200
        no_step = client.post(complete, json={}, headers=BBA)
        assert no_step.status_code == 422
        assert no_step.json()["errors"][0]["field"] == "trappan_step"
        assert client.post(complete, json={"trappan_step": 4}, headers=BBA).status_code == 422
        assert client.get(f"/mappings/{mapping_id}", headers=BBA).json()["status"] == "open"
        assert COMPLETED_SUBJECT not in _outbox_subjects(client)

        done = client.post(complete, json={"trappan_step": 1}, headers=BBA)
        assert done.status_code == 200, done.text
        # Nothing flagged: the mapping concludes without calling on another organisation.
        assert (done.json()["flagged_areas"], done.json()["suggested_orgs"]) == ([], [])


def test_a_completed_mapping_is_immutable(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _ready_to_complete(client)
        headers = {**BBA, "Idempotency-Key": "complete-1"}
        first = client.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 3}, headers=headers)
        assert first.status_code == 200, first.text
        replay = client.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 3}, headers=headers)
        assert replay.status_code == 200
        assert replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json() == first.json()

        twice = client.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 2}, headers=BBA)
        assert twice.status_code == 409
        assert twice.headers["content-type"] == "application/problem+json"
        area = client.put(f"/mappings/{mapping_id}/areas/hemmet", json={"level": "some_concern"}, headers=BBA)
        assert area.status_code == 409
        answers = client.put(f"/mappings/{mapping_id}/questions", json={**ANSWERS, "obstacles": "Ny"}, headers=BBA)
        assert answers.status_code == 409

        assert client.get(f"/mappings/{mapping_id}", headers=BBA).json() == first.json()
        assert _outbox_subjects(client).count(COMPLETED_SUBJECT) == 1


def test_unknown_mapping_ids_are_404_problems(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        for response in (
            client.get("/mappings/nope", headers=BBA),
            client.put("/mappings/nope/areas/hemmet", json={"level": "some_concern"}, headers=BBA),
            client.put("/mappings/nope/questions", json=ANSWERS, headers=BBA),
            client.post("/mappings/nope/complete", json={"trappan_step": 1}, headers=BBA),
        ):
            assert response.status_code == 404
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"].endswith("/not-found")


def test_wheels_are_listed_and_read_by_version(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        listed = client.get("/wheels", headers=BBA).json()
        assert [(wheel["id"], wheel["version"]) for wheel in listed] == [("girfec", 1), ("sormland", 1)]
        sormland = client.get("/wheels/sormland", headers=BBA).json()
        assert len(sormland["areas"]) == 7
        girfec = client.get("/wheels/girfec/versions/1", headers=bearer("school", "auditor")).json()
        assert len(girfec["areas"]) == 8
        for path in ("/wheels/moon", "/wheels/sormland/versions/99"):
            missing = client.get(path, headers=BBA)
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
        assert client.get("/wheels").status_code == 401


def test_case_history_is_newest_first_and_only_that_case(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        first = _open(client)["id"]
        second = _open(client, wheel_id="girfec")["id"]
        _seed(client, "another-case", "20100101-0006")
        _open(client, case_id="another-case")
        history = client.get(f"/cases/{CASE}/mappings", headers=BBA)
        assert history.status_code == 200
        assert [(m["id"], m["wheel_id"]) for m in history.json()] == [(second, "girfec"), (first, "sormland")]
        # A case with no mapping yet has an empty history; a case this service never learned of does not exist.
        _seed(client, "quiet-case", "20150101-0001")
        assert client.get("/cases/quiet-case/mappings", headers=BBA).json() == []
        unknown = client.get("/cases/unknown-case/mappings", headers=BBA)
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"


def test_authentication_and_authorisation(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        body = {"case_id": CASE}
        assert client.post("/mappings", json=body).status_code == 401
        garbage = client.post("/mappings", json=body, headers={"Authorization": "Bearer nonsense"})
        assert garbage.status_code == 401
        assert garbage.headers["content-type"] == "application/problem+json"
        assert client.post("/mappings", json=body, headers=bearer("region", "bba")).status_code == 403
        assert client.post("/mappings", json=body, headers=bearer("school", "auditor")).status_code == 403
        assert client.post("/mappings", json=body, headers=bearer("school", "coordinator")).status_code == 403
        # An integration acts only for the units it is scoped to; this one is scoped to none, so not to the case's.
        integration = bearer("school", "integration", "journal-system")
        assert client.post("/mappings", json=body, headers=integration).status_code == 403
        assert _count(client, Mapping) == 0

        mapping_id = _open(client)["id"]
        assert client.get(f"/mappings/{mapping_id}", headers=bearer("school", "auditor")).status_code == 403
        assert client.get(f"/cases/{CASE}/mappings", headers=bearer("school", "auditor")).status_code == 403
        assert client.get(f"/mappings/{mapping_id}", headers=bearer("region", "bba")).status_code == 403
        assert client.get(f"/mappings/{mapping_id}", headers=integration).status_code == 403
        # A coordinator holds no relation to the child by role: neither reads nor writes the mapping...
        coordinator = bearer("school", "coordinator", "samordnare.sam")
        assert client.get(f"/mappings/{mapping_id}", headers=coordinator).status_code == 403
        denied = client.put(f"/mappings/{mapping_id}/areas/hemmet", json={"level": "some_concern"},
                            headers=coordinator)
        assert denied.status_code == 403
        assert _count(client, AreaAssessment) == 0
        # ...until the case's BBA delegates the case to them.
        _delegate(client, "samordnare.sam")
        assert client.get(f"/mappings/{mapping_id}", headers=coordinator).status_code == 200


def test_reads_and_writes_of_case_data_are_audited(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _ready_to_complete(client)
        client.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 2}, headers=BBA)
        coordinator = bearer("school", "coordinator", "samordnare.sam")
        _delegate(client, "samordnare.sam")
        assert client.get(f"/mappings/{mapping_id}", headers=coordinator).status_code == 200
        assert client.get(f"/cases/{CASE}/mappings", headers=coordinator).status_code == 200
        with Session(_engine(client)) as session:
            rows = session.exec(select(AuditRecord.action, AuditRecord.user, AuditRecord.case_id,
                                       AuditRecord.basis, AuditRecord.unit_id)).all()
        # Each record names the relation that allowed the access, and the child's unit.
        assert sorted(rows) == sorted([
            ("mapping.open", "bba.norrskolan", CASE, "bba-of-unit", "norrskolan"),
            ("mapping.assess_area", "bba.norrskolan", CASE, "bba-of-unit", "norrskolan"),
            ("mapping.answer_questions", "bba.norrskolan", CASE, "bba-of-unit", "norrskolan"),
            ("mapping.complete", "bba.norrskolan", CASE, "bba-of-unit", "norrskolan"),
            ("mapping.read", "samordnare.sam", CASE, "delegate", "norrskolan"),
            ("mapping.history", "samordnare.sam", CASE, "delegate", "norrskolan"),
        ])
