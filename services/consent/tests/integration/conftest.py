"""Running consent apps in tests and leaving them only once their outbox relay is idle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, func, select

from tillsammans_common.events import EVENTS_STREAM
from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import wait_for
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.main import create_app

Serve = Callable[[ConsentSettings], AbstractContextManager[TestClient]]


def _unpublished_events(client: TestClient) -> int:
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        return session.exec(select(func.count()).select_from(OutboxMessage).where(
            col(OutboxMessage.stream) == EVENTS_STREAM, col(OutboxMessage.published_at).is_(None))).one()


@pytest.fixture
def serve() -> Serve:
    """Start a consent app; on leaving, wait until the relay has published this organisation's events.

    Why: a test then sees every event it asserts about as sent. (This once also dodged a Python 3.11
    hang at shutdown, since fixed in the relay itself: ``background.wait_for_wake``.)
    """

    @contextmanager
    def running(settings: ConsentSettings) -> Iterator[TestClient]:
        with TestClient(create_app(settings)) as client:
            yield client
            wait_for(lambda: _unpublished_events(client) == 0, message="the outbox relay to be idle")

    return running
