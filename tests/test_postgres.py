"""The data layer on PostgreSQL: migrations, writes, idempotency and the outbox, per service."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from tillsammans_common.cases import CaseRecord
from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.testing import bearer, seed_case, wait_for

pytestmark = pytest.mark.postgres
SERVER = os.environ.get("TILLSAMMANS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CHILD = {"personnummer": "20130412-1237", "name": "Testbarn"}


def _fresh_database() -> Iterator[str]:
    name = f"tillsammans_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield SERVER.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    yield from _fresh_database()


@pytest.fixture
def consent_database_url() -> Iterator[str]:
    """A second fresh database, for the consent service beside the one under test."""
    yield from _fresh_database()


def _count(client: TestClient, model: type) -> int:
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        return int(session.exec(select(func.count()).select_from(model)).one())


def _seed_case(client: TestClient, settings: object) -> None:
    """The child's case as intake's event records it in the service (intake does not run here)."""
    seed_case(client.app.state.infra.engine, settings, case_id="case-pg",  # type: ignore[attr-defined]
              personnummer=CHILD["personnummer"])


def test_intake_on_postgres(database_url: str, nats_url: str) -> None:
    from tillsammans_intake.config import IntakeSettings
    from tillsammans_intake.main import create_app

    settings = IntakeSettings(org="school", nats_url=nats_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        headers = {**bearer("school", "professional", "mentor"), "Idempotency-Key": "pg-1"}
        body = {"unit_id": "norrskolan", "child": CHILD, "wheel_areas": ["trygghet"], "description": "x"}
        first = client.post("/concerns", json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert client.post("/concerns", json=body, headers=headers).json() == first.json()
        bba = bearer("school", "bba", "bba.norrskolan")
        wait_for(lambda: client.get("/inbox", headers=bba).json(), message="inbox on postgres")
        # The child's case opened with the first concern (one event), then the concern raised and routed.
        assert _count(client, OutboxMessage) == 3
        again = client.post("/concerns", json=body, headers=bearer("school", "professional", "kurator"))
        assert again.json()["case_id"] == first.json()["case_id"]
        assert _count(client, CaseRecord) == 1
        # An orosanmälan: the child's municipality from the unit, queued for social services with no gate.
        filed = client.post(f"/concerns/{first.json()['id']}/report", json={"grounds": "x", "urgent": True},
                            headers=bearer("school", "professional", "mentor"))
        assert filed.status_code == 201, filed.text
        assert filed.json()["municipality_code"] == "0484" and filed.json()["to_org"] == "social"
        assert client.get(f"/reports/{filed.json()['id']}", headers=bba).status_code == 200
        assert client.app.state.infra.engine.dialect.name == "postgresql"  # type: ignore[attr-defined]


def test_mapping_on_postgres(database_url: str, nats_url: str) -> None:
    from tillsammans_mapping.config import MappingSettings
    from tillsammans_mapping.main import create_app

    settings = MappingSettings(org="school", nats_url=nats_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        _seed_case(client, settings)
        bba = bearer("school", "bba", "bba.norrskolan")
        created = client.post("/mappings", json={"case_id": "case-pg", "wheel_id": "sormland"}, headers=bba)
        assert created.status_code == 201, created.text
        area = client.put(f"/mappings/{created.json()['id']}/areas/trygghet",
                          json={"level": "serious_concern", "note": "n"}, headers=bba)
        assert area.status_code == 200, area.text
        assert _count(client, AuditRecord) >= 2


def test_consent_on_postgres(database_url: str, nats_url: str) -> None:
    from tillsammans_consent.config import ConsentSettings
    from tillsammans_consent.main import create_app

    now = datetime.now(UTC)
    settings = ConsentSettings(org="school", nats_url=nats_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        _seed_case(client, settings)
        bba = bearer("school", "bba", "bba.norrskolan")
        created = client.post("/consents", headers=bba, json={
            "case_id": "case-pg", "child": {"personnummer": CHILD["personnummer"]}, "custody": "sole",
            "grantors": [{"role": "guardian", "name": "V", "given_at": now.isoformat()}],
            "child_view": {"heard": True, "agrees": True, "note": None}, "receiving_orgs": ["region"],
            "categories": ["identity"], "purpose": "coordination_meeting",
            "valid_from": now.isoformat(), "valid_until": (now + timedelta(days=30)).isoformat()})
        assert created.status_code == 201, created.text
        decision = client.post("/decisions", headers=bba, json={
            "disclosing_org": "school", "receiving_org": "region", "child": {"personnummer": CHILD["personnummer"]},
            "categories": ["identity"], "purpose": "coordination_meeting"})
        assert decision.json()["allowed"] is True


def test_meetings_on_postgres(database_url: str, consent_database_url: str, nats_url: str) -> None:
    from tillsammans_consent.config import ConsentSettings
    from tillsammans_consent.main import create_app as create_consent_app
    from tillsammans_consent.models import DisclosureDecision
    from tillsammans_meetings.config import MeetingsSettings
    from tillsammans_meetings.main import create_app

    now = datetime.now(UTC)
    settings = MeetingsSettings(org="school", nats_url=nats_url, database_url=database_url)
    # A short lease: the permit given at queue time soon runs out, so the relay must ask again.
    consent_settings = ConsentSettings(org="school", nats_url=nats_url, database_url=consent_database_url,
                                       disclosure_lease_seconds=1.0)
    with TestClient(create_app(settings)) as client, TestClient(create_consent_app(consent_settings)) as consent:
        _seed_case(client, settings)
        _seed_case(consent, consent_settings)
        bba = bearer("school", "bba", "bba.norrskolan")
        body = {"case_id": "case-pg", "scheduled_at": now.isoformat(), "child": CHILD,
                "invited_orgs": ["region"], "flagged_areas": ["trygghet"], "concern_summary": "s"}
        refused = client.post("/meetings", json=body, headers=bba)
        assert refused.status_code == 403
        assert _count(client, OutboxMessage) == 0
        granted = consent.post("/consents", headers=bba, json={
            "case_id": "case-pg", "child": {"personnummer": CHILD["personnummer"]}, "custody": "sole",
            "grantors": [{"role": "guardian", "name": "V", "given_at": now.isoformat()}],
            "child_view": {"heard": True, "agrees": True, "note": None}, "receiving_orgs": ["region"],
            "categories": ["identity", "concern", "mapping_summary"], "purpose": "coordination_meeting",
            "valid_from": now.isoformat(), "valid_until": (now + timedelta(days=30)).isoformat()})
        assert granted.status_code == 201, granted.text
        called = client.post("/meetings", json=body, headers=bba)
        assert called.status_code == 201, called.text
        # Region has no stream here, so the invitation waits unsent; once the permit it was queued with has
        # run out, the relay asks the consent service again (on PostgreSQL, with the consent row share-locked).
        def asked_again() -> bool:
            with Session(consent.app.state.infra.engine) as session:  # type: ignore[attr-defined]
                return session.exec(select(DisclosureDecision).where(DisclosureDecision.phase == "send")).first() \
                    is not None

        wait_for(asked_again, timeout=30, message="the decision as the invitation leaves")
        consultation = client.post("/consultations", headers=bba, json={
            "invited_orgs": ["region"], "age_band": "10-12", "wheel_areas": ["trygghet"], "question": "q?"})
        assert consultation.status_code == 201, consultation.text
        assert _count(client, OutboxMessage) == 3
