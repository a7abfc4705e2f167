"""The consent an invitation rests on follows the meeting's kind (decision 24): SIP needs sip, follow-up follow_up.

The sender's consent service is asked for that purpose, its decisions record it, and the receiver
checks it again; a sender cannot carry a SIP invitation on a consent given for a samverkansmöte.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tillsammans_common.events import Envelope, inbox_subject
from tillsammans_common.events.meetings import InvitationSent
from tillsammans_common.models import DeadLetter, OutboxMessage
from tillsammans_common.testing import Federation, bearer, count_rows, engine_of, wait_for
from tillsammans_consent.models import DisclosureDecision
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import Invitation, Meeting, ReceivedInvitation

from .test_hostile_members import _consent, _covered, _invitation, _key, _meetings, _publish, _send

SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
REGION_COORDINATOR = bearer("region", "coordinator", "samordnare.bvc")
Factory = Any


@contextmanager
def _school(federation: Federation, with_consent: Factory) -> Iterator[TestClient]:
    with TestClient(create_app(MeetingsSettings(**federation.settings("school")))) as school, with_consent(school):
        yield school


@pytest.mark.parametrize(("kind", "consent_purpose", "status"), [
    ("samverkansmote", "coordination_meeting", 201),
    ("samverkansmote", "sip", 403),
    ("sip", "coordination_meeting", 403),
    ("sip", "sip", 201),
    ("follow_up", "coordination_meeting", 403),
    ("follow_up", "sip", 403),
    ("follow_up", "follow_up", 201),
])
def test_an_invitation_needs_a_consent_for_its_kinds_purpose(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, meeting_body: Factory,
        kind: str, consent_purpose: str, status: int) -> None:
    with _school(federation, with_consent) as school:
        seed(school)
        grant(school, receiving=["region"], purpose=consent_purpose)
        outbox_before = count_rows(school, OutboxMessage)
        called = school.post("/meetings", json=meeting_body("region", kind=kind), headers=SCHOOL_BBA)
        assert called.status_code == status, called.text
        if status == 403:
            assert called.json()["type"].endswith("/consent-required")
            assert called.json()["org"] == "region"
            assert count_rows(school, Meeting) == 0 and count_rows(school, OutboxMessage) == outbox_before
        else:
            assert called.json()["purpose"] == consent_purpose
        # The consent service was asked for the kind's purpose, and its decision says so.
        consent: TestClient = school.app.state.test_consent  # type: ignore[attr-defined]
        with Session(engine_of(consent)) as session:
            asked = {row.purpose for row in session.exec(select(DisclosureDecision)).all()}
        assert asked == {{"samverkansmote": "coordination_meeting"}.get(kind, kind)}


def test_a_sip_invitation_reaches_region_under_the_sip_consent_only(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    with (_school(federation, with_consent) as school,
          TestClient(create_app(MeetingsSettings(**federation.settings("region")))) as region):
        seed(school)
        grant(school, receiving=["region"])  # a samverkansmöte's consent: not enough for a SIP
        refused = school.post("/meetings", json=meeting_body("region", kind="sip"), headers=SCHOOL_BBA)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"].endswith("/consent-required")

        sip = grant(school, receiving=["region"], purpose="sip")
        called = school.post("/meetings", json=meeting_body("region", kind="sip"), headers=SCHOOL_BBA)
        assert called.status_code == 201, called.text
        assert called.json()["invitations"][0]["consent_id"] == sip.consent_id

        def received() -> list[ReceivedInvitation]:
            with Session(engine_of(region)) as session:
                return list(session.exec(select(ReceivedInvitation)).all())

        stored = wait_for(received, message="the SIP invitation at region")
        assert [(row.kind, row.consent_id, row.meeting_id) for row in stored] == [
            ("sip", sip.consent_id, called.json()["id"])]
        detail = region.get(f"/received-invitations/{stored[0].id}", headers=REGION_COORDINATOR).json()
        assert detail["kind"] == "sip" and detail["child"]["personnummer"] == "201304121237"
        assert count_rows(school, Invitation) == 1


def _raw(federation: Federation, sender: str, to: str, data: dict[str, Any], consent_id: str) -> Envelope:
    """Publish invitation data as ``sender`` would, without the typed model (so it can say anything)."""
    envelope = Envelope(source=f"/orgs/{sender}/meetings", type=InvitationSent.type, subject=str(uuid.uuid4()),
                        consentid=consent_id, data=data)
    asyncio.run(_publish(federation, sender, inbox_subject(to, sender, InvitationSent.type), envelope.to_bytes(),
                         envelope.id))
    return envelope


def test_a_member_cannot_carry_a_sip_invitation_on_a_samverkansmote_consent(federation: Federation) -> None:
    # A hostile member, with its real broker credentials, past its own consent service.
    with _meetings(federation, "region") as (region,):
        key = _key(region)
        consent = _consent(str(uuid.uuid4()), key, disclosing_org="school", receiving_orgs=["region"])
        _send(federation, "school", "region", consent, consent_id=consent.consent_id)
        wait_for(lambda: _covered(region, "school", "region"), message="school's consent at region")

        def letter_of(envelope: Envelope) -> DeadLetter:
            def found() -> DeadLetter | None:
                with Session(engine_of(region)) as session:
                    return session.exec(select(DeadLetter).where(DeadLetter.event_id == envelope.id)).first()
            return wait_for(found, message="the forged invitation to be refused")

        sip = _invitation(key).model_copy(update={"kind": "sip", "purpose": "sip"})
        honest_sip, _ = _send(federation, "school", "region", sip, consent_id=consent.consent_id)
        assert letter_of(honest_sip).reason == "Retry: consent is for another purpose"

        data = _invitation(key).model_dump(mode="json")
        # Claims the samverkansmöte's purpose for a SIP meeting: the contract refuses it outright.
        claimed = _raw(federation, "school", "region", {**data, "kind": "sip", "purpose": "coordination_meeting"},
                       consent.consent_id)
        assert letter_of(claimed).reason == "ValidationError"
        # Leaves the purpose out (as a sender from before decision 24 would): read as the kind's, not covered.
        silent = _raw(federation, "school", "region", {**{k: v for k, v in data.items() if k != "purpose"},
                                                       "kind": "sip"}, consent.consent_id)
        assert letter_of(silent).reason == "Retry: consent is for another purpose"
        assert count_rows(region, ReceivedInvitation) == 0

        # The same samverkansmöte invitation without a purpose field (an older sender) is received.
        older = _raw(federation, "school", "region", {k: v for k, v in data.items() if k != "purpose"},
                     consent.consent_id)
        wait_for(lambda: count_rows(region, ReceivedInvitation) == 1, message="the older sender's invitation")
        with Session(engine_of(region)) as session:
            assert session.exec(select(DeadLetter).where(DeadLetter.event_id == older.id)).first() is None


def test_the_invitation_contract_ties_purpose_to_kind() -> None:
    base = {k: v for k, v in _invitation("key").model_dump(mode="json").items() if k != "purpose"}
    assert InvitationSent.model_validate({**base, "kind": "follow_up", "purpose": "follow_up"}).disclosure_purpose() \
        == "follow_up"
    assert InvitationSent.model_validate({**base, "kind": "sip"}).disclosure_purpose() == "sip"
    for forged in ({"kind": "sip", "purpose": "coordination_meeting"}, {"kind": "samverkansmote", "purpose": "sip"},
                   {"kind": "party", "purpose": "coordination_meeting"}, {"kind": "sip", "purpose": ""}):
        with pytest.raises(ValueError):
            InvitationSent.model_validate({**base, **forged})
