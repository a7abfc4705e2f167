"""Fixtures for the cross-organisation tests: a whole stack of real processes, as `make up` runs it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.otlp_collector import Collector
from tillsammans_common.testing import free_port
from tillsammans_stack.demo import FederationClient, JourneyResult, run_journey
from tillsammans_stack.launcher import Stack, StackConfig


def _free_port_range(size: int) -> int:
    """A base port whose next ``size`` ports are all free."""
    for _ in range(50):
        base = free_port() // 100 * 100
        if base + size > 65000:
            continue
        ok = True
        for port in range(base + 1, base + size + 1):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


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
    config = StackConfig(root=root, nats_port=free_port(), base_port=_free_port_range(40),
                         otel_endpoint=collector.endpoint)
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
