"""Need-to-know on mappings through HTTP: a relation to the child's case, not a role, opens a mapping."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from tillsammans_common.cases import apply_delegation
from tillsammans_common.db import utcnow
from tillsammans_common.events.intake import DelegationRecorded
from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.testing import bearer, seed_case, wait_for
from tillsammans_mapping.config import MappingSettings
from tillsammans_mapping.main import create_app
from tillsammans_mapping.models import AreaAssessment, Mapping

CASE = "7c2e9a41-5d3b-4f6a-8e1c-0b9d2a7f4e63"
CHILD = "20130412-1237"
BBA = bearer("school", "bba", "bba.norrskolan")
OTHER_UNITS_BBA = bearer("school", "bba", "bba.sodraskolan")
ANSWERS = {
    "has_all_information": True, "obstacles": "Oro hemma.", "own_actions": "Samtal med mentor.",
    "organisation_actions": "Elevhälsan följer upp.", "help_needed": "Stöd från socialtjänsten.",
}


@contextmanager
def _client(tmp_path: Path, nats_url: str) -> Iterator[TestClient]:
    """A mapping service that knows CASE: Norrskolan's case of CHILD, whose BBA is bba.norrskolan."""
    settings = MappingSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        seed_case(_engine(client), settings, case_id=CASE, personnummer=CHILD, unit_id="norrskolan",
                  bba_user="bba.norrskolan")
        yield client
        wait_for(lambda: all(_published_at(client)), message="outbox drained to NATS")


def _engine(client: TestClient) -> Engine:
    engine: Engine = client.app.state.infra.engine  # type: ignore[attr-defined]
    return engine


def _published_at(client: TestClient) -> list[object]:
    with Session(_engine(client)) as session:
        return list(session.exec(select(OutboxMessage.published_at)).all())


def _count(client: TestClient, model: type) -> int:
    with Session(_engine(client)) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def _refusals(client: TestClient) -> list[tuple[Any, ...]]:
    with Session(_engine(client)) as session:
        return list(session.exec(select(AuditRecord.user, AuditRecord.action, AuditRecord.case_id,
                                        AuditRecord.reason, AuditRecord.basis)
                                 .where(col(AuditRecord.outcome) == "denied")
                                 .order_by(col(AuditRecord.id))).all())


def _delegate(client: TestClient, user: str, *, valid_from: Any, valid_until: Any) -> None:
    with Session(_engine(client)) as session:
        apply_delegation(session, DelegationRecorded(
            delegation_id=str(uuid.uuid4()), case_id=CASE, delegate_user=user, granted_by="bba.norrskolan",
            valid_from=valid_from, valid_until=valid_until))
        session.commit()


def _open(client: TestClient) -> str:
    response = client.post("/mappings", json={"case_id": CASE}, headers=BBA)
    assert response.status_code == 201, response.text
    mapping_id: str = response.json()["id"]
    return mapping_id


def _assert_forbidden(response: Any) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert CHILD not in response.text


def test_a_bba_of_another_unit_may_neither_read_nor_assess_the_mapping(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _open(client)
        _assert_forbidden(client.get(f"/mappings/{mapping_id}", headers=OTHER_UNITS_BBA))
        _assert_forbidden(client.put(f"/mappings/{mapping_id}/areas/hemmet",
                                     json={"level": "serious_concern", "note": "Från fel enhet."},
                                     headers=OTHER_UNITS_BBA))
        assert _count(client, AreaAssessment) == 0
        # The refusals are in the audit trail, naming the case and why; nothing was allowed on any basis.
        assert _refusals(client) == [
            ("bba.sodraskolan", "case.read", CASE, "no-relation", None),
            ("bba.sodraskolan", "case.work", CASE, "no-relation", None),
        ]
        with Session(_engine(client)) as session:
            users = set(session.exec(select(AuditRecord.user).where(col(AuditRecord.outcome) == "ok")).all())
        assert users == {"bba.norrskolan"}
        # The case's own BBA still can.
        assert client.get(f"/mappings/{mapping_id}", headers=BBA).status_code == 200


def test_a_professional_without_a_delegation_may_not_complete(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _open(client)
        assess = client.put(f"/mappings/{mapping_id}/areas/trygghet", json={"level": "some_concern"}, headers=BBA)
        assert assess.status_code == 200, assess.text
        assert client.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=BBA).status_code == 200

        professional = bearer("school", "professional", "mentor.maja")
        complete = f"/mappings/{mapping_id}/complete"
        _assert_forbidden(client.post(complete, json={"trappan_step": 1}, headers=professional))
        # A delegation that has run out is no delegation.
        now = utcnow()
        _delegate(client, "mentor.maja", valid_from=now - timedelta(days=10), valid_until=now - timedelta(days=1))
        _assert_forbidden(client.post(complete, json={"trappan_step": 1}, headers=professional))

        assert client.get(f"/mappings/{mapping_id}", headers=BBA).json()["status"] == "open"
        with Session(_engine(client)) as session:
            subjects = session.exec(select(OutboxMessage.nats_subject)).all()
        assert subjects == ["school.mapping.mapping.opened.v1"]
        assert [row[:4] for row in _refusals(client)] == [
            ("mentor.maja", "case.work", CASE, "no-relation")] * 2


def test_an_unknown_case_in_the_body_is_a_problem_naming_case_id_and_writes_nothing(
        tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        unknown = client.post("/mappings", json={"case_id": "9f9f9f9f-0000-4000-8000-000000000000"}, headers=BBA)
        assert unknown.status_code == 422, unknown.text
        assert unknown.headers["content-type"] == "application/problem+json"
        assert unknown.json()["errors"][0]["field"] == "case_id"
        assert _count(client, Mapping) == 0
        assert _count(client, OutboxMessage) == 0
        with Session(_engine(client)) as session:
            assert session.exec(select(AuditRecord.action).where(col(AuditRecord.outcome) == "ok")).all() == []


def test_an_auditor_may_not_read_a_cases_mappings(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        _open(client)
        auditor = bearer("school", "auditor", "granskare.eva")
        history = client.get(f"/cases/{CASE}/mappings", headers=auditor)
        _assert_forbidden(history)
        assert "wheel_id" not in history.text
        assert _refusals(client) == [("granskare.eva", "case.read", CASE, "no-relation", None)]
        # What the auditor reads instead is the audit trail: who worked on the case, and who was refused.
        trail = client.get("/audit", params={"case_id": CASE}, headers=auditor)
        assert trail.status_code == 200, trail.text
        assert [(r["user"], r["action"], r["outcome"], r["basis"], r["reason"]) for r in trail.json()["items"]] == [
            ("bba.norrskolan", "mapping.open", "ok", "bba-of-unit", None),
            ("granskare.eva", "case.read", "denied", None, "no-relation"),
        ]
