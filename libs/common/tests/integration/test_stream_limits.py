"""Stream limits and the broker's sync setting, on a real nats-server."""

from __future__ import annotations

from pathlib import Path

import httpx
import nats
import pytest
from faststream.nats import NatsBroker
from faststream.security import SASLPlaintext
from nats.js.api import DiscardPolicy, RetentionPolicy

from tillsammans_common.events import EVENTS_STREAM, INBOX_STREAM
from tillsammans_common.natsconf import render
from tillsammans_common.service_app import ensure_streams
from tillsammans_common.settings import DAY_SECONDS, ServiceSettings
from tillsammans_common.testing import NatsServer, free_port

ORGS = ["school", "region"]
PASSWORDS = {org: f"{org}-pw" for org in ORGS}


def _server(tmp_path: Path, *, sync_interval: str | None) -> tuple[NatsServer, int]:
    port, http_port = free_port(), free_port()
    config = render(ORGS, PASSWORDS, port=port, store_dir=str(tmp_path / "js"), http_port=http_port,
                    sync_interval=sync_interval)
    return NatsServer(tmp_path, config=config, port=port), http_port


async def test_streams_carry_the_configured_limits_and_the_broker_syncs_every_write_when_told(tmp_path: Path) -> None:
    server, http_port = _server(tmp_path, sync_interval="always")
    assert 'sync_interval: "always"' in (server.config or "")
    server.start()
    try:
        # The running server reports the setting it took from the rendered file.
        varz = httpx.get(f"http://127.0.0.1:{http_port}/varz").json()
        assert varz["jetstream"]["config"].get("sync_always") is True
        settings = ServiceSettings(org="school", events_max_age_seconds=3 * DAY_SECONDS, events_max_bytes=64 * 2**20,
                                   inbox_max_age_seconds=2 * DAY_SECONDS, duplicate_window_seconds=90,
                                   processed_message_retention_seconds=4 * DAY_SECONDS)
        broker = NatsBroker(server.url, security=SASLPlaintext(username="school", password=PASSWORDS["school"]))
        await broker.connect()
        try:
            await ensure_streams(broker, "school", limits=settings.stream_limits)
        finally:
            await broker.stop()
        client = await nats.connect(server.url, user="school", password=PASSWORDS["school"])
        try:
            js = client.jetstream()
            events = (await js.stream_info(EVENTS_STREAM)).config
            inbox = (await js.stream_info(INBOX_STREAM)).config
        finally:
            await client.close()
    finally:
        server.stop()
    assert events.retention == RetentionPolicy.LIMITS and events.discard == DiscardPolicy.OLD
    assert events.max_age == 3 * DAY_SECONDS and events.max_bytes == 64 * 2**20
    assert events.duplicate_window == 90 and events.num_replicas == 1
    assert inbox.retention == RetentionPolicy.INTEREST and inbox.max_age == 2 * DAY_SECONDS
    assert inbox.duplicate_window == 90 and inbox.num_replicas == 1


def test_the_default_config_leaves_the_sync_interval_to_the_server_and_refuses_nonsense(tmp_path: Path) -> None:
    assert "sync_interval" not in render(ORGS, PASSWORDS, port=4222, store_dir="/x")
    assert 'sync_interval: "10s"' in render(ORGS, PASSWORDS, port=4222, store_dir="/x", sync_interval="10s")
    with pytest.raises(ValueError, match="sync_interval"):
        render(ORGS, PASSWORDS, port=4222, store_dir="/x", sync_interval="sometimes")
