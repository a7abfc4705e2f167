"""Per-destination delivery on a real nats-server: a refusing receiver delays only its own messages.

Region's inbox has no stream (the broker refuses every publish to it) while 500 rows for it are
queued between 200 for social's healthy inbox and 200 of school's own events. Time for the backoff
comes from a clock the test moves; nothing sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from faststream.nats import NatsBroker
from nats.js.api import StreamConfig
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import ConcernRouted
from tillsammans_common.messaging.outbox import record_cross_org, record_event
from tillsammans_common.messaging.relay import OutboxRelay
from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import ManualClock

SOURCE = "/orgs/school/intake"
REGION = "inbox.region"
INITIAL, CAP = 0.2, 30.0


@pytest.fixture
async def broker(nats_url: str) -> AsyncIterator[NatsBroker]:
    broker = NatsBroker(nats_url)
    await broker.connect()
    js = broker.config.connection_state.stream
    await js.add_stream(StreamConfig(name="EVENTS", subjects=["school.>"]))
    # Social's inbox is up; region's is not (no stream takes inbox.region.>, so the broker refuses).
    await js.add_stream(StreamConfig(name="INBOX", subjects=["inbox.social.>"]))
    yield broker
    await broker.stop()


def _routed(number: int) -> ConcernRouted:
    return ConcernRouted(concern_id=f"c{number}", case_id=f"case-{number}", unit_id="norrskolan", bba_user="bba")


def _queue(engine: Engine, *, region: int, social: int, internal: int, start: int = 0) -> dict[str, list[str]]:
    """Queue rows for the three destinations interleaved (region's thickest), a hundred rows a commit."""
    ids: dict[str, list[str]] = {REGION: [], "inbox.social": [], "EVENTS": []}
    wanted = {REGION: region, "inbox.social": social, "EVENTS": internal}
    number = start
    session = Session(engine)
    while any(len(ids[destination]) < count for destination, count in wanted.items()):
        for destination, count in wanted.items():
            if len(ids[destination]) >= count:
                continue
            number += 1
            if destination == "EVENTS":
                envelope = record_event(session, _routed(number), source=SOURCE, org="school",
                                        subject=f"case-{number}")
            else:
                envelope = Envelope.wrap(_routed(number), source=SOURCE, subject=f"case-{number}")
                record_cross_org(session, envelope, from_org="school", to_org=destination.split(".")[1])
            ids[destination].append(envelope.id)
            if number % 100 == 0:
                session.commit()
    session.commit()
    session.close()
    return ids


def _unsent(engine: Engine, destination: str) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).where(
            OutboxMessage.destination == destination, col(OutboxMessage.published_at).is_(None))
            .order_by(col(OutboxMessage.seq))))


def _published_count(engine: Engine, destination: str) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.destination == destination, col(OutboxMessage.published_at).is_not(None))).one()


async def _drain(relay: OutboxRelay, limit: int) -> int:
    """Run passes until one finds nothing more to do; the number of passes (at most ``limit``)."""
    for passes in range(1, limit + 1):
        _, more = await relay.relay_once()
        if not more:
            return passes
    raise AssertionError(f"the relay still had work after {limit} passes")


async def _msg_ids(broker: NatsBroker, stream: str, subject: str) -> list[str]:
    js = broker.config.connection_state.stream
    info = await js.stream_info(stream)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(stream, seq)
        if message.subject is not None and message.subject.startswith(subject) and message.headers:
            ids.append(message.headers["Nats-Msg-Id"])
    return ids


def _gauges(reader: InMemoryMetricReader) -> dict[str, dict[str, float]]:
    """Each outbox gauge's value per destination; fails if a point carries any other attribute."""
    values: dict[str, dict[str, float]] = {}
    data = reader.get_metrics_data()
    if data is None:  # no gauge observed anything
        return values
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    assert set(point.attributes or {}) == {"destination"}
                    values.setdefault(metric.name, {})[str((point.attributes or {})["destination"])] = point.value
    return values


async def test_a_refusing_receiver_delays_only_its_own_messages(engine: Engine, broker: NatsBroker,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    ids = _queue(engine, region=500, social=200, internal=200)
    clock = ManualClock()
    reader = InMemoryMetricReader()
    relay = OutboxRelay(engine, broker, org="school", clock=clock, backoff_initial_seconds=INITIAL,
                        backoff_max_seconds=CAP, meter_provider=MeterProvider(metric_readers=[reader]))
    await relay.refresh_backlog()
    assert {name: set(values) for name, values in _gauges(reader).items()} == {
        "tillsammans.outbox.backlog": {REGION, "inbox.social", "EVENTS"},
        "tillsammans.outbox.oldest_age_seconds": {REGION, "inbox.social", "EVENTS"}}
    assert _gauges(reader)["tillsammans.outbox.backlog"] == {REGION: 500, "inbox.social": 200, "EVENTS": 200}

    # Every healthy and internal row goes within a few passes, with the clock standing still: region
    # fails once, backs off, and is not loaded again, so its 500 rows never take the batch from the others.
    # 200 rows a pass: a third each in the first, then half each for the two healthy destinations.
    with caplog.at_level(logging.INFO, logger="tillsammans_common.messaging.relay"):
        passes = await _drain(relay, limit=10)
    assert passes <= 4
    assert _published_count(engine, "inbox.social") == 200 and _published_count(engine, "EVENTS") == 200
    assert await _msg_ids(broker, "INBOX", "inbox.social.") == ids["inbox.social"]
    assert await _msg_ids(broker, "EVENTS", "school.") == ids["EVENTS"]
    region = _unsent(engine, REGION)
    assert [row.event_id for row in region] == ids[REGION]
    # Only the first refused row is counted: the later ones wait behind it.
    assert [row.attempts for row in region[:3]] == [1, 0, 0] and region[0].last_error
    backoff_logs = [record for record in caplog.records if record.getMessage().startswith("outbox destination")]
    assert [(record.levelname, record.__dict__["destination"]) for record in backoff_logs] == [("WARNING", REGION)]
    # The log line names the destination and the kind of failure, never a message's contents.
    assert "case-" not in str(vars(backoff_logs[0])) and "norrskolan" not in str(vars(backoff_logs[0]))

    # The backoff is the first step of the doubling, with jitter: between half of it and all of it.
    retry_at = relay.retry_at(REGION)
    assert retry_at is not None and INITIAL / 2 <= retry_at - clock.now <= INITIAL

    # Healthy traffic goes on while region waits; region is not tried (no new attempt) before its pause ends.
    more = _queue(engine, region=0, social=20, internal=20, start=10_000)
    clock.now = retry_at - 0.001
    assert await relay.relay_once() == (40, False)
    assert await _msg_ids(broker, "INBOX", "inbox.social.") == ids["inbox.social"] + more["inbox.social"]
    assert [row.attempts for row in _unsent(engine, REGION)[:2]] == [1, 0]

    # When it ends, region is tried again with its oldest row alone; refused again, it waits twice as long.
    clock.now = retry_at
    assert await relay.relay_once() == (0, False)
    assert [row.attempts for row in _unsent(engine, REGION)[:2]] == [2, 0]
    retry_at = relay.retry_at(REGION)
    assert retry_at is not None and INITIAL <= retry_at - clock.now <= 2 * INITIAL
    # ... and so on up to the cap, never beyond it.
    for _ in range(12):
        clock.now = retry_at
        await relay.relay_once()
        retry_at = relay.retry_at(REGION)
        assert retry_at is not None and retry_at - clock.now <= CAP
    assert retry_at - clock.now >= CAP / 2
    assert _unsent(engine, REGION)[0].attempts == 14

    await relay.refresh_backlog()
    assert _gauges(reader)["tillsammans.outbox.backlog"] == {REGION: 500}
    assert _gauges(reader)["tillsammans.outbox.oldest_age_seconds"][REGION] >= 0

    # A relay that published region's first three rows crashed before it marked them; then region's inbox
    # comes up. Its rows all go, in order, once each: the three again, dropped by their Nats-Msg-Id.
    js = broker.config.connection_state.stream
    await js.update_stream(StreamConfig(name="INBOX", subjects=["inbox.social.>", "inbox.region.>"]))
    for row in region[:3]:
        await js.publish(row.nats_subject, row.body, stream="INBOX", headers={"Nats-Msg-Id": row.event_id})
    clock.now = retry_at
    with caplog.at_level(logging.INFO, logger="tillsammans_common.messaging.relay"):
        passes = await _drain(relay, limit=10)
    assert passes <= 5  # the probe row, then 200 a pass
    assert _unsent(engine, REGION) == []
    assert await _msg_ids(broker, "INBOX", "inbox.region.") == ids[REGION]
    assert relay.retry_at(REGION) is None
    assert [(record.levelname, record.__dict__["destination"]) for record in caplog.records
            if record.getMessage() == "outbox destination delivering again"] == [("INFO", REGION)]
    await relay.refresh_backlog()
    assert _gauges(reader).get("tillsammans.outbox.backlog", {}) == {}


async def test_a_backing_off_destination_does_not_shrink_the_others_share(engine: Engine,
                                                                           broker: NatsBroker) -> None:
    _queue(engine, region=50, social=150, internal=0)
    clock = ManualClock()
    relay = OutboxRelay(engine, broker, org="school", clock=clock, batch=100)

    # Two destinations with rows: half the batch each. Region is refused and backs off.
    assert await relay.relay_once() == (50, True)
    assert relay.retry_at(REGION) is not None
    # Region is not loaded while it waits: social has the whole batch.
    assert await relay.relay_once() == (100, True)
    assert await relay.relay_once() == (0, False)
    assert _published_count(engine, "inbox.social") == 150


async def test_a_row_waiting_for_the_consent_service_holds_its_destination_without_backing_it_off(
        engine: Engine, broker: NatsBroker) -> None:
    # An identifying row for social, then a plain one behind it; no consent service answers in this test.
    with Session(engine) as session:
        identifying, plain = (Envelope.wrap(_routed(n), source=SOURCE, subject=f"case-{n}") for n in (1, 2))
        record_cross_org(session, identifying, from_org="school", to_org="social", gate={
            "event_id": identifying.id, "event_type": identifying.type, "receiving_org": "social",
            "child_ref": "k1", "categories": ["identity"], "purpose": "samverkan", "requested_by": "u",
            "requested_role": "bba"})
        record_cross_org(session, plain, from_org="school", to_org="social")
        session.commit()
    _queue(engine, region=0, social=0, internal=3, start=100)
    relay = OutboxRelay(engine, broker, org="school", clock=ManualClock())

    assert await relay.relay_once() == (3, False)

    # The identifying row waits for a permit and the one behind it keeps its place; the receiver is not
    # at fault, so it is not backed off: the next pass asks again.
    assert [(row.event_id, row.last_error) for row in _unsent(engine, "inbox.social")] == [
        (identifying.id, "ConsentServiceUnavailable"), (plain.id, None)]
    assert relay.retry_at("inbox.social") is None
    assert await relay.relay_once() == (0, False)
    assert _unsent(engine, "inbox.social")[0].attempts == 2
