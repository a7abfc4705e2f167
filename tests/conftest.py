"""Fixtures for the cross-organisation tests: a whole stack of real processes, as `make up` runs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.otlp_collector import Collector
from tillsammans_stack.demo import FederationClient, JourneyResult, run_journey
from tillsammans_stack.launcher import Stack, StackConfig, free_base_port


@pytest.fixture(scope="session")
def collector() -> Iterator[Collector]:
    """An OTLP/HTTP collector that every service of the stack exports to."""
    server = Collector().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[Stack]:
    """School, region and social services, each with four services, over one NATS with accounts."""
    root: Path = tmp_path_factory.mktemp("stack")
    base = free_base_port()
    config = StackConfig(root=root, nats_port=base, base_port=base, otel_endpoint=collector.endpoint)
    running = Stack(config)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def fed(stack: Stack) -> FederationClient:
    """An HTTP client for every organisation's services."""
    return FederationClient.from_stack_file(stack.config.root / "stack.json", out=lambda _: None)


@pytest.fixture(scope="session")
def journey(fed: FederationClient) -> JourneyResult:
    """The seed-001 journey, walked once for the tests that inspect it."""
    return run_journey(fed)
