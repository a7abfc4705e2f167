"""Intake tells the other services the child's municipality with the case (decision 24), never a protected child's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import NatsServer, bearer
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app

from .test_routing_table import ESKILSTUNA, NYKOPING, child_aged

RAISER = bearer("school", "professional", "mentor.anna")
CASE_RECORDED = "school.intake.case.recorded.v1"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One intake app of "school" for every row."""
    root: Path = tmp_path_factory.mktemp("case-municipality")
    server = NatsServer(root / "nats").start()
    try:
        with TestClient(create_app(IntakeSettings(org="school", nats_url=server.url, data_dir=root / "data"))) as app:
            yield app
    finally:
        server.stop()


def _case_events(client: TestClient, case_id: str) -> list[dict[str, Any]]:
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        bodies = session.exec(select(OutboxMessage.body).where(OutboxMessage.nats_subject == CASE_RECORDED)
                              .order_by(col(OutboxMessage.seq))).all()
    events = [json.loads(body) for body in bodies]
    return [event["data"] for event in events if event["subject"] == case_id]


def _raise(client: TestClient, child: dict[str, Any], **body: Any) -> str:
    response = client.post("/concerns", json={"child": child, "wheel_areas": ["hemmet"], "description": "Oro.",
                                              **body}, headers=RAISER)
    assert response.status_code == 201, response.text
    case_id: str = response.json()["case_id"]
    return case_id


@pytest.mark.parametrize(("body", "protected", "expected"), [
    ({"unit_id": "norrskolan", "home_municipality": NYKOPING}, False, NYKOPING),  # where the child lives wins
    ({"unit_id": "norrskolan"}, False, ESKILSTUNA),  # else the unit's
    ({"unit_id": "mottagning"}, False, None),  # the desk serves no one municipality: unknown
    ({"unit_id": "norrskolan", "home_municipality": NYKOPING}, True, None),  # a protected child's stays at intake
], ids=["home-municipality", "units-municipality", "unknown", "protected"])
def test_the_case_carries_the_childs_municipality(client: TestClient, body: dict[str, Any], protected: bool,
                                                 expected: str | None) -> None:
    child = {**child_aged(9), "protected_identity": protected}
    case_id = _raise(client, child, **body)
    assert [event["municipality_code"] for event in _case_events(client, case_id)] == [expected]


def test_a_case_learns_its_municipality_from_a_later_concern(client: TestClient) -> None:
    child = child_aged(9)
    case_id = _raise(client, child, unit_id="mottagning")
    assert _raise(client, child, home_municipality=ESKILSTUNA) == case_id
    assert [event["municipality_code"] for event in _case_events(client, case_id)] == [None, ESKILSTUNA]
    # Once known it is not announced again.
    _raise(client, child, home_municipality=ESKILSTUNA)
    assert len(_case_events(client, case_id)) == 2
