"""Intake against a real nats-server and a real SQLite file."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.testing import bearer, wait_for
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app
from tillsammans_intake.models import Concern

CHILD = {"personnummer": "20130412-1237", "name": "Testbarn Testsson"}
CONCERN = {"unit_id": "norrskolan", "child": CHILD, "wheel_areas": ["trygghet", "hemmet", "relationer"],
           "description": "Frånvaron har ökat."}


def _client(tmp_path: Path, nats_url: str) -> TestClient:
    return TestClient(create_app(IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data")))


def test_concern_reaches_the_bba_inbox(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        response = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional", "mentor.anna"))
        assert response.status_code == 201, response.text
        concern = response.json()
        assert concern["bba_user"] == "bba.norrskolan"
        assert concern["child_personnummer"] == "201304121237"
        # Without an exporter no span is recorded, yet every response names its trace for ops.
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Trace-Id"])
        assert response.headers["X-Trace-Id"] != "0" * 32

        bba = bearer("school", "bba", "bba.norrskolan")
        inbox = wait_for(lambda: client.get("/inbox", headers=bba).json(), message="inbox item")
        assert [item["case_id"] for item in inbox] == [concern["case_id"]]
        assert client.get("/inbox", headers=bearer("school", "bba", "bba.other")).json() == []


def test_idempotency_key_returns_first_result_and_writes_once(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        headers = {**bearer("school", "professional", "mentor.anna"), "Idempotency-Key": "abc-1"}
        first = client.post("/concerns", json=CONCERN, headers=headers)
        second = client.post("/concerns", json=CONCERN, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert second.headers.get("Idempotent-Replayed") == "true"
        other = client.post("/concerns", json={**CONCERN, "description": "annat"}, headers=headers)
        assert other.status_code == 409
        engine = client.app.state.infra.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(Concern)).one() == 1
            events = session.exec(select(OutboxMessage.nats_subject)).all()
            assert sorted(events) == ["school.intake.case.recorded.v1", "school.intake.concern.raised.v1",
                                      "school.intake.concern.routed.v1"]


def test_bad_input_is_a_problem_naming_the_field_and_writes_nothing(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        bad = {**CONCERN, "child": {**CHILD, "personnummer": "20130412-1234"}}
        response = client.post("/concerns", json=bad, headers=bearer("school", "professional"))
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["errors"][0]["field"] == "child.personnummer"
        assert "check digit" in body["errors"][0]["reason"]
        assert "20130412-1234" not in response.text

        unknown_area = client.post("/concerns", json={**CONCERN, "wheel_areas": ["moon"]},
                                   headers=bearer("school", "professional"))
        assert unknown_area.status_code == 422
        assert unknown_area.json()["errors"][0]["field"] == "wheel_areas"

        engine = client.app.state.infra.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(Concern)).one() == 0
            assert session.exec(select(func.count()).select_from(OutboxMessage)).one() == 0


def test_authentication_and_authorisation(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        assert client.post("/concerns", json=CONCERN).status_code == 401
        garbage = client.post("/concerns", json=CONCERN, headers={"Authorization": "Bearer nonsense"})
        assert garbage.status_code == 401
        assert garbage.headers["content-type"] == "application/problem+json"
        other_org = client.post("/concerns", json=CONCERN, headers=bearer("region", "professional"))
        assert other_org.status_code == 403
        wrong_role = client.post("/concerns", json=CONCERN, headers=bearer("school", "auditor"))
        assert wrong_role.status_code == 403
        assert client.get("/inbox", headers=bearer("school", "professional")).status_code == 403


def test_reads_and_writes_are_audited(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        created = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional", "mentor.anna"))
        read = client.get(f"/concerns/{created.json()['id']}", headers=bearer("school", "bba", "bba.norrskolan"))
        assert read.status_code == 200
        engine = client.app.state.infra.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            actions = session.exec(select(AuditRecord.action, AuditRecord.user)).all()
        assert ("concern.raise", "mentor.anna") in actions
        assert ("concern.read", "bba.norrskolan") in actions
