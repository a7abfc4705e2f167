"""School and region, each with its own meetings service and database, over one broker with an account each."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tillsammans_common.auth import Principal, Role
from tillsammans_common.events.meetings import ChildIdentity, InvitationSent
from tillsammans_common.messaging.egress import disclose, prepare_disclosure
from tillsammans_common.messaging.gate import DisclosureVerdict
from tillsammans_common.models import DeadLetter, OutboxMessage
from tillsammans_common.personnummer import pair_key
from tillsammans_common.testing import (
    Federation,
    bearer,
    count_rows,
    engine_of,
    stream_containing,
    tables_containing,
    wait_for,
)
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import Invitation, Meeting, ReceivedConsultation, ReceivedInvitation

SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
# Received invitations name a child with no case at region yet: its coordinators read them, not its BBA.
REGION_COORDINATOR = bearer("region", "coordinator", "samordnare.bvc")
Factory = Callable[..., Any]


@contextmanager
def _orgs(federation: Federation, with_consent: Factory,
          **region_overrides: Any) -> Iterator[tuple[TestClient, TestClient]]:
    school = MeetingsSettings(**federation.settings("school"))  # type: ignore[arg-type]
    region = MeetingsSettings(**{**federation.settings("region"), **region_overrides})  # type: ignore[arg-type]
    with (TestClient(create_app(school)) as school_client, with_consent(school_client),
          TestClient(create_app(region)) as region_client):
        yield school_client, region_client


def _received(region: TestClient, meeting_id: str) -> list[dict[str, Any]]:
    response = region.get("/received-invitations", headers=REGION_COORDINATOR)
    assert response.status_code == 200, response.text
    return [item for item in response.json() if item["meeting_id"] == meeting_id]


def test_invitation_reaches_region_once_and_withdrawal_marks_it_and_stops_new_ones(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, withdraw: Factory,
        meeting_body: Factory) -> None:
    with _orgs(federation, with_consent) as (school, region):
        seed(school)  # the child's case, at school's meetings and consent (region learns of no case)
        consent = grant(school, receiving=["region"])
        called = school.post("/meetings", json=meeting_body("region"), headers=SCHOOL_BBA)
        assert called.status_code == 201, called.text
        meeting = called.json()

        found = wait_for(lambda: _received(region, meeting["id"]), message="the invitation at region")
        assert len(found) == 1
        summary = found[0]
        assert summary["from_org"] == "school" and summary["consent_id"] == consent.consent_id
        assert summary["status"] == "received" and "child" not in summary
        assert region.get("/received-invitations", headers=bearer("region", "bba", "bba.bvc")).status_code == 403
        detail = region.get(f"/received-invitations/{summary['id']}", headers=REGION_COORDINATOR).json()
        assert detail["child"] == {"personnummer": "201304121237", "name": "Testbarn Testsson",
                                   "protected_identity": False}
        assert detail["concern_summary"] == "Ökad frånvaro, oro i hemmet."
        assert detail["id"] == meeting["invitations"][0]["id"]
        # Stored exactly once, announced once inside region, and nothing looped back to school.
        wait_for(lambda: count_rows(region, OutboxMessage) == 1, message="region's InvitationReceived")
        with Session(engine_of(region)) as session:
            assert session.exec(select(OutboxMessage.nats_subject)).all() == [
                "region.meetings.invitation.received.v1"]
        assert count_rows(region, ReceivedInvitation) == 1
        assert count_rows(school, ReceivedInvitation) == 0

        withdraw(school, consent)
        url = f"/received-invitations/{summary['id']}"
        withdrawn = wait_for(lambda: (d := region.get(url, headers=REGION_COORDINATOR).json())["status"] == "withdrawn"
                             and d, message="region to mark the invitation withdrawn")
        assert withdrawn["child"] is None and withdrawn["concern_summary"] is None
        assert withdrawn["withdrawn_at"] is not None
        wait_for(lambda: school.get(f"/meetings/{meeting['id']}", headers=SCHOOL_BBA).json()
                 ["invitations"][0]["status"] == "consent_withdrawn", message="school to mark its invitation")
        # Kept: that an invitation arrived and when (public records are archived). Gone: the child and the
        # free text, from every table of region's (dead letters included) and from its INBOX stream.
        with Session(engine_of(region)) as session:
            kept = session.exec(select(ReceivedInvitation)).one()
        assert (kept.meeting_id, kept.status, kept.received_at is not None) == (meeting["id"], "withdrawn", True)
        settings: MeetingsSettings = school.app.state.settings  # type: ignore[attr-defined]
        region_key = pair_key("201304121237", settings.pair_secret("region"))
        identifying = ["20130412", "Testbarn", "Ökad frånvaro", region_key]
        assert tables_containing(engine_of(region), *identifying) == []
        assert asyncio.run(stream_containing(federation.url, user="region", password=federation.passwords["region"],
                                             stream="INBOX", needles=["201304121237", "Testbarn"])) == []
        # Region's receipt reaches school, whose consent shows that region removed what it held.
        receivers = wait_for(lambda: (r := school.app.state.test_consent.get(  # type: ignore[attr-defined]
            f"/consents/{consent.consent_id}", headers=SCHOOL_BBA).json()["receivers"])[0]["state"] == "purged" and r,
            message="region's withdrawal receipt at school")
        assert receivers[0]["org"] == "region" and receivers[0]["purged_records"] == 1

        again = school.post("/meetings", json=meeting_body("region"), headers=SCHOOL_BBA)
        assert again.status_code == 403
        assert again.json()["type"].endswith("/consent-required")
        assert "withdrawn" in again.json()["detail"]
        assert count_rows(school, Meeting) == 1


def test_without_consent_for_social_nothing_is_written_and_nothing_arrives(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    with _orgs(federation, with_consent) as (school, region):
        seed(school)
        grant(school, receiving=["region"])
        outbox_before = count_rows(school, OutboxMessage)
        refused = school.post("/meetings", json=meeting_body("region", "social"), headers=SCHOOL_BBA)
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("/consent-required")
        assert refused.json()["org"] == "social"
        assert count_rows(school, Meeting) == 0
        assert count_rows(school, Invitation) == 0
        assert count_rows(school, OutboxMessage) == outbox_before

        # A later meeting still reaches region, and the refused one never did.
        ok = school.post("/meetings", json=meeting_body("region"), headers=SCHOOL_BBA)
        assert ok.status_code == 201
        wait_for(lambda: _received(region, ok.json()["id"]), message="the later invitation at region")
        assert count_rows(region, ReceivedInvitation) == 1


def test_anonymous_consultation_reaches_region_without_identity(federation: Federation, with_consent: Factory) -> None:
    with _orgs(federation, with_consent) as (school, region):
        question = "Hur kan vi stötta en elev med ökande frånvaro och oro hemma?"
        sent = school.post("/consultations", headers=SCHOOL_BBA, json={
            "invited_orgs": ["region"], "age_band": "10-12", "wheel_areas": ["trygghet", "hemmet"],
            "question": question, "proposed_at": "2030-02-01T09:00:00+01:00"})
        assert sent.status_code == 201, sent.text

        received = wait_for(lambda: region.get("/consultations/received",
                                               headers=bearer("region", "professional")).json(),
                            message="the consultation at region")
        assert len(received) == 1
        item = received[0]
        assert item["id"] == sent.json()["id"] and item["from_org"] == "school"
        assert item["age_band"] == "10-12" and item["wheel_areas"] == ["trygghet", "hemmet"]
        assert item["question"] == question
        assert datetime.fromisoformat(item["proposed_at"]) == datetime(2030, 2, 1, 8, tzinfo=UTC)
        with Session(engine_of(region)) as session:
            row = session.exec(select(ReceivedConsultation)).one()
        assert "20130412" not in row.model_dump_json() and "Testbarn" not in row.model_dump_json()


def test_region_refuses_an_invitation_its_own_replica_does_not_cover(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    # Defence in depth: school's replica has the consent, region's never got it.
    # Parking off: the uncovered invitation is dead-lettered at once rather than waiting for a consent.
    with _orgs(federation, with_consent, max_deliveries=2, redelivery_backoff_seconds=[0.05],
               parking_timeout_seconds=0) as (school, region):
        seed(school)
        grant(school, receiving=["region"], share=False)
        called = school.post("/meetings", json=meeting_body("region"), headers=SCHOOL_BBA)
        assert called.status_code == 201

        def dead_letters() -> list[DeadLetter]:
            with Session(engine_of(region)) as session:
                return list(session.exec(select(DeadLetter)).all())

        letters = wait_for(dead_letters, message="region to dead-letter the uncovered invitation")
        assert letters[0].event_type == "meetings.invitation.sent.v1"
        assert letters[0].reason == "Retry: no consent recorded"
        assert count_rows(region, ReceivedInvitation) == 0


def test_region_refuses_an_invitation_whose_child_is_not_the_consented_child(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory) -> None:
    with _orgs(federation, with_consent) as (school, region):
        seed(school)
        consent = grant(school, receiving=["region"])
        settings: MeetingsSettings = school.app.state.settings  # type: ignore[attr-defined]
        other_child = "20100101-0006"
        consented_pair_key = pair_key("201304121237", settings.pair_secret("region"))
        assert pair_key("201001010006", settings.pair_secret("region")) != consented_pair_key
        # A sender bug or forgery: the consented child's key, another child's identity.
        forged = InvitationSent(
            invitation_id=str(uuid.uuid4()), meeting_id=str(uuid.uuid4()), kind="samverkansmote",
            scheduled_at=datetime.now(UTC), child_key=consented_pair_key,
            child=ChildIdentity(personnummer=other_child, name="Annat Barn"), flagged_areas=["trygghet"],
            concern_summary="...", contact_user="bba.norrskolan")
        # Written past the first decision (as a buggy sender would); the relay still asks the consent
        # service, which permits it (the key is the consented child's), and region must catch it.
        disclosure = prepare_disclosure(forged, settings=settings, to_org="region", subject=forged.meeting_id,
                                        principal=Principal(org="school", user="bba", role=Role.BBA),
                                        child_ref=consent.child_key)
        verdict = DisclosureVerdict(decision_id="none", event_id=disclosure.envelope_id, allowed=True,
                                    consent_id=consent.consent_id, reason="test", decided_at=datetime.now(UTC))
        with Session(engine_of(school)) as session:
            disclose(session, disclosure, verdict, settings=settings)
            session.commit()

        def dead_letters() -> list[DeadLetter]:
            with Session(engine_of(region)) as session:
                return list(session.exec(select(DeadLetter)).all())

        letters = wait_for(dead_letters, message="region to reject the forged invitation")
        assert letters[0].reason.startswith("Reject: child key does not match")
        assert count_rows(region, ReceivedInvitation) == 0
