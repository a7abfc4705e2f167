"""Need-to-know on consents through HTTP: a consent is part of the child's case, and only who works on it reads it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from tillsammans_common.models import AuditRecord, ConsentGrant, IdempotencyRecord, OutboxMessage
from tillsammans_common.personnummer import luhn_check_digit
from tillsammans_common.testing import bearer, seed_case
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.models import Consent, ConsentHistory

Serve = Callable[[ConsentSettings], AbstractContextManager[TestClient]]
NOW = datetime.now(UTC)
BORN = date(NOW.year - 11, 2, 14)


def _pnr(serial: str) -> str:
    return f"{BORN:%Y%m%d}-{serial}{luhn_check_digit(BORN.strftime('%y%m%d') + serial)}"


CHILD = _pnr("238")
SIBLING = _pnr("246")
"""Another child (same birthday): not the child of CASE."""
CASE = "5e8a1d27-9c3f-4b60-a2d4-7f1e0c9b3a58"
BBA = bearer("school", "bba", "bba.norrskolan")
CONSENT: dict[str, Any] = {
    "case_id": CASE, "child": {"personnummer": CHILD}, "custody": "sole",
    "grantors": [{"role": "guardian", "name": "Doris Vårdnadshavare", "given_at": NOW.isoformat()}],
    "child_view": {"heard": True, "agrees": True}, "receiving_orgs": ["region"],
    "categories": ["concern"], "purpose": "coordination_meeting",
    "valid_from": (NOW - timedelta(minutes=5)).isoformat(), "valid_until": (NOW + timedelta(days=30)).isoformat(),
}


def _engine(client: TestClient) -> Engine:
    return client.app.state.infra.engine  # type: ignore[attr-defined,no-any-return]


def _start(serve: Serve, tmp_path: Path, nats_url: str) -> AbstractContextManager[TestClient]:
    return serve(ConsentSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data"))


def _seed(client: TestClient) -> None:
    """CASE is CHILD's case at Norrskolan, whose BBA is bba.norrskolan (as intake's CaseRecorded says)."""
    seed_case(_engine(client), client.app.state.settings,  # type: ignore[attr-defined]
              case_id=CASE, personnummer=CHILD, unit_id="norrskolan", bba_user="bba.norrskolan")


def _grant(client: TestClient) -> str:
    response = client.post("/consents", json=CONSENT, headers=BBA)
    assert response.status_code == 201, response.text
    consent_id: str = response.json()["id"]
    return consent_id


def _refusals(client: TestClient) -> list[tuple[Any, ...]]:
    with Session(_engine(client)) as session:
        return list(session.exec(select(AuditRecord.user, AuditRecord.action, AuditRecord.case_id,
                                        AuditRecord.reason)
                                 .where(col(AuditRecord.outcome) == "denied").order_by(col(AuditRecord.id))).all())


def _count(client: TestClient, table: type) -> int:
    with Session(_engine(client)) as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def _assert_forbidden_without_identity(response: Any) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    for secret in (CHILD, CHILD.replace("-", ""), "Doris"):
        assert secret not in response.text


def test_an_auditor_may_not_read_a_consent(tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with _start(serve, tmp_path, nats_url) as client:
        _seed(client)
        consent_id = _grant(client)
        auditor = bearer("school", "auditor", "granskare.eva")
        _assert_forbidden_without_identity(client.get(f"/consents/{consent_id}", headers=auditor))
        _assert_forbidden_without_identity(client.get(f"/cases/{CASE}/consents", headers=auditor))
        assert _refusals(client) == [("granskare.eva", "case.read", CASE, "no-relation")] * 2
        with Session(_engine(client)) as session:
            reads = session.exec(select(AuditRecord.action).where(
                col(AuditRecord.user) == "granskare.eva", col(AuditRecord.outcome) == "ok")).all()
        assert reads == []
        # The case's BBA reads it, with the child's identity.
        detail = client.get(f"/consents/{consent_id}", headers=BBA)
        assert detail.status_code == 200 and detail.json()["child_personnummer"] == CHILD.replace("-", "")


def test_a_consent_for_a_child_that_is_not_the_cases_child_is_refused_and_writes_nothing(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with _start(serve, tmp_path, nats_url) as client:
        _seed(client)
        headers = {**BBA, "Idempotency-Key": "wrong-child"}
        wrong = client.post("/consents", json={**CONSENT, "child": {"personnummer": SIBLING}}, headers=headers)
        assert wrong.status_code == 422, wrong.text
        assert wrong.headers["content-type"] == "application/problem+json"
        assert wrong.json()["errors"][0]["field"] == "child.personnummer"
        for secret in (SIBLING, SIBLING.replace("-", ""), CHILD.replace("-", "")):
            assert secret not in wrong.text
        for table in (Consent, ConsentHistory, ConsentGrant, OutboxMessage):
            assert _count(client, table) == 0, table
        with Session(_engine(client)) as session:
            assert session.exec(select(AuditRecord.action).where(col(AuditRecord.action) == "consent.grant")).all() \
                == []
        # The same request for the case's own child is recorded.
        assert client.post("/consents", json=CONSENT, headers=BBA).status_code == 201
        assert _count(client, Consent) == 1


def test_a_bba_of_another_unit_may_not_withdraw(tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with _start(serve, tmp_path, nats_url) as client:
        _seed(client)
        consent_id = _grant(client)
        other = bearer("school", "bba", "bba.sodraskolan")
        refused = client.post(f"/consents/{consent_id}/withdraw", json={"withdrawn_by": "guardian"},
                              headers={**other, "Idempotency-Key": "not-mine"})
        _assert_forbidden_without_identity(refused)
        assert _refusals(client) == [("bba.sodraskolan", "case.work", CASE, "no-relation")]
        with Session(_engine(client)) as session:
            consent = session.get(Consent, consent_id)
            assert consent is not None and consent.status.value == "active"
            subjects = session.exec(select(OutboxMessage.nats_subject)).all()
            assert session.exec(select(func.count()).select_from(ConsentHistory)).one() == 1
            assert session.exec(select(IdempotencyRecord.key).where(
                col(IdempotencyRecord.key) == "not-mine")).all() == []
        assert not [subject for subject in subjects if "withdrawn" in subject]
        decision = client.post("/decisions", headers=BBA, json={
            "disclosing_org": "school", "receiving_org": "region", "child": {"personnummer": CHILD},
            "categories": ["concern"], "purpose": "coordination_meeting"})
        assert decision.json()["allowed"] is True
