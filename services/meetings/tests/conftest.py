"""Shared helpers for meetings' tests: the child, a meeting body, and consent written as the consent service would."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.messaging.consent_replica import apply_granted
from tillsammans_common.messaging.egress import share_consent
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.personnummer import child_key
from tillsammans_common.testing import engine_of
from tillsammans_meetings.config import MeetingsSettings

CHILD = {"personnummer": "20130412-1237", "name": "Testbarn Testsson"}
NORMALIZED = "201304121237"
CATEGORIES = ["identity", "concern", "mapping_summary"]


MeetingBody = Callable[..., dict[str, Any]]
Grant = Callable[..., ConsentGranted]
Withdraw = Callable[[TestClient, ConsentGranted], ConsentWithdrawn]


@pytest.fixture
def meeting_body() -> MeetingBody:
    """A valid POST /meetings body inviting the given organisations; keyword arguments override fields."""

    def _body(*orgs: str, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "case_id": "case-1", "kind": "samverkansmote",
            "scheduled_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(), "child": CHILD,
            "invited_orgs": list(orgs), "flagged_areas": ["trygghet", "hemmet"],
            "concern_summary": "Ökad frånvaro, oro i hemmet.",
        }
        body.update(overrides)
        return body

    return _body


@pytest.fixture
def grant() -> Grant:
    """Record a consent in a meetings database the way the consent service would (replica, then replication)."""

    def _grant(client: TestClient, *, receiving: list[str], categories: list[str] | None = None,
               share: bool = True, case_id: str = "case-1") -> ConsentGranted:
        settings: MeetingsSettings = client.app.state.settings  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        event = ConsentGranted(
            consent_id=str(uuid.uuid4()), case_id=case_id,
            child_key=child_key(NORMALIZED, settings.child_key_secret.get_secret_value()),
            disclosing_org=settings.org, receiving_orgs=receiving, categories=categories or CATEGORIES,
            purpose="coordination_meeting", valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(days=30))
        with Session(engine_of(client)) as session:
            apply_granted(session, event)
            if share:
                share_consent(session, event, settings=settings, subject=case_id)
            session.commit()
        return event

    return _grant


@pytest.fixture
def withdraw() -> Withdraw:
    """Withdraw a consent the way the consent service would: on the own stream and to each receiver."""
    return _withdraw


def _withdraw(client: TestClient, granted: ConsentGranted) -> ConsentWithdrawn:
    settings: MeetingsSettings = client.app.state.settings  # type: ignore[attr-defined]
    event = ConsentWithdrawn(consent_id=granted.consent_id, case_id=granted.case_id, child_key=granted.child_key,
                             disclosing_org=granted.disclosing_org, receiving_orgs=granted.receiving_orgs,
                             withdrawn_at=datetime.now(UTC))
    with Session(engine_of(client)) as session:
        record_event(session, event, source=f"/orgs/{settings.org}/consent", org=settings.org,
                     subject=granted.case_id)
        share_consent(session, event, settings=settings, subject=granted.case_id)
        session.commit()
    return event
