"""The broker itself keeps organisations apart: one NATS account each, only inboxes cross."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from tillsammans_common.messaging.consumer import stream_configs
from tillsammans_common.testing import Federation


async def _connect(federation: Federation, org: str, errors: list[str]) -> nats.NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(federation.url, user=org, password=federation.passwords[org], error_cb=on_error,
                              allow_reconnect=False)


async def _streams(federation: Federation, org: str) -> nats.NATS:
    client = await _connect(federation, org, [])
    js = client.jetstream()
    for config in stream_configs(org):
        await js.add_stream(config=config)
    # A receiver's services create their durable consumers at start; the inbox keeps a message only
    # while one of them still wants it (interest retention).
    await js.add_consumer("INBOX", ConsumerConfig(durable_name="receiver", filter_subject=f"inbox.{org}.>",
                                                  ack_policy=AckPolicy.EXPLICIT))
    return client


async def test_region_cannot_subscribe_or_publish_on_school_internal_subjects(federation: Federation) -> None:
    errors: list[str] = []
    region = await _connect(federation, "region", errors)
    await region.subscribe("school.>")
    await region.publish("school.intake.concern.raised.v1", b"{}")
    await region.flush()
    deadline = asyncio.get_running_loop().time() + 5
    while len(errors) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # errors arrive asynchronously from the server; bounded wait
    assert any('subscription to "school.>"' in e and "permissions violation" in e for e in errors), errors
    assert any('publish to "school.intake.concern.raised.v1"' in e for e in errors), errors
    await region.close()


async def test_school_traffic_is_invisible_to_region_even_on_its_own_subjects(federation: Federation) -> None:
    school = await _streams(federation, "school")
    region = await _streams(federation, "region")
    received: list[bytes] = []

    async def collect(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.data)

    # Region subscribes to everything its account may see; school publishes internal events.
    await region.subscribe("region.>", cb=collect)
    await region.flush()
    ack = await school.jetstream().publish("school.intake.concern.raised.v1", b"{}", stream="EVENTS")
    assert ack.stream == "EVENTS"
    await school.flush()
    await region.flush()
    assert received == []
    # Region's JetStream has no school stream data either: its EVENTS stream is its own.
    info = await region.jetstream().stream_info("EVENTS")
    assert info.state.messages == 0
    await school.close()
    await region.close()


async def test_only_the_exported_inbox_crosses_and_the_subject_proves_the_sender(federation: Federation) -> None:
    region = await _streams(federation, "region")
    errors: list[str] = []
    school = await _connect(federation, "school", errors)
    js = school.jetstream()
    ack = await js.publish("inbox.region.school.meetings.invitation.sent.v1", b"{}", stream="INBOX",
                           headers={"Nats-Msg-Id": "e-1"})
    assert ack.stream == "INBOX" and not ack.duplicate
    again = await js.publish("inbox.region.school.meetings.invitation.sent.v1", b"{}", stream="INBOX",
                             headers={"Nats-Msg-Id": "e-1"})
    assert again.duplicate  # the receiver's stream deduplicates by event id
    # School cannot pretend to be social, nor write into its own inbox as if from someone else.
    for forged in ("inbox.region.social.meetings.invitation.sent.v1", "inbox.school.region.x"):
        with pytest.raises((NatsTimeout, nats.errors.Error)):
            await js.publish(forged, b"{}", stream="INBOX", timeout=1)
    info = await region.jetstream().stream_info("INBOX")
    assert info.state.messages == 1
    await school.close()
    await region.close()


async def test_inbox_is_durable_while_the_receiver_is_away(federation: Federation) -> None:
    region = await _streams(federation, "region")
    await region.close()  # nobody from region is connected now
    school = await _connect(federation, "school", [])
    await school.jetstream().publish("inbox.region.school.meetings.invitation.sent.v1", b"kept", stream="INBOX")
    await school.close()
    region = await _connect(federation, "region", [])
    sub = await region.jetstream().pull_subscribe_bind("receiver", "INBOX")
    messages = await sub.fetch(1, timeout=5)
    assert [m.data for m in messages] == [b"kept"]
    await messages[0].ack_sync()
    # Once processed it leaves the inbox: the receiver keeps nothing it has handled.
    assert (await region.jetstream().stream_info("INBOX")).state.messages == 0
    await region.close()


def test_stream_configs_capture_only_the_organisations_own_subjects() -> None:
    events, inbox = stream_configs("region")
    assert isinstance(events, StreamConfig) and events.subjects == ["region.>"]
    assert inbox.subjects == ["inbox.region.>"]
    assert inbox.retention is not None and inbox.retention.value == "interest" and inbox.max_age
