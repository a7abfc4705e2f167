"""Consent as the law has it, through HTTP on a real nats-server and SQLite file.

Who consents (the child alone from the mature age; the child's no), the GDPR legal basis, the text
to print and sign, amendment as new revisions (what decisions name, withdrawal across revisions)
and every purpose of the process through the disclosure gate.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from tillsammans_common.messaging.gate import DisclosureAsk, DisclosureVerdict, Phase, ask
from tillsammans_common.models import AuditRecord, ConsentGrant, OutboxMessage
from tillsammans_common.personnummer import child_key, luhn_check_digit
from tillsammans_common.testing import bearer, seed_case
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.models import Consent, ConsentHistory, DisclosureDecision

Serve = Callable[[ConsentSettings], AbstractContextManager[TestClient]]
NOW = datetime.now(UTC)
BBA = bearer("school", "bba", "bba.norrskolan")
MOTHER = {"role": "guardian", "name": "Anna Vårdnadsdóttir", "given_at": NOW.isoformat()}
FATHER = {"role": "guardian", "name": "Bertil Vårdnadsson", "given_at": NOW.isoformat()}
CHILD = {"role": "child", "name": "Cecilia", "given_at": NOW.isoformat()}


def pnr(age: int, serial: str = "238") -> str:
    """A personnummer of a child who turned ``age`` some months ago."""
    born = date(NOW.year - age, 1, 1) - timedelta(days=40)
    return f"{born:%Y%m%d}-{serial}{luhn_check_digit(born.strftime('%y%m%d') + serial)}"


def body(case_id: str, personnummer: str, **changes: Any) -> dict[str, Any]:
    """A consent for a child under joint custody, both guardians and the child heard, with ``changes``."""
    return {
        "case_id": case_id, "child": {"personnummer": personnummer}, "custody": "joint", "grantors": [MOTHER, FATHER],
        "child_view": {"heard": True, "agrees": True, "note": "Vill att mentorn är med."},
        "receiving_orgs": ["region"], "categories": ["concern", "mapping_summary"], "purpose": "coordination_meeting",
        "valid_from": (NOW - timedelta(minutes=5)).isoformat(),
        "valid_until": (NOW + timedelta(days=90)).isoformat(), **changes,
    }


def _engine(client: TestClient) -> Engine:
    return client.app.state.infra.engine  # type: ignore[attr-defined,no-any-return]


def _case(client: TestClient, personnummer: str) -> str:
    case_id = str(uuid.uuid4())
    seed_case(_engine(client), client.app.state.settings,  # type: ignore[attr-defined]
              case_id=case_id, personnummer=personnummer)
    return case_id


def _count(client: TestClient, table: type) -> int:
    with Session(_engine(client)) as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def _settings(tmp_path: Path, nats_url: str, **extra: Any) -> ConsentSettings:
    return ConsentSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data", **extra)


def _gate(nats_url: str, phase: Phase, asks: list[DisclosureAsk]) -> list[DisclosureVerdict]:
    async def run() -> list[DisclosureVerdict]:
        connection = await nats.connect(nats_url)
        try:
            return await ask(connection, "school", phase, asks)
        finally:
            await connection.close()

    return asyncio.run(run())


def _ask(key: str, consent_id: str | None, categories: list[str], *, receiving_org: str = "region",
         purpose: str = "coordination_meeting") -> DisclosureAsk:
    return DisclosureAsk(event_id=str(uuid.uuid4()), event_type="meetings.invitation.sent.v1", consent_id=consent_id,
                         receiving_org=receiving_org, child_ref=key, categories=categories, purpose=purpose,
                         requested_by="bba.norrskolan", requested_role="bba")


# Who consents, through HTTP: (age, grantors, child_view) -> status and the field a refusal names.
WHO = [
    (9, [MOTHER, FATHER], {"heard": True, "agrees": False, "note": "Vill inte."}, 201, None),
    (9, [MOTHER], {"heard": True, "agrees": True}, 422, "grantors"),
    (16, [CHILD], None, 201, None),
    (16, [MOTHER, FATHER], None, 422, "grantors"),
    (16, [CHILD], {"heard": True, "agrees": False}, 422, "child_view.agrees"),
    (16, [MOTHER, FATHER, CHILD], {"heard": True, "agrees": False}, 422, "child_view.agrees"),
]


def test_who_consents_through_http(tmp_path: Path, nats_url: str, serve: Serve) -> None:
    with serve(_settings(tmp_path, nats_url)) as client:
        for index, (age, grantors, view, status, field) in enumerate(WHO):
            personnummer = pnr(age, serial=f"{230 + index}")
            case_id = _case(client, personnummer)
            before = _count(client, Consent), _count(client, OutboxMessage), _count(client, ConsentGrant)
            response = client.post("/consents", json=body(case_id, personnummer, grantors=grantors, child_view=view),
                                   headers=BBA)
            assert response.status_code == status, (age, grantors, view, response.text)
            if field is not None:
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["errors"][0]["field"] == field
                after = _count(client, Consent), _count(client, OutboxMessage), _count(client, ConsentGrant)
                assert after == before, "a refused consent writes nothing"
                continue
            detail = client.get(f"/consents/{response.json()['id']}", headers=BBA).json()
            assert detail["grantor_roles"] == sorted({g["role"] for g in grantors})
            # The younger child's view (here a no) is recorded and shown, on the record and in the text.
            assert detail["child_view"] == (None if view is None else {"note": None, "agrees": None, **view})
            if view is not None and view.get("agrees") is False:
                assert "barnet är negativt" in detail["text"]


def test_the_legal_basis_and_the_text_to_sign(tmp_path: Path, nats_url: str, serve: Serve) -> None:
    settings = _settings(tmp_path, nats_url, legal_basis="legal_obligation", legal_basis_note="SoL 2 kap. 7 §")
    with serve(settings) as client:
        personnummer = pnr(9)
        case_id = _case(client, personnummer)
        default = client.post("/consents", json=body(case_id, personnummer), headers=BBA)
        assert default.status_code == 201, default.text
        assert default.json()["legal_basis"] == "legal_obligation"
        assert default.json()["legal_basis_note"] == "SoL 2 kap. 7 §"
        given = client.post("/consents", headers=BBA, json=body(
            case_id, personnummer, purpose="sip", categories=["identity", "health"],
            receiving_orgs=["region", "social"], legal_basis={"basis": "public_task", "note": "HSL 16 kap. 4 §"}))
        assert given.status_code == 201, given.text
        for wrong, field in (({"basis": "because"}, "basis"), ({"basis": "consent", "extra": 1}, "extra")):
            refused = client.post("/consents", json=body(case_id, personnummer, legal_basis=wrong), headers=BBA)
            assert refused.status_code == 422 and field in refused.text, refused.text
        consent_id = given.json()["id"]

        detail = client.get(f"/consents/{consent_id}", headers=BBA)
        assert detail.status_code == 200
        assert detail.json()["legal_basis"] == "public_task" and detail.json()["revision"] == 1
        text = client.get(f"/consents/{consent_id}/text", headers=BBA)
        assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
        assert text.text == detail.json()["text"]
        for expected in ("school lämnar ut", "till region och social", "vem barnet är (namn och personnummer)",
                         "uppgifter om barnets hälsa", "samordnad individuell plan (SIP)", "Giltigt från",
                         "uppgift av allmänt intresse", "HSL 16 kap. 4 §", "Anna Vårdnadsdóttir, vårdnadshavare",
                         "Bertil Vårdnadsson, vårdnadshavare", "när som helst återkallas", "Underskrift",
                         personnummer.replace("-", ""), "barnet är positivt"):
            assert expected in text.text, expected
        # As every read of the consent: for the case's people only, and audited.
        assert client.get(f"/consents/{consent_id}/text", headers=bearer("school", "professional")).status_code == 403
        assert client.get(f"/consents/{consent_id}/text", headers=bearer("school", "auditor")).status_code == 403
        with Session(_engine(client)) as session:
            reads = session.exec(select(AuditRecord).where(col(AuditRecord.action) == "consent.text.read")).all()
        assert [(r.user, r.record_id, r.purpose) for r in reads] == [("bba.norrskolan", consent_id, "sip")]


def test_amendments_are_revisions_and_withdrawal_stops_them_all(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    # An amendment, like a withdrawal, waits out the permits given under the old revision: keep them short.
    settings = _settings(tmp_path, nats_url, disclosure_lease_seconds=1.0)
    with serve(settings) as client:
        personnummer = pnr(9)
        case_id = _case(client, personnummer)
        key = child_key(personnummer.replace("-", ""), settings.child_key_secret.get_secret_value())
        first = client.post("/consents", json=body(case_id, personnummer), headers=BBA).json()
        assert first["revision"] == 1 and first["amends"] is None
        permit = _gate(nats_url, Phase.QUEUE, [_ask(key, None, ["concern", "mapping_summary"])])[0]
        assert permit.allowed and permit.consent_id == first["id"] and permit.consent_version == 1

        amend = {k: v for k, v in body(case_id, personnummer).items()
                 if k in ("grantors", "child_view", "receiving_orgs", "categories", "valid_from", "valid_until")}
        # Bad amendments: 422 naming the field (or unknown fields refused), nothing written, the consent stands.
        before = _count(client, Consent), _count(client, ConsentHistory), _count(client, OutboxMessage)
        for wrong, field in (({"grantors": [MOTHER]}, "grantors"), ({"categories": []}, "categories"),
                             ({"receiving_orgs": ["school"]}, "receiving_orgs"), ({"purpose": "sip"}, "purpose"),
                             ({"valid_until": amend["valid_from"]}, "valid_until")):
            refused = client.post(f"/consents/{first['id']}/amend", json={**amend, **wrong}, headers=BBA)
            assert refused.status_code == 422, (wrong, refused.text)
            assert field in refused.text
        assert (_count(client, Consent), _count(client, ConsentHistory), _count(client, OutboxMessage)) == before
        for role in ("professional", "auditor"):
            assert client.post(f"/consents/{first['id']}/amend", json=amend,
                               headers=bearer("school", role)).status_code == 403

        # Narrowed: the mapping summary is no longer covered; the old revision opens nothing any more.
        narrowed = client.post(f"/consents/{first['id']}/amend", json={**amend, "categories": ["concern"]},
                               headers=BBA)
        assert narrowed.status_code == 201, narrowed.text
        second = narrowed.json()
        assert second["revision"] == 2 and second["amends"] == first["id"] and second["categories"] == ["concern"]
        old = client.get(f"/consents/{first['id']}", headers=BBA).json()
        assert old["status"] == "withdrawn" and old["amended_by"] == second["id"]
        assert [entry["action"] for entry in old["history"]] == ["granted", "amended"]
        again = client.post(f"/consents/{first['id']}/amend", json=amend, headers=BBA)
        assert again.status_code == 409 and second["id"] in again.text
        verdicts = _gate(nats_url, Phase.SEND, [
            _ask(key, first["id"], ["concern"]),              # queued under the old revision: withheld
            _ask(key, second["id"], ["concern", "mapping_summary"]),  # outside the narrowed terms
            _ask(key, second["id"], ["concern"]),
        ])
        assert [v.allowed for v in verdicts] == [False, False, True]
        assert verdicts[0].reason == "consent was withdrawn"
        assert verdicts[2].consent_id == second["id"] and verdicts[2].consent_version == 1

        # Widened: another receiver and category, as the guardians agreed to it again.
        widened = client.post(f"/consents/{second['id']}/amend", headers=BBA, json={
            **amend, "receiving_orgs": ["region", "social"], "categories": ["concern", "health"]})
        assert widened.status_code == 201, widened.text
        third = widened.json()
        assert third["revision"] == 3 and third["amends"] == second["id"]
        assert _gate(nats_url, Phase.QUEUE, [_ask(key, None, ["health"], receiving_org="social")])[0].allowed

        # Withdrawn through the first revision's id: the one in force is withdrawn, and every revision is closed.
        withdrawn = client.post(f"/consents/{first['id']}/withdraw", json={"withdrawn_by": "guardian"}, headers=BBA)
        assert withdrawn.status_code == 200, withdrawn.text
        assert withdrawn.json()["id"] == third["id"] and withdrawn.json()["status"] == "withdrawn"
        assert client.post(f"/consents/{third['id']}/withdraw", json={"withdrawn_by": "guardian"},
                           headers=BBA).status_code == 409
        closed = _gate(nats_url, Phase.SEND, [_ask(key, revision["id"], ["concern"])
                                              for revision in (first, second, third)])
        assert [v.allowed for v in closed] == [False, False, False]
        assert not _gate(nats_url, Phase.QUEUE, [_ask(key, None, ["concern"])])[0].allowed
        listed = client.get(f"/cases/{case_id}/consents", headers=BBA).json()
        assert sorted((c["revision"], c["status"]) for c in listed) == [(1, "withdrawn"), (2, "withdrawn"),
                                                                       (3, "withdrawn")]

        # Every decision names the revision (consent id) and version it rested on.
        with Session(_engine(client)) as session:
            decisions = session.exec(select(DisclosureDecision).order_by(col(DisclosureDecision.decided_at))).all()
            assert all(d.consent_id in (first["id"], second["id"], third["id"]) for d in decisions if d.consent_id)
            assert {(d.consent_id, d.consent_version, d.outcome.value) for d in decisions if d.outcome == "permit"} == {
                (first["id"], 1, "permit"), (second["id"], 1, "permit"), (third["id"], 1, "permit")}
            # Receivers learn each step: the old revision withdrawn, the new one granted (same provenance as ever).
            subjects = [row.nats_subject for row in session.exec(select(OutboxMessage).order_by(col(OutboxMessage.seq)))
                        if row.nats_subject.startswith("inbox.region.")]
        assert subjects == ["inbox.region.school.consent.consent.granted.v1",
                            "inbox.region.school.consent.consent.withdrawn.v1",
                            "inbox.region.school.consent.consent.granted.v1",
                            "inbox.region.school.consent.consent.withdrawn.v1",
                            "inbox.region.school.consent.consent.granted.v1",
                            "inbox.region.school.consent.consent.withdrawn.v1"]


@pytest.mark.parametrize("purpose", ["coordination_meeting", "sip", "follow_up"])
def test_every_purpose_of_the_process_opens_the_gate_for_itself_only(
        purpose: str, tmp_path: Path, nats_url: str, serve: Serve) -> None:
    settings = _settings(tmp_path, nats_url)
    with serve(settings) as client:
        personnummer = pnr(9)
        case_id = _case(client, personnummer)
        key = child_key(personnummer.replace("-", ""), settings.child_key_secret.get_secret_value())
        created = client.post("/consents", json=body(case_id, personnummer, purpose=purpose), headers=BBA)
        assert created.status_code == 201, created.text
        others = [p for p in ("coordination_meeting", "sip", "follow_up") if p != purpose]
        verdicts = _gate(nats_url, Phase.QUEUE, [_ask(key, None, ["concern"], purpose=p) for p in [purpose, *others]])
        assert [v.allowed for v in verdicts] == [True, False, False]
        assert verdicts[1].reason == "consent is for another purpose"
        # The decision request over HTTP knows every purpose too.
        decided = client.post("/decisions", headers=BBA, json={
            "disclosing_org": "school", "receiving_org": "region", "child_key": key, "categories": ["concern"],
            "purpose": purpose})
        assert decided.status_code == 200 and decided.json()["allowed"] is True
