"""The outbox relay against a real nats-server: what it marks sent, and order after a failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faststream.nats import NatsBroker
from nats.js.api import StreamConfig
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from tillsammans_common.db import migrate_in_child
from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import ConcernRouted
from tillsammans_common.messaging.outbox import record_cross_org, record_event
from tillsammans_common.messaging.relay import OutboxRelay
from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import ManualClock

SOURCE = "/orgs/school/intake"


@pytest.fixture
async def broker(nats_url: str) -> AsyncIterator[NatsBroker]:
    broker = NatsBroker(nats_url)
    await broker.connect()
    # Only this organisation's event stream exists: region's inbox stream is "down".
    await broker.config.connection_state.stream.add_stream(StreamConfig(name="EVENTS", subjects=["school.>"]))
    yield broker
    await broker.stop()


def _routed(number: int) -> ConcernRouted:
    return ConcernRouted(concern_id=f"c{number}", case_id=f"case-{number}", unit_id="norrskolan", bba_user="bba")


def _write(engine: Engine) -> list[str]:
    """One internal event, two messages for region's inbox, one more internal event; their event ids."""
    with Session(engine) as session:
        first = record_event(session, _routed(1), source=SOURCE, org="school", subject="case-1")
        to_region = [Envelope.wrap(_routed(n), source=SOURCE, subject=f"case-{n}") for n in (2, 3)]
        for envelope in to_region:
            record_cross_org(session, envelope, from_org="school", to_org="region")
        last = record_event(session, _routed(4), source=SOURCE, org="school", subject="case-4")
        session.commit()
    return [first.id, to_region[0].id, to_region[1].id, last.id]


def _rows(engine: Engine) -> dict[str, OutboxMessage]:
    with Session(engine) as session:
        return {row.event_id: row for row in session.exec(select(OutboxMessage).order_by(col(OutboxMessage.seq)))}


async def test_a_failing_destination_keeps_its_rows_in_order_and_others_go(engine: Engine,
                                                                           broker: NatsBroker) -> None:
    first, region_a, region_b, last = _write(engine)
    clock = ManualClock()
    relay = OutboxRelay(engine, broker, org="school", clock=clock)

    sent, _ = await relay.relay_once()

    rows = _rows(engine)
    assert sent == 2
    assert rows[first].published_at is not None and rows[last].published_at is not None
    # The first row to the missing stream failed and is counted; the one behind it waits its turn.
    assert rows[region_a].published_at is None and rows[region_a].attempts == 1 and rows[region_a].last_error
    assert rows[region_b].published_at is None and rows[region_b].attempts == 0
    js = broker.config.connection_state.stream
    events = [await js.get_msg("EVENTS", seq) for seq in (1, 2)]
    assert [message.headers["Nats-Msg-Id"] for message in events] == [first, last]  # type: ignore[index]

    # Region's inbox comes back: once its backoff ends, its oldest row goes alone, then the rest; in the
    # order they were written, once each.
    await js.add_stream(StreamConfig(name="INBOX", subjects=["inbox.region.>"]))
    assert await relay.relay_once() == (0, False)
    retry_at = relay.retry_at("inbox.region")
    assert retry_at is not None
    clock.now = retry_at
    assert await relay.relay_once() == (1, True)
    assert relay.retry_at("inbox.region") is None
    assert await relay.relay_once() == (1, False)
    assert all(row.published_at is not None for row in _rows(engine).values())
    inbox = [await js.get_msg("INBOX", seq) for seq in (1, 2)]
    assert [message.headers["Nats-Msg-Id"] for message in inbox] == [region_a, region_b]  # type: ignore[index]
    assert (await js.stream_info("INBOX")).state.messages == 2
    assert await relay.relay_once() == (0, False)


async def test_a_relay_pass_keeps_the_trace_the_row_was_written_in(engine: Engine, broker: NatsBroker) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with Session(engine) as session:
        envelope = record_event(session, _routed(9), source=SOURCE, org="school", subject="case-9")
        session.commit()
    with Session(engine) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.event_id == envelope.id)).one()
        row.traceparent = traceparent
        session.add(row)
        session.commit()

    await OutboxRelay(engine, broker, org="school").relay_once()

    message = await broker.config.connection_state.stream.get_msg("EVENTS", 1)
    assert message.headers is not None
    # Same trace id; the span id is the relay's publish span, a child of the request's.
    assert message.headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


def test_a_failed_migration_is_an_error_that_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="database migration failed"):
        migrate_in_child("postgresql://nobody@127.0.0.1:1/none", tmp_path, service="intake", org="school")
