"""The audit trail (decision 18): refusals recorded on their own transaction, GET /audit and its NDJSON
export for auditors only, consumer-applied messages recorded as the system, and append-only storage."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import ConcernRouted
from tillsammans_common.messaging.consumer import consume
from tillsammans_common.models import AuditRecord
from tillsammans_common.retention import Pruner, Retention
from tillsammans_common.service_app import build_app, build_infrastructure
from tillsammans_common.settings import ServiceSettings
from tillsammans_common.testing import bearer, engine_of, wait_for
from tillsammans_common.web import AnonymousRefusals

AUDITOR = bearer("school", "auditor", "granskare.eva")
CONSUMER_USER = "system:service-audit-test"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _settings(tmp_path: Path, nats_url: str) -> ServiceSettings:
    # dev_mode: development tokens and secrets, as every test uses.
    return ServiceSettings(org="school", nats_url=nats_url, data_dir=tmp_path, dev_mode=True)


@pytest.fixture
def client(tmp_path: Path, nats_url: str) -> Iterator[TestClient]:
    """A service with only the shared routes, and one consumer of routed concerns that changes nothing."""
    settings = _settings(tmp_path, nats_url)
    infra = build_infrastructure(settings, versions_dir=tmp_path / "no-service-versions")
    consume(infra.broker, infra.engine, settings, event=ConcernRouted, handler=lambda *_: None, durable="audit-test")
    app = build_app(infra, title="audit test", description="shared routes only", routers=[])
    with TestClient(app) as test_client:
        yield test_client


def _rows(engine: Engine, **where: Any) -> list[AuditRecord]:
    with Session(engine) as session:
        statement = select(AuditRecord).order_by(col(AuditRecord.id))
        for name, value in where.items():
            statement = statement.where(getattr(AuditRecord, name) == value)
        return list(session.exec(statement).all())


def _seed(engine: Engine, rows: list[dict[str, Any]]) -> None:
    defaults = {"org": "school", "role": "bba", "outcome": "ok", "protected": False, "principal_kind": "person",
                "case_id": None, "basis": None, "unit_id": None, "record_id": None, "reason": None}
    with engine.begin() as connection:
        connection.execute(insert(AuditRecord.__table__), [{**defaults, **row} for row in rows])  # type: ignore[attr-defined]


def test_refusals_are_recorded_with_who_and_why_and_answered_as_before(client: TestClient) -> None:
    missing = client.get("/audit")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["title"] == "Authentication required"
    assert client.get("/audit", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    wrong_role = client.get("/audit/export", headers=bearer("school", "bba", "bba.norrskolan"))
    assert wrong_role.status_code == 403 and "may not do this" in wrong_role.json()["detail"]
    assert client.get("/audit", headers=bearer("region", "auditor", "granskare.region")).status_code == 403

    refused = [(r.user, r.org, r.outcome, r.reason, r.action, r.basis, r.principal_kind, r.service)
               for r in _rows(engine_of(client)) if r.outcome != "ok"]
    assert refused == [
        ("anonymous", "", "unauthenticated", "no-token", "GET /audit", None, "unknown", "service"),
        ("anonymous", "", "unauthenticated", "invalid-token", "GET /audit", None, "unknown", "service"),
        ("bba.norrskolan", "school", "denied", "role", "GET /audit/export", None, "person", "service"),
        ("granskare.region", "region", "denied", "other-organisation", "GET /audit", None, "person", "service"),
    ]
    # The refused auditor of another organisation finds the trail through its own one: as the auditor here.
    page = client.get("/audit", params={"outcome": "denied"}, headers=AUDITOR).json()
    assert [item["user"] for item in page["items"]] == ["bba.norrskolan", "granskare.region"]
    assert page["items"][0]["role"] == "bba" and page["items"][0]["reason"] == "role"


def test_identical_anonymous_refusals_are_coalesced_per_minute() -> None:
    now = [600.0]
    refusals = AnonymousRefusals(clock=lambda: now[0])
    assert refusals.admit("no-token", "GET /audit")
    assert not refusals.admit("no-token", "GET /audit")
    assert refusals.admit("invalid-token", "GET /audit")  # another reason is another record
    assert refusals.admit("no-token", "GET /admin/parked")
    now[0] += 60
    assert refusals.admit("no-token", "GET /audit")  # the next minute records it again


def test_a_refusal_is_answered_even_when_the_audit_trail_cannot_be_written(client: TestClient) -> None:
    engine = engine_of(client)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_record RENAME TO audit_record_away"))
    try:
        refused = client.get("/audit", headers=bearer("school", "bba", "bba.norrskolan"))
        assert refused.status_code == 403 and refused.json()["status"] == 403
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_record_away RENAME TO audit_record"))


def test_the_trail_is_searched_by_case_user_outcome_action_and_period_page_by_page(client: TestClient) -> None:
    engine = engine_of(client)
    _seed(engine, [
        {"at": T0 + timedelta(minutes=index), "user": "bba.norrskolan", "action": "meeting.read", "case_id": "case-1",
         "basis": "bba-of-unit", "unit_id": "norrskolan", "record_id": f"meeting-{index}"} for index in range(5)
    ] + [
        {"at": T0, "user": "mentor.anna", "action": "concern.raise", "case_id": "case-2", "basis": "raiser"},
        {"at": T0 + timedelta(days=1), "user": "larare.bo", "action": "meeting.read", "case_id": "case-1",
         "outcome": "denied", "reason": "no-relation", "protected": True},
    ])

    # The reads below are audited under case-1 too (action audit.read): the action filter leaves them out.
    looked_at = {"case_id": "case-1", "action": "meeting.read", "limit": 2}
    first = client.get("/audit", params=looked_at, headers=AUDITOR)
    assert first.status_code == 200, first.text
    pages = [first.json()]
    while pages[-1]["next"] is not None:
        pages.append(client.get("/audit", params={**looked_at, "after_id": pages[-1]["next"]}, headers=AUDITOR).json())
    items = [item for page in pages for item in page["items"]]
    assert [item["record_id"] for item in items] == [f"meeting-{index}" for index in range(5)] + [None]
    assert len(pages) == 3 and all(item["case_id"] == "case-1" for item in items)
    assert items[0]["basis"] == "bba-of-unit" and items[0]["unit_id"] == "norrskolan"
    assert items[0]["at"] == "2026-03-02T08:00:00Z"
    assert items[-1]["protected"] is True and items[-1]["reason"] == "no-relation"

    def users(**params: Any) -> list[str]:
        response = client.get("/audit", params=params, headers=AUDITOR)
        assert response.status_code == 200, response.text
        return [item["user"] for item in response.json()["items"]]

    assert users(user="mentor.anna") == ["mentor.anna"]
    assert users(outcome="denied") == ["larare.bo"]
    assert users(action="concern.raise") == ["mentor.anna"]
    assert users(case_id="case-1", **{"from": "2026-03-02T09:02:00+01:00", "to": "2026-03-02T08:04:00Z"}) == [
        "bba.norrskolan", "bba.norrskolan"]
    for bad in ({"from": "1899-12-31T00:00:00Z"}, {"to": "2026-03-02T08:00:00"}, {"limit": 1001}, {"limit": 0},
                {"after_id": -1}, {"unknown": "x"}):
        assert client.get("/audit", params=bad, headers=AUDITOR).status_code == 422, bad

    # Every read of the trail is itself in the trail, naming the case looked at.
    reads = _rows(engine, action="audit.read", case_id="case-1")
    assert len(reads) == 4
    assert {(r.user, r.basis, r.principal_kind, r.service) for r in reads} == {
        ("granskare.eva", "auditor", "person", "service")}


def test_the_export_streams_every_matching_record_as_ndjson_and_is_audited(client: TestClient) -> None:
    engine = engine_of(client)
    _seed(engine, [{"at": T0 + timedelta(seconds=index), "user": f"user.{index % 3}", "action": "mapping.read",
                    "case_id": "case-big"} for index in range(2500)])

    exported = {"case_id": "case-big", "action": "mapping.read"}  # without the export's own record (audit.export)
    with client.stream("GET", "/audit/export", params=exported, headers=AUDITOR) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) for line in response.iter_lines() if line]
    assert len(lines) == 2500
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    assert {line["case_id"] for line in lines} == {"case-big"}
    mine = client.get("/audit/export", params={"user": "user.1"}, headers=AUDITOR).text.splitlines()
    assert len(mine) == 833
    assert len(_rows(engine, action="audit.export", user="granskare.eva")) == 2


def test_no_route_updates_or_deletes_the_trail(client: TestClient) -> None:
    routes = [route for route in client.app.routes if getattr(route, "path", "").startswith("/audit")]
    assert {method for route in routes for method in getattr(route, "methods", set())} <= {"GET", "HEAD"}
    assert client.delete("/audit", headers=AUDITOR).status_code == 405


async def _publish(nats_url: str, subject: str, body: bytes, msg_id: str) -> None:
    connection = await nats.connect(nats_url)
    await connection.jetstream().publish(subject, body, stream="EVENTS", headers={"Nats-Msg-Id": msg_id})
    await connection.close()


def test_a_message_a_consumer_applies_or_refuses_is_recorded_as_the_system(client: TestClient, nats_url: str) -> None:
    engine = engine_of(client)
    routed = Envelope.wrap(ConcernRouted(concern_id="concern-7", case_id="case-7", unit_id="norrskolan",
                                         bba_user="bba.norrskolan"), source="/orgs/school/intake", subject="case-7")
    asyncio.run(_publish(nats_url, f"school.{ConcernRouted.type}", routed.to_bytes(), "routed-7"))
    applied = wait_for(lambda: _rows(engine, user=CONSUMER_USER, outcome="ok"), message="the applied message's record")
    assert [(r.org, r.role, r.principal_kind, r.action, r.case_id, r.unit_id, r.protected, r.service)
            for r in applied] == [("school", "system", "system", ConcernRouted.type, "case-7", "norrskolan", False,
                                   "service")]

    asyncio.run(_publish(nats_url, f"school.{ConcernRouted.type}", b'{"subject": "case-8", "not": "an event"}',
                         "broken-8"))
    refused = wait_for(lambda: _rows(engine, user=CONSUMER_USER, outcome="refused"), message="the refusal's record")
    assert [(r.action, r.reason, r.case_id) for r in refused] == [(ConcernRouted.type, "invalid_message", "case-8")]


def _refused(engine: Engine, statement: str) -> bool:
    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    except DBAPIError as error:
        assert "audit records" in str(error.orig)
        return True
    return False


def _assert_append_only(engine: Engine) -> None:
    old = datetime.now(UTC) - timedelta(days=1828)
    _seed(engine, [{"at": old, "user": "old.user", "action": "a"},
                   {"at": datetime.now(UTC) - timedelta(days=1825), "user": "young.user", "action": "a"},
                   {"at": datetime.now(UTC), "user": "new.user", "action": "a"}])
    assert _refused(engine, "UPDATE audit_record SET outcome = 'denied'")
    assert _refused(engine, "DELETE FROM audit_record WHERE action = 'a'")  # the young ones stop the statement
    assert len(_rows(engine, action="a")) == 3
    retention = Retention(processed_message=timedelta(days=35), idempotency_record=timedelta(days=7),
                          published_outbox=timedelta(days=7), audit_record=timedelta(days=1827))
    removed = asyncio.run(Pruner(engine, retention, batch=1).prune_once())
    assert removed["audit_record"] == 1
    assert [r.user for r in _rows(engine, action="a")] == ["young.user", "new.user"]


def test_sqlite_refuses_to_update_or_delete_young_audit_records(engine: Engine) -> None:
    _assert_append_only(engine)


@pytest.mark.postgres
def test_postgresql_refuses_to_update_delete_or_truncate_young_audit_records(tmp_path: Path) -> None:
    import os
    import uuid

    import psycopg

    from tillsammans_common.db import make_engine, migrate

    server = os.environ.get("TILLSAMMANS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"tillsammans_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(server.rsplit("/", 1)[0] + "/" + name)
    try:
        migrate(engine, tmp_path / "no-service-versions")
        _assert_append_only(engine)
        assert _refused(engine, "TRUNCATE audit_record")
    finally:
        engine.dispose()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_audit_records_are_kept_at_least_five_years() -> None:
    with pytest.raises(ValidationError, match="audit_retention_days must be at least 1827"):
        ServiceSettings(audit_retention_days=1826, dev_mode=True)
    assert ServiceSettings(dev_mode=True).audit_retention_days == 3653
    settings = ServiceSettings(audit_retention_days=1827, dev_mode=True)
    assert Retention.of(settings).audit_record == timedelta(days=1827)
