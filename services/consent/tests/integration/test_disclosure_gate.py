"""The disclosure gate on a real nats-server: decision records, the lease a withdrawal waits out, the export."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from fastapi.testclient import TestClient
from sqlmodel import Session

from tillsammans_common.messaging.gate import DisclosureAsk, DisclosureVerdict, Phase, Settlement, ask, settle
from tillsammans_common.models import ConsentGrant
from tillsammans_common.personnummer import child_key
from tillsammans_common.testing import bearer, seed_case, wait_for
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.models import Consent, ConsentStatus, DisclosureDecision

Serve = Callable[[ConsentSettings], AbstractContextManager[TestClient]]
NOW = datetime.now(UTC)
PERSONNUMMER = "20130412-1237"
BBA = bearer("school", "bba", "bba.norrskolan")
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
AUDITOR = bearer("school", "auditor", "granskare.eva")
CONSENT: dict[str, Any] = {
    "case_id": "3b0f4c7e-2b7a-4c4e-9d55-6a0f0e1b2c3d", "child": {"personnummer": PERSONNUMMER}, "custody": "sole",
    "grantors": [{"role": "guardian", "name": "Anna Vårdnadsdóttir", "given_at": NOW.isoformat()}],
    "child_view": {"heard": True, "agrees": True}, "receiving_orgs": ["region"],
    "categories": ["identity", "concern", "mapping_summary"], "purpose": "coordination_meeting",
    "valid_from": (NOW - timedelta(minutes=5)).isoformat(), "valid_until": (NOW + timedelta(days=30)).isoformat(),
}


def _seed(client: TestClient) -> None:
    """The case CONSENT names: the child's case at Norrskolan, as intake's CaseRecorded tells consent."""
    seed_case(client.app.state.infra.engine, client.app.state.settings,  # type: ignore[attr-defined]
              case_id=CONSENT["case_id"], personnummer=PERSONNUMMER, unit_id="norrskolan", bba_user="bba.norrskolan")


def _ask(consent_id: str | None, *, child_ref: str, receiving_org: str = "region") -> DisclosureAsk:
    return DisclosureAsk(event_id=str(uuid.uuid4()), event_type="meetings.invitation.sent.v1", consent_id=consent_id,
                         receiving_org=receiving_org, child_ref=child_ref,
                         categories=["identity", "concern", "mapping_summary"], purpose="coordination_meeting",
                         requested_by="bba.norrskolan", requested_role="bba", trace_id=TRACE_ID)


def _gate(nats_url: str, phase: Phase, asks: list[DisclosureAsk]) -> list[DisclosureVerdict]:
    async def run() -> list[DisclosureVerdict]:
        connection = await nats.connect(nats_url)
        try:
            return await ask(connection, "school", phase, asks)
        finally:
            await connection.close()

    return asyncio.run(run())


def _settle(nats_url: str, settlements: dict[str, Settlement]) -> None:
    async def run() -> None:
        connection = await nats.connect(nats_url)
        try:
            await settle(connection, "school", settlements)
            await connection.flush()
        finally:
            await connection.close()

    asyncio.run(run())


def _settlement(client: TestClient, decision_id: str) -> str | None:
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        decision = session.get(DisclosureDecision, decision_id)
        return decision.settlement if decision else None


def _status(client: TestClient, consent_id: str) -> ConsentStatus:
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        consent = session.get(Consent, consent_id)
        assert consent is not None
        return consent.status


def test_a_withdrawal_answers_only_once_no_permitted_message_can_still_leave(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    settings = ConsentSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data")
    with serve(settings) as client:
        _seed(client)
        consent = client.post("/consents", json=CONSENT, headers=BBA).json()
        key = child_key("201304121237", settings.child_key_secret.get_secret_value())

        queued = _gate(nats_url, Phase.QUEUE, [_ask(None, child_ref=key)])[0]
        assert queued.allowed and queued.consent_id == consent["id"] and queued.consent_version == 1
        assert queued.lease_seconds == settings.disclosure_lease_seconds  # every permit is a lease
        assert queued.usable_until is not None and queued.usable_until < queued.decided_at + timedelta(
            seconds=queued.lease_seconds)  # the asker uses it for half the lease only
        permit = _gate(nats_url, Phase.SEND, [_ask(consent["id"], child_ref=key)])[0]
        assert permit.allowed and permit.lease_seconds == settings.disclosure_lease_seconds

        answered = threading.Event()
        responses: list[int] = []

        def withdraw() -> None:
            responses.append(client.post(f"/consents/{consent['id']}/withdraw", json={"withdrawn_by": "guardian"},
                                         headers=BBA).status_code)
            answered.set()

        withdrawing = threading.Thread(target=withdraw)
        withdrawing.start()
        wait_for(lambda: _status(client, consent["id"]) is ConsentStatus.WITHDRAWN, message="the withdrawal to commit")
        # Committed, yet not answered: the permit given before it may still be in flight.
        refused = _gate(nats_url, Phase.SEND, [_ask(consent["id"], child_ref=key)])[0]
        assert not refused.allowed and refused.reason == "consent was withdrawn"
        assert refused.consent_version == 2
        assert not answered.is_set()
        _settle(nats_url, {permit.decision_id: Settlement.SENT})
        wait_for(lambda: _settlement(client, permit.decision_id) == "sent", message="the report of the sent message")
        assert not answered.is_set()  # the permit given when it was queued is still open
        _settle(nats_url, {queued.decision_id: Settlement.EXPIRED})
        assert answered.wait(10) and responses == [200]
        withdrawing.join(10)

        records = client.get("/disclosure-decisions", params={"consent_id": consent["id"]}, headers=AUDITOR)
        assert records.status_code == 200, records.text
        rows = records.json()
        assert [(r["phase"], r["outcome"], r["consent_version"]) for r in rows] == [
            ("queue", "permit", 1), ("send", "permit", 1), ("send", "deny", 2)]
        first = rows[1]
        assert first["settlement"] == "sent" and first["settled_at"] is not None
        assert first["receiving_org"] == "region" and first["purpose"] == "coordination_meeting"
        assert first["categories"] == ["identity", "concern", "mapping_summary"]
        assert (first["requested_by"], first["requested_role"]) == ("bba.norrskolan", "bba")
        assert first["trace_id"] == TRACE_ID and first["case_id"] == CONSENT["case_id"]
        assert rows[2]["reason"] == "consent was withdrawn"

        export = client.get("/disclosure-decisions/export", params={"outcome": "deny"}, headers=AUDITOR)
        assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert [line["id"] for line in lines] == [rows[2]["id"]]
        assert "201304121237" not in export.text and "Anna" not in export.text

        for role in ("bba", "professional", "coordinator", "integration", "admin"):
            assert client.get("/disclosure-decisions", headers=bearer("school", role)).status_code == 403


def test_a_lost_report_makes_the_withdrawal_wait_out_the_lease_and_no_longer(
        tmp_path: Path, nats_url: str, serve: Serve) -> None:
    settings = ConsentSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data",
                               disclosure_lease_seconds=0.5)
    with serve(settings) as client:
        _seed(client)
        consent = client.post("/consents", json=CONSENT, headers=BBA).json()
        key = child_key("201304121237", settings.child_key_secret.get_secret_value())
        permit = _gate(nats_url, Phase.SEND, [_ask(consent["id"], child_ref=key)])[0]
        assert permit.allowed
        withdrawn = client.post(f"/consents/{consent['id']}/withdraw", json={"withdrawn_by": "guardian"}, headers=BBA)
        assert withdrawn.status_code == 200
        lease_end = permit.decided_at + timedelta(seconds=permit.lease_seconds)
        assert datetime.now(UTC) >= lease_end  # answered only once the unreported permit could no longer be used


def test_only_the_disclosers_own_matching_record_opens_the_gate(tmp_path: Path, nats_url: str, serve: Serve) -> None:
    settings = ConsentSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data")
    with serve(settings) as client:
        _seed(client)
        consent = client.post("/consents", json=CONSENT, headers=BBA).json()
        key = child_key("201304121237", settings.child_key_secret.get_secret_value())
        other_child = child_key("201001010006", settings.child_key_secret.get_secret_value())
        # A replica that another organisation sent, naming this child: it is not this organisation's consent.
        with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
            session.add(ConsentGrant(consent_id=str(uuid.uuid4()), case_id="x", child_key=key,
                                     disclosing_org="social", receiving_orgs=["social", "region"],
                                     categories=["identity", "concern", "mapping_summary"],
                                     purpose="coordination_meeting", valid_from=NOW - timedelta(days=1),
                                     valid_until=NOW + timedelta(days=1)))
            session.commit()
        verdicts = _gate(nats_url, Phase.SEND, [
            _ask(consent["id"], child_ref=other_child),       # another child under this consent
            _ask(consent["id"], child_ref=key, receiving_org="social"),  # a receiver it does not name
            _ask(None, child_ref=key),                        # a message about to leave without its consent
            _ask(str(uuid.uuid4()), child_ref=key),           # a consent that does not exist
            _ask(consent["id"], child_ref=key),               # the real thing
        ])
        assert [v.allowed for v in verdicts] == [False, False, False, False, True]
        assert verdicts[1].reason == "consent does not name the receiving organisation"
        assert all(v.reason == "no consent recorded" for v in (verdicts[0], verdicts[2], verdicts[3]))
