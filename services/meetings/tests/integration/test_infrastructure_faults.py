"""Region's database cannot be written for longer than the broker used to wait: nothing is lost or doubled.

The fault is SQLite's own read-only refusal (``PRAGMA query_only`` on the service's single
connection: every write fails with "attempt to write a readonly database", reads still work), because
tests run as root and root ignores a read-only file mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nats
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlmodel import Session, select

from tillsammans_common.models import ConsentGrant, DeadLetter
from tillsammans_common.testing import Federation, bearer, count_rows, engine_of, wait_for
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import ReceivedInvitation

SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
# Received invitations are read by the receiving organisation's coordinators (not its BBA).
REGION_COORDINATOR = bearer("region", "coordinator", "samordnare.bvc")
Factory = Callable[..., Any]
MAX_DELIVERIES = 2
INVITATIONS = 3


def read_only(engine: Engine, on: bool) -> None:
    """Make the service's database refuse (or accept again) every write."""
    with engine.connect() as connection:
        connection.exec_driver_sql(f"PRAGMA query_only={1 if on else 0}")


@contextmanager
def failed_writes(engine: Engine) -> Iterator[list[str]]:
    """Statements that failed on ``engine`` while the block runs, as the first word of each."""
    failed: list[str] = []

    def record(context: ExceptionContext) -> None:
        failed.append((context.statement or "").split(" ", 1)[0].upper())

    event.listen(engine, "handle_error", record)
    try:
        yield failed
    finally:
        event.remove(engine, "handle_error", record)


async def _pending(federation: Federation, consumer: str) -> tuple[int, int]:
    connection = await nats.connect(federation.url, user="region", password=federation.passwords["region"])
    try:
        info = await connection.jetstream().consumer_info("INBOX", consumer)
        return info.num_pending or 0, info.num_ack_pending or 0
    finally:
        await connection.close()


def test_invitations_accepted_while_region_cannot_write_are_applied_once_when_it_can(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    school_settings = MeetingsSettings(**federation.settings("school"))  # type: ignore[arg-type]
    # Small limits, so the old behaviour (give up after MAX_DELIVERIES + 1 deliveries) would show at once.
    region_settings = MeetingsSettings(**federation.settings("region"),  # type: ignore[arg-type]
                                       max_deliveries=MAX_DELIVERIES, redelivery_backoff_seconds=[0.05],
                                       infrastructure_retry_initial_seconds=0.05, infrastructure_retry_max_seconds=0.2)
    with (TestClient(create_app(school_settings)) as school, with_consent(school),
          TestClient(create_app(region_settings), raise_server_exceptions=False) as region):
        seed(school)
        grant(school, receiving=["region"])
        wait_for(lambda: count_rows(region, ConsentGrant) == 1, message="the consent replicated to region")
        assert region.get("/health/ready").status_code == 200

        engine = engine_of(region)
        with failed_writes(engine) as failed:
            read_only(engine, True)
            ready = region.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["database"] == "not writable"
            assert ready.json()["broker"] == "ok" and ready.headers["Retry-After"]
            listed = region.get("/received-invitations", headers=REGION_COORDINATOR)  # a read is audited: it writes
            assert listed.status_code == 503, listed.text
            assert listed.headers["content-type"] == "application/problem+json"
            assert "INSERT" not in listed.text and listed.headers["Retry-After"]

            meetings = []
            for _ in range(INVITATIONS):
                called = school.post("/meetings", json=meeting_body("region"), headers=SCHOOL_BBA)
                assert called.status_code == 201, called.text
                meetings.append(called.json()["id"])
            # Every invitation has been tried more often than the broker used to deliver it before
            # giving up (MAX_DELIVERIES + 1), and fails on an INSERT: the refusal is the database's.
            wait_for(lambda: failed.count("INSERT") >= INVITATIONS * (MAX_DELIVERIES + 3), timeout=30,
                     message="repeated attempts while the database is read-only")
            assert count_rows(region, DeadLetter) == 0
            assert count_rows(region, ReceivedInvitation) == 0
            assert region.get("/health/ready").status_code == 503

            read_only(engine, False)
            wait_for(lambda: count_rows(region, ReceivedInvitation) == INVITATIONS, timeout=30,
                     message="every invitation applied once the database is writable")
            assert region.get("/health/ready").status_code == 200
            assert region.get("/received-invitations", headers=REGION_COORDINATOR).status_code == 200

        wait_for(lambda: asyncio.run(_pending(federation, "meetings-invitations-received")) == (0, 0),
                 message="region's consumer to have acknowledged everything")
        with Session(engine) as session:
            received = session.exec(select(ReceivedInvitation.meeting_id)).all()
        assert sorted(received) == sorted(meetings)  # each exactly once
        assert count_rows(region, DeadLetter) == 0
