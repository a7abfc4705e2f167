"""Once a withdrawal has answered, nothing under that consent leaves: raced against meeting calls, many times.

What left is observed where it arrives: region's INBOX stream, whose server timestamps are compared
with the moment the withdrawal answered (same machine, same clock).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import nats
from fastapi.testclient import TestClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlmodel import Session, col, func, select

from tillsammans_common.events import Envelope
from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import Federation, bearer, engine_of, wait_for
from tillsammans_consent.models import DecisionOutcome, DisclosureDecision
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app

SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
ROUNDS = 12
# Short, so a withdrawal that must wait out a permit the held-back relay never used waits briefly.
LEASE = 1.0
INVITATIONS = "inbox.region.school.meetings.invitation.sent.v1"
Factory = Callable[..., Any]


@contextmanager
def _school_and_region(federation: Federation, with_consent: Factory
                       ) -> Iterator[tuple[TestClient, TestClient, TestClient]]:
    school = MeetingsSettings(**federation.settings("school"))  # type: ignore[arg-type]
    region = MeetingsSettings(**federation.settings("region"))  # type: ignore[arg-type]
    with (TestClient(create_app(region)) as region_client, TestClient(create_app(school)) as school_client,
          with_consent(school_client, disclosure_lease_seconds=LEASE) as consent_client):
        yield school_client, consent_client, region_client


async def _arrivals(federation: Federation) -> list[tuple[str | None, datetime]]:
    """(consent id, server time stored) of every invitation from school in region's INBOX stream."""
    connection = await nats.connect(federation.url, user="region", password=federation.passwords["region"])
    try:
        js = connection.jetstream()
        subscription = await js.pull_subscribe(INVITATIONS, durable="race-observer", stream="INBOX")
        found: list[tuple[str | None, datetime]] = []
        while True:
            try:
                messages = await subscription.fetch(256, timeout=0.5)
            except nats.errors.TimeoutError:
                return found
            for message in messages:
                found.append((Envelope.from_bytes(message.data).consentid, message.metadata.timestamp))
    finally:
        await connection.close()


async def _observe(federation: Federation) -> None:
    """A durable that never acknowledges, so every invitation stays in the stream for the check."""
    connection = await nats.connect(federation.url, user="region", password=federation.passwords["region"])
    try:
        await connection.jetstream().add_consumer("INBOX", ConsumerConfig(
            durable_name="race-observer", filter_subject=INVITATIONS, deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT))
    finally:
        await connection.close()


class _Caller(threading.Thread):
    """Calls meetings again and again until stopped; ``started`` is set after the first few calls."""

    def __init__(self, school: TestClient, body: dict[str, Any], *, ready_after: int) -> None:
        super().__init__()
        self.school, self.body, self.ready_after = school, body, ready_after
        self.calls = 0
        self.outcomes: list[int] = []
        self.stop, self.started = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            response = self.school.post("/meetings", json=self.body, headers=SCHOOL_BBA)
            self.outcomes.append(response.status_code)
            self.calls += 1
            if self.calls >= self.ready_after:
                self.started.set()


def _unsettled_rows(school: TestClient) -> int:
    with Session(engine_of(school)) as session:
        return int(session.exec(select(func.count()).select_from(OutboxMessage).where(
            col(OutboxMessage.published_at).is_(None), col(OutboxMessage.withheld_at).is_(None))).one())


def test_nothing_leaves_under_a_consent_once_its_withdrawal_has_answered(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    with _school_and_region(federation, with_consent) as (school, consent_service, _region):
        seed(school)  # the child's case at school's meetings and consent; bba.norrskolan calls and withdraws
        asyncio.run(_observe(federation))
        answered: dict[str, datetime] = {}
        outcomes: list[int] = []
        relay = school.app.state.infra.relay  # type: ignore[attr-defined]
        for round_number in range(ROUNDS):
            consent = grant(school, receiving=["region"])
            # Every other round the relay is held back until the withdrawal has answered, so invitations
            # queued under the live consent are still waiting to leave: the check as they leave must stop them.
            held_back = round_number % 2 == 1
            if held_back:
                school.portal.call(relay.stop)  # type: ignore[union-attr]
            caller = _Caller(school, meeting_body("region"), ready_after=1 + round_number % 3)
            caller.start()
            assert caller.started.wait(10)
            withdrawn = consent_service.post(f"/consents/{consent.consent_id}/withdraw",
                                             json={"withdrawn_by": "guardian"}, headers=SCHOOL_BBA)
            answered[consent.consent_id] = datetime.now(UTC)
            assert withdrawn.status_code == 200, withdrawn.text
            # Keep calling for a moment after the answer: those must all be refused or withheld.
            calls_at_answer = caller.calls
            wait_for(lambda: caller.calls >= calls_at_answer + 2,  # noqa: B023 (waited on within the round)
                     message="more calls after the withdrawal")
            caller.stop.set()
            caller.join(10)
            outcomes.extend(caller.outcomes)
            if held_back:
                school.portal.call(relay.start)  # type: ignore[union-attr]

        wait_for(lambda: _unsettled_rows(school) == 0, timeout=30, message="the relay to send or withhold every row")
        arrivals = asyncio.run(_arrivals(federation))
        late = [(consent_id, at) for consent_id, at in arrivals if consent_id in answered and at > answered[consent_id]]
        assert late == [], f"{len(late)} invitations left after their consent's withdrawal had answered"

        assert set(outcomes) <= {201, 403}
        # The race was real: invitations did leave before withdrawals, calls after them were refused, and
        # invitations queued under a live consent were withheld as they were about to leave.
        assert len(arrivals) >= ROUNDS // 2 and 403 in outcomes and 201 in outcomes
        with Session(engine_of(school)) as session:
            withheld = session.exec(select(OutboxMessage.withheld_reason).where(
                col(OutboxMessage.withheld_at).is_not(None))).all()
        assert len(withheld) >= ROUNDS // 2 and set(withheld) == {"consent was withdrawn"}
        with Session(engine_of(consent_service)) as session:
            denials = session.exec(select(func.count()).select_from(DisclosureDecision).where(
                DisclosureDecision.outcome == DecisionOutcome.DENY)).one()
        assert denials >= ROUNDS
