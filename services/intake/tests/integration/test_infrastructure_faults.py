"""Intake's consumer and API when its database cannot be written: retried while it lasts, 503 meanwhile,
and only a message's own merits make it poison.

The fault is SQLite's own read-only refusal (``PRAGMA query_only`` on the service's single
connection), because tests run as root and root ignores a read-only file mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
from fastapi.testclient import TestClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlmodel import Session, select

from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import ConcernRouted
from tillsammans_common.messaging.consumer import stream_configs
from tillsammans_common.models import DeadLetter
from tillsammans_common.testing import bearer, count_rows, engine_of, wait_for
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app
from tillsammans_intake.models import InboxItem

CONCERN = {"unit_id": "norrskolan", "child": {"personnummer": "20130412-1237", "name": "Test"},
           "wheel_areas": ["trygghet"], "description": "x"}
SUBJECT = "school.intake.concern.routed.v1"
CONSUMER = "intake-bba-inbox"
MAX_DELIVERIES = 3


def read_only(engine: Engine, on: bool) -> None:
    """Make the service's database refuse (or accept again) every write."""
    with engine.connect() as connection:
        connection.exec_driver_sql(f"PRAGMA query_only={1 if on else 0}")


@contextmanager
def failures(engine: Engine) -> Iterator[list[str]]:
    """The class name of each database error on ``engine`` while the block runs."""
    seen: list[str] = []

    def record(context: ExceptionContext) -> None:
        seen.append(type(context.original_exception).__name__)

    event.listen(engine, "handle_error", record)
    try:
        yield seen
    finally:
        event.remove(engine, "handle_error", record)


async def _publish(nats_url: str, body: bytes, msg_id: str) -> None:
    client = await nats.connect(nats_url)
    await client.jetstream().publish(SUBJECT, body, stream="EVENTS", headers={"Nats-Msg-Id": msg_id})
    await client.close()


def _settings(tmp_path: Path, nats_url: str) -> IntakeSettings:
    return IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path, max_deliveries=MAX_DELIVERIES,
                          redelivery_backoff_seconds=[0.05], infrastructure_retry_initial_seconds=0.05,
                          infrastructure_retry_max_seconds=0.2)


def test_api_answers_503_and_readiness_goes_red_while_the_database_is_read_only(tmp_path: Path,
                                                                                 nats_url: str) -> None:
    with TestClient(create_app(_settings(tmp_path, nats_url)), raise_server_exceptions=False) as client:
        read_only(engine_of(client), True)
        ready = client.get("/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["database"] == "not writable" and ready.json()["broker"] == "ok"
        refused = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional"))
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["Retry-After"] == "5"
        problem = refused.json()
        assert problem["type"].endswith("/service-unavailable") and "again" in problem["detail"]
        # Neither the statement nor its parameters (a personnummer) are echoed.
        assert "INSERT" not in refused.text and "20130412" not in refused.text and "readonly" not in refused.text

        read_only(engine_of(client), False)
        assert client.get("/health/ready").status_code == 200
        created = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional"))
        assert created.status_code == 201, created.text
        wait_for(lambda: count_rows(client, InboxItem) == 1, message="the concern routed to the BBA's inbox")


def test_a_poison_message_is_dead_lettered_after_its_merit_attempts_only(tmp_path: Path, nats_url: str) -> None:
    with TestClient(create_app(_settings(tmp_path, nats_url))) as client:
        engine = engine_of(client)
        # A routed event for a concern that does not exist breaks the inbox's foreign key: poison.
        orphan = Envelope.wrap(ConcernRouted(concern_id="missing", case_id="c", unit_id="norrskolan",
                                             bba_user="bba.norrskolan"), source="/orgs/school/intake", subject="c")
        with failures(engine) as seen:
            read_only(engine, True)
            asyncio.run(_publish(nats_url, orphan.to_bytes(), "orphan-1"))
            # Tried far more often than max_deliveries, each time refused by the read-only database.
            wait_for(lambda: seen.count("OperationalError") >= 2 * MAX_DELIVERIES + 2, timeout=30,
                     message="attempts refused by the read-only database")
            assert count_rows(client, DeadLetter) == 0
            read_only(engine, False)
            wait_for(lambda: count_rows(client, DeadLetter) == 1, timeout=30, message="the dead letter")
            # Dead-lettered after exactly max_deliveries attempts that failed on its own merits.
            assert seen.count("IntegrityError") == MAX_DELIVERIES
        with Session(engine) as session:
            letter = session.exec(select(DeadLetter)).one()
        assert letter.event_id == orphan.id
        assert letter.deliveries > MAX_DELIVERIES + 1  # more deliveries than the broker used to allow
        assert count_rows(client, InboxItem) == 0


async def _durable_with_old_limit(nats_url: str) -> None:
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        for config in stream_configs("school"):
            await js.add_stream(config=config)
        # What an older version created: the broker itself gave up after max_deliveries + 1.
        await js.add_consumer("EVENTS", ConsumerConfig(
            durable_name=CONSUMER, deliver_subject=connection.new_inbox(), deliver_group=CONSUMER,
            filter_subject=SUBJECT, deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30, max_deliver=MAX_DELIVERIES + 1, max_ack_pending=256))
    finally:
        await connection.close()


async def _max_deliver(nats_url: str) -> int | None:
    connection = await nats.connect(nats_url)
    try:
        return (await connection.jetstream().consumer_info("EVENTS", CONSUMER)).config.max_deliver
    finally:
        await connection.close()


def test_an_existing_durable_with_a_delivery_limit_is_updated_at_start_up(tmp_path: Path, nats_url: str) -> None:
    asyncio.run(_durable_with_old_limit(nats_url))
    assert asyncio.run(_max_deliver(nats_url)) == MAX_DELIVERIES + 1
    with TestClient(create_app(_settings(tmp_path, nats_url))) as client:
        assert asyncio.run(_max_deliver(nats_url)) == -1
        created = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional"))
        assert created.status_code == 201, created.text
        wait_for(lambda: count_rows(client, InboxItem) == 1, message="the updated durable still delivers")
