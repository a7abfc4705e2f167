"""ensure_streams brings an existing INBOX stream to interest retention with a maximum age, on a real nats-server."""

from __future__ import annotations

import logging

import nats
import pytest
from faststream.nats import NatsBroker
from faststream.security import SASLPlaintext
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from tillsammans_common.events import EVENTS_STREAM, INBOX_STREAM
from tillsammans_common.service_app import ensure_streams
from tillsammans_common.testing import Federation

OLD_INBOX = StreamConfig(name=INBOX_STREAM, subjects=["inbox.region.>"], storage=StorageType.FILE,
                         duplicate_window=120.0)


async def _ensure(federation: Federation, *, max_age: float) -> None:
    broker = NatsBroker(federation.url, security=SASLPlaintext(username="region",
                                                               password=federation.passwords["region"]))
    await broker.connect()
    try:
        await ensure_streams(broker, "region", inbox_max_age_seconds=max_age)
    finally:
        await broker.stop()


async def _connect(federation: Federation, org: str) -> Client:
    return await nats.connect(federation.url, user=org, password=federation.passwords[org])


async def _from_school(federation: Federation, body: bytes) -> int:
    # Only another member may write to region's inbox.
    school = await _connect(federation, "school")
    try:
        return int((await school.jetstream().publish("inbox.region.school.x", body, stream=INBOX_STREAM)).seq)
    finally:
        await school.close()


async def _held(js: JetStreamContext, seq: int) -> bool:
    try:
        await js.get_msg(INBOX_STREAM, seq)
    except NotFoundError:
        return False
    return True


async def test_an_inbox_from_before_is_moved_to_interest_retention_and_drops_what_was_processed(
        federation: Federation) -> None:
    region = await _connect(federation, "region")
    js = region.jetstream()
    await js.add_stream(config=OLD_INBOX)
    await js.add_consumer(INBOX_STREAM, ConsumerConfig(durable_name="meetings-invitations-received",
                                                       filter_subject="inbox.region.*.x",
                                                       ack_policy=AckPolicy.EXPLICIT))
    processed = await _from_school(federation, b"processed")
    waiting = await _from_school(federation, b"waiting")
    fetched = await (await js.pull_subscribe_bind("meetings-invitations-received", INBOX_STREAM)).fetch(1)
    await fetched[0].ack_sync()

    await _ensure(federation, max_age=3600)
    info = await js.stream_info(INBOX_STREAM)
    assert info.config.retention == RetentionPolicy.INTEREST and info.config.max_age == 3600
    assert info.state.consumer_count == 1
    assert not await _held(js, processed) and await _held(js, waiting)
    assert (await js.stream_info(EVENTS_STREAM)).config.retention == RetentionPolicy.LIMITS

    # Started again with the same settings: unchanged; with another maximum age: updated in place.
    await _ensure(federation, max_age=3600)
    await _ensure(federation, max_age=600)
    info = await js.stream_info(INBOX_STREAM)
    assert info.config.max_age == 600 and info.config.duplicate_window == 120
    assert await _held(js, waiting)
    await region.close()


async def test_a_stream_the_broker_cannot_change_in_place_is_replaced_only_while_unused(
        federation: Federation, caplog: pytest.LogCaptureFixture) -> None:
    region = await _connect(federation, "region")
    js = region.jetstream()
    # JetStream never changes retention to or from work-queue in place.
    await js.add_stream(config=StreamConfig(name=INBOX_STREAM, subjects=["inbox.region.>"],
                                            retention=RetentionPolicy.WORK_QUEUE))
    await _ensure(federation, max_age=3600)
    assert (await js.stream_info(INBOX_STREAM)).config.retention == RetentionPolicy.INTEREST

    await js.delete_stream(INBOX_STREAM)
    await js.add_stream(config=StreamConfig(name=INBOX_STREAM, subjects=["inbox.region.>"],
                                            retention=RetentionPolicy.WORK_QUEUE))
    kept = await _from_school(federation, b"kept")
    with caplog.at_level(logging.WARNING, logger="tillsammans_common.service_app"):
        await _ensure(federation, max_age=3600)
    assert (await js.stream_info(INBOX_STREAM)).config.retention == RetentionPolicy.WORK_QUEUE
    assert await _held(js, kept)
    assert any("stream kept with its old configuration" in record.getMessage() for record in caplog.records)
    await region.close()
