"""Invitations both sides run, across three organisations on a real nats-server (decision 25).

School invites region and social services; region accepts and names who comes, social declines
with a reason; the answers travel back and school's meeting shows each. School moves the meeting
and then cancels it; both receivers end in the final state. A forged reply from social about
region's invitation is refused, and so is social posing as region or cancelling school's meeting at
region. Every calendar file parses and holds nothing about the child.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlmodel import Session, select

from tillsammans_common.events import Envelope, inbox_subject
from tillsammans_common.events.meetings import InvitationReplied, MeetingCancelled, Participant
from tillsammans_common.models import DeadLetter
from tillsammans_common.testing import Federation, bearer, count_rows, engine_of, tables_containing, wait_for
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import (
    Consultation,
    DisclosureReview,
    Invitation,
    Meeting,
    PlanItem,
    ReceivedConsultation,
    ReceivedInvitation,
)

SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
REGION_COORDINATOR = bearer("region", "coordinator", "samordnare.bvc")
SOCIAL_COORDINATOR = bearer("social", "coordinator", "samordnare.ifo")
# A named participant of region's (not a coordinator) fetches the calendar; a colleague not named may not.
REGION_PARTICIPANT = bearer("region", "professional", "lakare.bup")
REGION_OTHER = bearer("region", "professional", "annan.bup")
PARTICIPANTS = [{"role": "BUP-läkare", "user": "lakare.bup"}, {"role": "skolsköterska", "user": "ssk.bvc"}]
DECLINE_REASON = "Familjen har redan en pågående insats hos oss; vi avstår mötet."
ROOM = "Rum 12, Norrskolan"
# The child and the concern in every written form: none may be in a calendar file.
IDENTITY = ["201304121237", "20130412-1237", "130412-1237", "1304121237", "20130412", "Testbarn", "Testsson",
            "frånvaro", "oro i hemmet"]
Factory = Callable[..., Any]


@contextmanager
def _three(federation: Federation, with_consent: Factory) -> Iterator[tuple[TestClient, TestClient, TestClient]]:
    # Refusals are dead-lettered at once, so the forged reply's fate shows within the test.
    fast = {"max_deliveries": 2, "redelivery_backoff_seconds": [0.05], "parking_timeout_seconds": 0}
    settings = {org: MeetingsSettings(**federation.settings(org), **fast) for org in ("school", "region", "social")}
    with (TestClient(create_app(settings["school"])) as school, with_consent(school),
          TestClient(create_app(settings["region"])) as region, TestClient(create_app(settings["social"])) as social):
        yield school, region, social


def _received(client: TestClient, headers: dict[str, str], meeting_id: str) -> dict[str, Any] | None:
    response = client.get("/received-invitations", headers=headers)
    assert response.status_code == 200, response.text
    found = [item for item in response.json() if item["meeting_id"] == meeting_id]
    return found[0] if found else None


def _meeting(school: TestClient, meeting_id: str) -> dict[str, Any]:
    response = school.get(f"/meetings/{meeting_id}", headers=SCHOOL_BBA)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _calendar(client: TestClient, url: str, headers: dict[str, str]) -> tuple[Calendar, Any, bytes]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    body = response.content
    # Nothing about the child, in any written form, anywhere in the file.
    assert [needle for needle in IDENTITY if needle.encode() in body] == []
    calendar = Calendar.from_ical(body)
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return calendar, events[0], body


async def _publish(federation: Federation, org: str, subject: str, envelope: Envelope) -> None:
    client = await nats.connect(federation.url, user=org, password=federation.passwords[org])
    try:
        await client.jetstream().publish(subject, envelope.to_bytes(), headers={"Nats-Msg-Id": envelope.id}, timeout=5)
    finally:
        await client.close()


def test_invite_accept_decline_reschedule_cancel_across_three_organisations(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    with _three(federation, with_consent) as (school, region, social):
        seed(school)
        grant(school, receiving=["region", "social"])
        called = school.post("/meetings", json=meeting_body("region", "social"), headers=SCHOOL_BBA)
        assert called.status_code == 201, called.text
        meeting_id = called.json()["id"]
        sent = {invitation["to_org"]: invitation["id"] for invitation in called.json()["invitations"]}

        at_region = wait_for(lambda: _received(region, REGION_COORDINATOR, meeting_id), message="region's invitation")
        at_social = wait_for(lambda: _received(social, SOCIAL_COORDINATOR, meeting_id), message="social's invitation")
        assert (at_region["id"], at_social["id"]) == (sent["region"], sent["social"])
        assert at_region["answer"] is None and at_region["sequence"] == 0

        # --- the invited organisations answer --------------------------------------------------------
        accepted = region.post(f"/received-invitations/{sent['region']}/accept", json={"participants": PARTICIPANTS},
                               headers=REGION_COORDINATOR)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["answer"] == "accepted" and accepted.json()["participants"] == PARTICIPANTS
        # A decline needs a reason, and an accept names who comes: 422 naming the field, nothing sent.
        no_reason = social.post(f"/received-invitations/{sent['social']}/decline", json={}, headers=SOCIAL_COORDINATOR)
        assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
        nobody = region.post(f"/received-invitations/{sent['region']}/accept", json={"participants": []},
                             headers=REGION_COORDINATOR)
        assert nobody.status_code == 422 and nobody.json()["errors"][0]["field"] == "participants"
        # Only the receiving organisation's coordinators and integrations answer.
        assert social.post(f"/received-invitations/{sent['social']}/decline", json={"reason": "x"},
                           headers=bearer("social", "professional", "kurator")).status_code == 403
        declined = social.post(f"/received-invitations/{sent['social']}/decline", json={"reason": DECLINE_REASON},
                               headers=SOCIAL_COORDINATOR)
        assert declined.status_code == 200, declined.text

        def both_answers() -> dict[str, dict[str, Any]] | None:
            answers = {i["to_org"]: i for i in _meeting(school, meeting_id)["invitations"]}
            return answers if all(i["answer"] for i in answers.values()) else None

        answers = wait_for(both_answers, message="both answers at school")
        assert answers["region"]["answer"] == "accepted" and answers["region"]["participants"] == PARTICIPANTS
        assert answers["region"]["answer_reason"] is None and answers["region"]["answered_at"] is not None
        assert answers["social"]["answer"] == "declined" and answers["social"]["answer_reason"] == DECLINE_REASON
        assert answers["social"]["participants"] == []

        # --- a forged reply: social, with its real credentials, "declines" region's invitation ------------
        forged = InvitationReplied(invitation_id=sent["region"], meeting_id=meeting_id, inviting_org="school",
                                   replying_org="social", answer="declined", reason="Vi kommer inte",
                                   participants=[Participant(role="kurator", user="kurator")], sequence=99,
                                   replied_at=datetime.now(UTC))
        envelope = Envelope.wrap(forged, source="/orgs/social/meetings", subject=meeting_id)
        asyncio.run(_publish(federation, "social", inbox_subject("school", "social", forged.type), envelope))

        def dead_letter(client: TestClient, event_id: str) -> Callable[[], DeadLetter | None]:
            def found() -> DeadLetter | None:
                with Session(engine_of(client)) as session:
                    return session.exec(select(DeadLetter).where(DeadLetter.event_id == event_id)).first()
            return found

        letter = wait_for(dead_letter(school, envelope.id), message="school to refuse the forged reply")
        assert letter.event_type == "meetings.invitation.replied.v1"
        assert "not sent to the replying organisation" in letter.reason
        # Social again, now claiming to be region in the reply itself: the subject proves who sent it.
        posing = forged.model_copy(update={"replying_org": "region"})
        envelope = Envelope.wrap(posing, source="/orgs/social/meetings", subject=meeting_id)
        asyncio.run(_publish(federation, "social", inbox_subject("school", "social", posing.type), envelope))
        letter = wait_for(dead_letter(school, envelope.id), message="school to refuse the reply posing as region")
        assert "replying_org names another organisation than the sender" in letter.reason
        # And social cancelling school's meeting at region: only the inviter moves or cancels it.
        fake_cancel = MeetingCancelled(invitation_id=sent["region"], meeting_id=meeting_id, inviting_org="social",
                                       invited_org="region", sequence=99, cancelled_at=datetime.now(UTC))
        envelope = Envelope.wrap(fake_cancel, source="/orgs/social/meetings", subject=meeting_id)
        asyncio.run(_publish(federation, "social", inbox_subject("region", "social", fake_cancel.type), envelope))
        letter = wait_for(dead_letter(region, envelope.id), message="region to refuse social's cancel")
        assert "the sender did not send this invitation" in letter.reason
        untouched = _received(region, REGION_COORDINATOR, meeting_id)
        assert untouched is not None and untouched["cancelled_at"] is None and untouched["sequence"] == 0
        region_answer = {i["to_org"]: i for i in _meeting(school, meeting_id)["invitations"]}["region"]
        assert region_answer["answer"] == "accepted" and region_answer["participants"] == PARTICIPANTS

        # --- calendars before any change: the same UID on both sides, REQUEST, sequence 0 -------------------
        _, school_event, _ = _calendar(school, f"/meetings/{meeting_id}/calendar.ics", SCHOOL_BBA)
        cal, region_event, _ = _calendar(region, f"/received-invitations/{sent['region']}/calendar.ics",
                                         REGION_PARTICIPANT)
        assert str(cal["method"]) == "REQUEST" and str(region_event["uid"]) == str(school_event["uid"])
        assert int(region_event["sequence"]) == 0 and str(region_event["summary"]) == "Samverkansmöte"
        assert str(region_event["organizer"]) == "urn:tillsammans:org:school"
        assert region.get(f"/received-invitations/{sent['region']}/calendar.ics",
                          headers=REGION_OTHER).status_code == 403

        # --- the inviter moves the meeting, then cancels it ----------------------------------------------
        later = (datetime.now(UTC) + timedelta(days=9)).replace(microsecond=0)
        moved = school.put(f"/meetings/{meeting_id}/schedule", json={"scheduled_at": later.isoformat(),
                                                                      "location": ROOM}, headers=SCHOOL_BBA)
        assert moved.status_code == 200, moved.text
        assert moved.json()["sequence"] == 1 and moved.json()["location"] == ROOM
        # A room that names the child would leave the organisation: refused, and nothing changes.
        named = school.put(f"/meetings/{meeting_id}/schedule", json={"scheduled_at": later.isoformat(),
                                                                      "location": "Hos Testbarn Testsson"},
                           headers=SCHOOL_BBA)
        assert named.status_code == 422 and named.json()["errors"][0]["field"] == "location"
        cal, school_event, _ = _calendar(school, f"/meetings/{meeting_id}/calendar.ics", SCHOOL_BBA)
        assert int(school_event["sequence"]) == 1 and str(school_event["location"]) == ROOM
        assert school_event.decoded("dtstart") == later

        cancelled = school.post(f"/meetings/{meeting_id}/cancel", json={"reason": "Vårdnadshavarna vill skjuta upp"},
                                headers=SCHOOL_BBA)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled" and cancelled.json()["sequence"] == 2
        # Cancelled is final: no more changes at the inviter (409).
        assert school.post(f"/meetings/{meeting_id}/cancel", json={"reason": "igen"},
                           headers=SCHOOL_BBA).status_code == 409
        assert school.put(f"/meetings/{meeting_id}/schedule", json={"scheduled_at": later.isoformat()},
                          headers=SCHOOL_BBA).status_code == 409

        for client, headers in ((region, REGION_COORDINATOR), (social, SOCIAL_COORDINATOR)):
            final = wait_for(lambda c=client, h=headers: (r := _received(c, h, meeting_id)) and r["sequence"] == 2
                             and r, message=f"{client.app.state.settings.org} to apply the cancel")  # type: ignore[attr-defined]
            assert final["cancelled_at"] is not None and final["location"] == ROOM
            assert datetime.fromisoformat(final["scheduled_at"]) == later
            assert final["status"] == "received"  # a cancel forgets nothing held under the consent
        # ... and the invited organisations can no longer answer.
        assert region.post(f"/received-invitations/{sent['region']}/decline", json={"reason": "Ändrat"},
                           headers=REGION_COORDINATOR).status_code == 409

        for client, url, headers in (
                (school, f"/meetings/{meeting_id}/calendar.ics", SCHOOL_BBA),
                (region, f"/received-invitations/{sent['region']}/calendar.ics", REGION_COORDINATOR),
                (social, f"/received-invitations/{sent['social']}/calendar.ics", SOCIAL_COORDINATOR)):
            cal, event, _ = _calendar(client, url, headers)
            assert str(cal["method"]) == "CANCEL" and str(event["status"]) == "CANCELLED"
            assert int(event["sequence"]) == 2 and str(event["uid"]) == str(school_event["uid"])

        # --- each side's database holds what it should and nothing more -------------------------------
        assert count_rows(school, ReceivedInvitation) == 0
        for receiver in (region, social):
            assert count_rows(receiver, ReceivedInvitation) == 1
            for table in (Meeting, Invitation, PlanItem, DisclosureReview, Consultation, ReceivedConsultation):
                assert count_rows(receiver, table) == 0
        # The inviter keeps the answers; the cancel reason stayed at home.
        assert tables_containing(engine_of(school), DECLINE_REASON, "lakare.bup") != []
        assert tables_containing(engine_of(region), "Vårdnadshavarna vill skjuta upp") == []
        assert tables_containing(engine_of(social), "Vårdnadshavarna vill skjuta upp") == []
        # One receiver never learns the other's answer.
        assert tables_containing(engine_of(region), DECLINE_REASON) == []
        assert tables_containing(engine_of(social), "lakare.bup", "ssk.bvc") == []
