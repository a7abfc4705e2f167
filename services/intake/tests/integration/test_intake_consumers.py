"""Intake's consumer: a redelivered event counts once; a poison message becomes a dead letter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import ConcernRouted
from tillsammans_common.models import DeadLetter, OutboxMessage
from tillsammans_common.testing import bearer, wait_for
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app
from tillsammans_intake.models import InboxItem

CONCERN = {"unit_id": "norrskolan", "child": {"personnummer": "20130412-1237", "name": "Test"},
           "wheel_areas": ["trygghet"], "description": "x"}


async def _publish(nats_url: str, subject: str, body: bytes, msg_id: str) -> None:
    client = await nats.connect(nats_url)
    await client.jetstream().publish(subject, body, stream="EVENTS", headers={"Nats-Msg-Id": msg_id})
    await client.close()


def _count(client: TestClient, model: type) -> int:
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_the_same_event_delivered_twice_is_applied_once(tmp_path: Path, nats_url: str) -> None:
    settings = IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        created = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional")).json()
        wait_for(lambda: _count(client, InboxItem) == 1, message="first delivery")
        # A relay that crashed after publishing but before marking the row sends the event again,
        # possibly after the stream's duplicate window: the consumer must still apply it once.
        with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
            original = session.exec(select(OutboxMessage).where(
                OutboxMessage.nats_subject == "school.intake.concern.routed.v1")).one()
        assert Envelope.from_bytes(original.body).subject == created["case_id"]
        for attempt in range(2):
            asyncio.run(_publish(nats_url, original.nats_subject, original.body, f"replay-{attempt}"))
        # A marker event published after the replays: once it is applied, the replays were seen.
        marker = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional")).json()
        wait_for(lambda: _count(client, InboxItem) == 2, message="marker delivered")
        with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
            concern_ids = session.exec(select(InboxItem.concern_id)).all()
        assert sorted(concern_ids) == sorted([created["id"], marker["id"]])


def test_a_malformed_message_is_dead_lettered_not_dropped(tmp_path: Path, nats_url: str) -> None:
    settings = IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        asyncio.run(_publish(nats_url, "school.intake.concern.routed.v1", b'{"not": "an event"}', "bad-1"))
        wait_for(lambda: _count(client, DeadLetter) == 1, message="dead letter")
        with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
            letter = session.exec(select(DeadLetter)).one()
        assert letter.consumer == "intake-bba-inbox"
        assert letter.body == b'{"not": "an event"}'
        assert letter.reason == "ValidationError"


def test_a_message_that_keeps_failing_is_dead_lettered_after_bounded_redelivery(tmp_path: Path,
                                                                                nats_url: str) -> None:
    settings = IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path, max_deliveries=3,
                              redelivery_backoff_seconds=[0.05])
    with TestClient(create_app(settings)) as client:
        # A routed event for a concern that does not exist violates the inbox's foreign key every time.
        orphan = Envelope.wrap(ConcernRouted(concern_id="missing", case_id="c", unit_id="norrskolan",
                                             bba_user="bba.norrskolan"), source=settings.source, subject="c")
        asyncio.run(_publish(nats_url, "school.intake.concern.routed.v1", orphan.to_bytes(), "orphan-1"))
        wait_for(lambda: _count(client, DeadLetter) == 1, message="dead letter after retries")
        with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
            letter = session.exec(select(DeadLetter)).one()
        assert letter.deliveries == 3
        assert letter.event_id == orphan.id
        assert _count(client, InboxItem) == 0
