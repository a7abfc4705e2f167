"""Shared helpers for meetings' tests: the child, its case, a meeting body, and the consent service beside meetings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, delete

from tillsammans_common.auth import Principal, Role
from tillsammans_common.events import INBOX_STREAM
from tillsammans_common.events.consent import ConsentGranted
from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import bearer, engine_of, seed_case
from tillsammans_consent import service as consent_service
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.main import create_app as create_consent_app
from tillsammans_consent.models import ConsentCreate
from tillsammans_meetings.config import MeetingsSettings

CHILD = {"personnummer": "20130412-1237", "name": "Testbarn Testsson"}
NORMALIZED = "201304121237"
CATEGORIES = ["identity", "concern", "mapping_summary"]
# The child's case as intake would announce it: norrskolan's, with bba.norrskolan as its BBA.
UNIT = "norrskolan"
CASE_BBA_USER = "bba.norrskolan"


MeetingBody = Callable[..., dict[str, Any]]
Grant = Callable[..., ConsentGranted]
Withdraw = Callable[[TestClient, ConsentGranted], None]
SeedCase = Callable[..., None]


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


def seed_child_case(meetings: TestClient, *, case_id: str = "case-1", personnummer: str = CHILD["personnummer"],
                    unit_id: str | None = UNIT, bba_user: str = CASE_BBA_USER, protected: bool = False) -> None:
    """Record a case, as intake's ``CaseRecorded`` would, in the meetings app and in the consent service beside it.

    Both need it: meetings to call and run a meeting in the case, consent to record a consent in it.
    """
    services = [meetings]
    consent = getattr(meetings.app.state, "test_consent", None)
    if consent is not None:
        services.append(consent)
    for service in services:
        seed_case(engine_of(service), service.app.state.settings,  # type: ignore[attr-defined]
                  case_id=case_id, personnummer=personnummer, unit_id=unit_id, bba_user=bba_user,
                  protected=protected)


@pytest.fixture
def seed() -> SeedCase:
    """``seed(meetings_client, case_id=...)`` records the child's case in meetings and the consent beside it."""
    return seed_child_case


@contextmanager
def consent_beside(meetings: TestClient, **overrides: Any) -> Iterator[TestClient]:
    """Run the consent service of the meetings app's organisation (same broker and data folder) beside it.

    The meetings service asks it about every invitation, as in production.
    """
    meetings_settings: MeetingsSettings = meetings.app.state.settings  # type: ignore[attr-defined]
    fields = ("org", "peers", "nats_url", "nats_user", "nats_password", "data_dir", "child_key_secret",
              "max_deliveries", "redelivery_backoff_seconds")
    settings = ConsentSettings(**{name: getattr(meetings_settings, name) for name in fields}, **overrides)
    if meetings_settings.database_url:
        settings.database_url = meetings_settings.database_url.replace("meetings", "consent")
    with TestClient(create_consent_app(settings)) as consent:
        meetings.app.state.test_consent = consent  # type: ignore[attr-defined]
        yield consent


Beside = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def with_consent() -> Beside:
    """``with with_consent(meetings_client):`` runs the organisation's consent service beside it."""
    return consent_beside


def _consent_of(meetings: TestClient) -> TestClient:
    consent: TestClient = meetings.app.state.test_consent  # type: ignore[attr-defined]
    return consent


@pytest.fixture
def grant() -> Grant:
    """Record a consent in the consent service beside a meetings app, as the case's BBA would.

    The case must be known there first (``seed``). With ``share=False`` its replication to the receivers
    is dropped, as if it never arrived there. ``purpose`` is the consent's (e.g. ``sip`` for sharing a plan).
    """

    def _grant(client: TestClient, *, receiving: list[str], categories: list[str] | None = None,
               share: bool = True, case_id: str = "case-1", purpose: str = "coordination_meeting") -> ConsentGranted:
        consent_client = _consent_of(client)
        settings: ConsentSettings = consent_client.app.state.settings  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        data = ConsentCreate.model_validate({
            "case_id": case_id, "child": {"personnummer": CHILD["personnummer"]}, "custody": "sole",
            "grantors": [{"role": "guardian", "name": "Vårdnadshavare", "given_at": now.isoformat()}],
            "child_view": {"heard": True, "agrees": True}, "receiving_orgs": receiving,
            "categories": categories or CATEGORIES, "purpose": purpose,
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
        })
        with Session(engine_of(consent_client), expire_on_commit=False) as session:
            consent = consent_service.grant_consent(
                session, settings=settings, principal=Principal(org=settings.org, user=CASE_BBA_USER, role=Role.BBA),
                data=data)
            session.flush()
            if not share:
                session.execute(delete(OutboxMessage).where(col(OutboxMessage.stream) == INBOX_STREAM))
            session.commit()
        return ConsentGranted(
            consent_id=consent.id, case_id=consent.case_id, child_key=consent.child_key, disclosing_org=settings.org,
            receiving_orgs=list(consent.receiving_orgs), categories=list(consent.categories),
            purpose=consent.purpose.value, valid_from=consent.valid_from, valid_until=consent.valid_until)

    return _grant


@pytest.fixture
def withdraw() -> Withdraw:
    """Withdraw a consent through the consent service's API, as the case's BBA would."""
    return _withdraw


def _withdraw(client: TestClient, granted: ConsentGranted) -> None:
    consent_client = _consent_of(client)
    org = consent_client.app.state.settings.org  # type: ignore[attr-defined]
    response = consent_client.post(f"/consents/{granted.consent_id}/withdraw", json={"withdrawn_by": "guardian"},
                                   headers=bearer(org, "bba", CASE_BBA_USER))
    assert response.status_code == 200, response.text
