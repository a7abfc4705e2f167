"""Consent against a real nats-server and a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from tillsammans_common.events import Envelope
from tillsammans_common.models import AuditRecord, ConsentGrant, IdempotencyRecord, OutboxMessage, ProcessedMessage
from tillsammans_common.personnummer import child_key, luhn_check_digit, pair_key
from tillsammans_common.testing import bearer, seed_case, wait_for
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.models import Consent, ConsentHistory

Serve = Callable[[ConsentSettings], AbstractContextManager[TestClient]]
NOW = datetime.now(UTC)
BORN = date(NOW.year - 9, 5, 20)
SERIAL = "238"
PERSONNUMMER = f"{BORN:%Y%m%d}-{SERIAL}{luhn_check_digit(BORN.strftime('%y%m%d') + SERIAL)}"
NORMALIZED = PERSONNUMMER.replace("-", "")
KEY = child_key(NORMALIZED, ConsentSettings().child_key_secret.get_secret_value())
GUARDIANS = [{"role": "guardian", "name": "Anna Vårdnadsdóttir", "given_at": NOW.isoformat()},
             {"role": "guardian", "name": "Bertil Vårdnadsson", "given_at": NOW.isoformat()}]
CONSENT: dict[str, Any] = {
    "case_id": "8d1f6c2e-0c55-4a53-9c0e-3f1f1b3a2b10", "child": {"personnummer": PERSONNUMMER},
    "custody": "joint", "grantors": GUARDIANS,
    "child_view": {"heard": True, "agrees": True, "note": "Önskar att skolsköterskan är med."},
    "receiving_orgs": ["region"], "categories": ["concern", "mapping_summary"], "purpose": "coordination_meeting",
    "valid_from": (NOW - timedelta(minutes=5)).isoformat(), "valid_until": (NOW + timedelta(days=180)).isoformat(),
}
ASK: dict[str, Any] = {"disclosing_org": "school", "receiving_org": "region", "child": {"personnummer": PERSONNUMMER},
                       "categories": ["concern"], "purpose": "coordination_meeting"}
BBA = bearer("school", "bba", "bba.norrskolan")


def _settings(tmp_path: Path, nats_url: str) -> ConsentSettings:
    return ConsentSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data")


def _seed(client: TestClient) -> None:
    """The case CONSENT names, as intake's CaseRecorded tells consent: the child's case at Norrskolan."""
    seed_case(_engine(client), client.app.state.settings,  # type: ignore[attr-defined]
              case_id=CONSENT["case_id"], personnummer=PERSONNUMMER, unit_id="norrskolan", bba_user="bba.norrskolan")


def _engine(client: TestClient) -> Engine:
    return client.app.state.infra.engine  # type: ignore[attr-defined,no-any-return]


def test_grant_decide_withdraw_decide(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with serve(_settings(tmp_path, nats_url)) as client:
        _seed(client)
        created = client.post("/consents", json=CONSENT, headers=BBA)
        assert created.status_code == 201, created.text
        consent = created.json()
        assert consent["status"] == "active" and consent["child_key"] == KEY
        assert consent["disclosing_org"] == "school" and consent["grantor_roles"] == ["guardian"]
        assert NORMALIZED not in created.text and PERSONNUMMER not in created.text
        assert "Anna" not in created.text

        allowed = client.post("/decisions", json=ASK, headers=bearer("school", "professional"))
        assert allowed.status_code == 200, allowed.text
        assert allowed.json() == {"allowed": True, "consent_id": consent["id"], "reason": "covered by consent"}
        by_key = client.post("/decisions", json={**{k: v for k, v in ASK.items() if k != "child"}, "child_key": KEY},
                             headers=BBA)
        assert by_key.json()["allowed"] is True
        health = client.post("/decisions", json={**ASK, "categories": ["health"]}, headers=BBA).json()
        assert health == {"allowed": False, "consent_id": None, "reason": "consent does not cover health"}

        withdrawn = client.post(f"/consents/{consent['id']}/withdraw", json={"withdrawn_by": "guardian"}, headers=BBA)
        assert withdrawn.status_code == 200, withdrawn.text
        assert withdrawn.json()["status"] == "withdrawn" and withdrawn.json()["withdrawn_by"] == "guardian"
        refused = client.post("/decisions", json=ASK, headers=BBA).json()
        assert refused == {"allowed": False, "consent_id": None, "reason": "consent was withdrawn"}
        again = client.post(f"/consents/{consent['id']}/withdraw", json={"withdrawn_by": "guardian"}, headers=BBA)
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"

        detail = client.get(f"/consents/{consent['id']}", headers=BBA).json()
        assert detail["child_personnummer"] == NORMALIZED
        assert [entry["action"] for entry in detail["history"]] == ["granted", "withdrawn"]
        assert detail["history"][0]["by"] == "guardian,guardian"
        assert detail["child_view"]["agrees"] is True and len(detail["grantors"]) == 2
        assert client.get("/consents/nope", headers=BBA).status_code == 404

        # The service also consumes its own events; replaying the grant must not undo the withdrawal.
        def own_events_applied() -> bool:
            with Session(_engine(client)) as session:
                consumers = set(session.exec(select(ProcessedMessage.consumer)).all())
            return {"consent-consent-granted-own", "consent-consent-withdrawn-own"} <= consumers

        wait_for(own_events_applied, message="own consent events consumed")
        assert client.post("/decisions", json=ASK, headers=BBA).json()["reason"] == "consent was withdrawn"


def test_broken_rules_are_problems_naming_the_field_and_write_nothing(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with serve(_settings(tmp_path, nats_url)) as client:
        _seed(client)
        cases = [
            ({"grantors": GUARDIANS[:1]}, "grantors"),
            ({"receiving_orgs": ["school"]}, "receiving_orgs"),
            ({"receiving_orgs": []}, "receiving_orgs"),
            ({"categories": []}, "categories"),
            ({"child_view": {"heard": False}}, "child_view.note"),
            ({"valid_until": CONSENT["valid_from"]}, "valid_until"),
            ({"child": {"personnummer": PERSONNUMMER[:-1] + "0"}}, "child.personnummer"),
            ({"valid_from": "0001-01-01T00:30:00+01:00"}, "valid_from"),  # would overflow turning into UTC
            ({"valid_until": "9999-12-31T23:59:59-05:00"}, "valid_until"),
        ]
        for changes, field in cases:
            response = client.post("/consents", json={**CONSENT, **changes}, headers=BBA)
            assert response.status_code == 422, (changes, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["errors"][0]["field"] == field
            assert NORMALIZED[:8] not in response.text
        with Session(_engine(client)) as session:
            for table in (Consent, ConsentHistory, ConsentGrant, OutboxMessage):
                assert session.exec(select(func.count()).select_from(table)).one() == 0


def test_authentication_and_authorisation(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with serve(_settings(tmp_path, nats_url)) as client:
        _seed(client)
        assert client.post("/consents", json=CONSENT).status_code == 401
        garbage = client.post("/consents", json=CONSENT, headers={"Authorization": "Bearer nonsense"})
        assert garbage.status_code == 401
        assert garbage.headers["content-type"] == "application/problem+json"
        assert client.post("/consents", json=CONSENT, headers=bearer("region", "bba")).status_code == 403
        for role in ("professional", "auditor", "admin"):
            assert client.post("/consents", json=CONSENT, headers=bearer("school", role)).status_code == 403
        # An integration acts only for the units it is scoped to; this one is scoped to none, so not to the case's.
        assert client.post("/consents", json=CONSENT, headers=bearer("school", "integration")).status_code == 403
        with Session(_engine(client)) as session:
            assert session.exec(select(func.count()).select_from(Consent)).one() == 0
        consent_id = client.post("/consents", json=CONSENT, headers=BBA).json()["id"]
        # Reading a consent needs a relation to the child's case; an auditor reads decisions and the trail instead.
        for role in ("professional", "admin", "auditor", "coordinator", "integration"):
            assert client.get(f"/consents/{consent_id}", headers=bearer("school", role)).status_code == 403
        for role in ("professional", "admin", "auditor"):
            assert client.get("/replicas", headers=bearer("school", role)).status_code == 403
        assert client.get("/replicas", headers=bearer("school", "bba")).status_code == 200
        assert client.get("/disclosure-decisions", headers=bearer("school", "auditor")).status_code == 200
        assert client.get("/audit", headers=bearer("school", "auditor")).status_code == 200
        assert client.post(f"/consents/{consent_id}/withdraw", json={"withdrawn_by": "guardian"},
                           headers=bearer("school", "professional")).status_code == 403
        assert client.post("/decisions", json=ASK).status_code == 401
        assert client.post("/decisions", json=ASK, headers=bearer("region", "bba")).status_code == 403
        # Any role that discloses may ask (the answer carries no identity); auditors and admins disclose nothing.
        for role in ("professional", "coordinator", "integration"):
            assert client.post("/decisions", json=ASK, headers=bearer("school", role)).json()["allowed"] is True
        for role in ("admin", "auditor"):
            assert client.post("/decisions", json=ASK, headers=bearer("school", role)).status_code == 403


def test_idempotency_key_returns_first_result_and_writes_once(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with serve(_settings(tmp_path, nats_url)) as client:
        _seed(client)
        headers = {**BBA, "Idempotency-Key": "consent-1"}
        first = client.post("/consents", json=CONSENT, headers=headers)
        second = client.post("/consents", json=CONSENT, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert client.post("/consents", json={**CONSENT, "purpose": "sip"}, headers=headers).status_code == 409

        withdraw = {**BBA, "Idempotency-Key": "withdraw-1"}
        url = f"/consents/{first.json()['id']}/withdraw"
        once = client.post(url, json={"withdrawn_by": "guardian"}, headers=withdraw)
        twice = client.post(url, json={"withdrawn_by": "guardian"}, headers=withdraw)
        assert once.status_code == twice.status_code == 200 and once.json() == twice.json()
        assert twice.headers.get("Idempotent-Replayed") == "true"
        with Session(_engine(client)) as session:
            assert session.exec(select(func.count()).select_from(Consent)).one() == 1
            assert session.exec(select(func.count()).select_from(ConsentHistory)).one() == 2
            subjects = sorted(session.exec(select(OutboxMessage.nats_subject)).all())
        assert subjects == ["inbox.region.school.consent.consent.granted.v1",
                            "inbox.region.school.consent.consent.withdrawn.v1",
                            "school.consent.consent.granted.v1", "school.consent.consent.withdrawn.v1"]


def test_reads_and_writes_are_audited_with_the_consents_purpose(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with serve(_settings(tmp_path, nats_url)) as client:
        _seed(client)
        consent_id = client.post("/consents", json=CONSENT, headers=BBA).json()["id"]
        client.post("/consents", json={**CONSENT, "purpose": "sip"}, headers=BBA)
        assert client.get(f"/consents/{consent_id}", headers=BBA).status_code == 200
        auditor = bearer("school", "auditor", "auditor.eva")
        assert client.get(f"/consents/{consent_id}", headers=auditor).status_code == 403
        cases = client.get(f"/cases/{CONSENT['case_id']}/consents", headers=BBA).json()
        assert [c["purpose"] for c in cases] == ["sip", "coordination_meeting"]
        client.post("/decisions", json=ASK, headers=bearer("school", "professional", "mentor.anna"))
        client.post(f"/consents/{consent_id}/withdraw", json={"withdrawn_by": "child"}, headers=BBA)
        client.get("/replicas", headers=BBA)
        with Session(_engine(client)) as session:
            rows = session.exec(select(AuditRecord.action, AuditRecord.user, AuditRecord.purpose,
                                       AuditRecord.outcome, AuditRecord.case_id)).all()
            refusals = session.exec(select(AuditRecord.user, AuditRecord.action, AuditRecord.case_id,
                                           AuditRecord.reason).where(AuditRecord.outcome == "denied")).all()
        case = CONSENT["case_id"]
        assert ("consent.grant", "bba.norrskolan", "coordination_meeting", "ok", case) in rows
        assert ("consent.read", "bba.norrskolan", "coordination_meeting", "ok", case) in rows
        # The auditor's attempt is recorded as refused, and is no read.
        assert refusals == [("auditor.eva", "case.read", case, "no-relation")]
        assert not [row for row in rows if row[1] == "auditor.eva" and row[3] == "ok"]
        assert ("consent.list", "bba.norrskolan", "sip", "ok", case) in rows
        assert ("consent.list", "bba.norrskolan", "coordination_meeting", "ok", case) in rows
        assert ("consent.decide", "mentor.anna", "coordination_meeting", "allowed", case) in rows
        assert ("consent.withdraw", "bba.norrskolan", "coordination_meeting", "ok", case) in rows
        assert ("consent.replicas.read", "bba.norrskolan", None, "ok", None) in rows


def test_nothing_that_leaves_the_organisation_identifies_the_child(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with serve(_settings(tmp_path, nats_url)) as client:
        _seed(client)
        headers = {**BBA, "Idempotency-Key": "no-identity"}
        consent_id = client.post("/consents", json=CONSENT, headers=headers).json()["id"]
        client.post(f"/consents/{consent_id}/withdraw", json={"withdrawn_by": "guardian"}, headers=BBA)
        with Session(_engine(client)) as session:
            rows = session.exec(select(OutboxMessage.nats_subject, OutboxMessage.body)).all()
            stored_responses = [str(r) for r in session.exec(select(IdempotencyRecord.response)).all()]
        bodies = [body for _, body in rows]
        own = [body for subject, body in rows if subject.startswith("school.")]
        across = [body for subject, body in rows if subject.startswith("inbox.")]
        # Inside: this organisation's own key and case. Across: the pair's key, the consent as subject, no case.
        assert len(own) == len(across) == 2 and all(KEY.encode() in body for body in own)
        region_key = pair_key(NORMALIZED, ConsentSettings(org="school").pair_secret("region"))
        for body in across:
            envelope = Envelope.from_bytes(body)
            assert envelope.data["child_key"] == region_key and envelope.data["case_id"] is None
            assert envelope.subject == consent_id and KEY.encode() not in body
            assert CONSENT["case_id"].encode() not in body
        secrets = [NORMALIZED, PERSONNUMMER, NORMALIZED[2:], "Anna", "Bertil", "skolsköterskan"]
        for text in [body.decode() for body in bodies] + stored_responses:
            for secret in secrets:
                assert secret not in text
