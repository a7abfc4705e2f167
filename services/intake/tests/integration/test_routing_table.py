"""Decision 20's routing table through POST /concerns on real SQLite and NATS: age/stage/municipality -> unit -> BBA."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tillsammans_common.models import OutboxMessage
from tillsammans_common.personnummer import luhn_check_digit
from tillsammans_common.testing import NatsServer, bearer
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app

ESKILSTUNA, NYKOPING = "0484", "0480"
RAISER = bearer("school", "professional", "mentor.anna")
_serials = count(100)


def child_aged(age: int) -> dict[str, str]:
    """A new child (valid personnummer) who turned ``age`` on 1 January this year."""
    born = date(date.today().year - age, 1, 1)
    nine = born.strftime("%y%m%d") + f"{next(_serials):03d}"
    return {"personnummer": born.strftime("%Y%m%d") + nine[6:] + str(luhn_check_digit(nine)), "name": "Testbarn"}


# (age, stage, home municipality) -> (unit, BBA, rule); the demo directory of "school" (directory.json).
TABLE: list[tuple[int, str | None, str | None, str, str, str]] = [
    (3, "preschool_age", ESKILSTUNA, "solrosen", "bba.solrosen", "stage"),
    (4, None, ESKILSTUNA, "solrosen", "bba.solrosen", "age"),
    (6, "forskoleklass", ESKILSTUNA, "norrskolan", "bba.norrskolan", "stage"),
    (6, None, ESKILSTUNA, "norrskolan", "bba.norrskolan", "age"),
    (8, "compulsory_school", ESKILSTUNA, "norrskolan", "bba.norrskolan", "stage"),
    (14, "compulsory_school", ESKILSTUNA, "vasterskolan", "bba.vasterskolan", "stage"),
    (10, None, ESKILSTUNA, "norrskolan", "bba.norrskolan", "age"),
    (15, None, ESKILSTUNA, "vasterskolan", "bba.vasterskolan", "age"),
    (17, "upper_secondary", ESKILSTUNA, "rekarnegymnasiet", "bba.rekarne", "stage"),
    (15, "upper_secondary", ESKILSTUNA, "rekarnegymnasiet", "bba.rekarne", "stage"),  # young for the stage
    (17, "outside_upper_secondary", ESKILSTUNA, "kaa", "bba.kaa", "stage"),
    # The intake desk: the rules find no unit, or more than one, and never guess.
    (17, None, ESKILSTUNA, "mottagning", "mottagning.bou", "fallback_ambiguous"),  # upper secondary or KAA?
    (16, "compulsory_school", ESKILSTUNA, "mottagning", "mottagning.bou", "fallback_ambiguous"),  # which school?
    (0, None, ESKILSTUNA, "mottagning", "mottagning.bou", "fallback_no_unit"),  # BVC is the region's
    (9, "compulsory_school", NYKOPING, "mottagning", "mottagning.bou", "fallback_no_unit"),
    (22, None, ESKILSTUNA, "mottagning", "mottagning.bou", "fallback_no_rule"),
    (9, "compulsory_school", None, "mottagning", "mottagning.bou", "fallback_no_municipality"),
    (9, None, None, "mottagning", "mottagning.bou", "fallback_no_municipality"),
]


def concern(age: int, stage: str | None, municipality: str | None, **extra: Any) -> dict[str, Any]:
    """A concern body without a unit."""
    body: dict[str, Any] = {"child": child_aged(age), "wheel_areas": ["larande"], "description": "Oro.", **extra}
    if stage is not None:
        body["child_stage"] = stage
    if municipality is not None:
        body["home_municipality"] = municipality
    return body


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One intake app of "school" for the whole table."""
    root: Path = tmp_path_factory.mktemp("routing-table")
    server = NatsServer(root / "nats").start()
    try:
        with TestClient(create_app(IntakeSettings(org="school", nats_url=server.url, data_dir=root / "data"))) as app:
            yield app
    finally:
        server.stop()


@pytest.mark.parametrize(("age", "stage", "municipality", "unit", "bba", "rule"), TABLE)
def test_routing_table(client: TestClient, age: int, stage: str | None, municipality: str | None,
                       unit: str, bba: str, rule: str) -> None:
    response = client.post("/concerns", json=concern(age, stage, municipality), headers=RAISER)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["unit_id"], body["bba_user"], body["routed_by"]) == (unit, bba, rule)


def test_a_named_unit_wins_and_a_childs_case_keeps_its_unit(client: TestClient) -> None:
    body = concern(8, "compulsory_school", ESKILSTUNA, unit_id="solrosen")
    first = client.post("/concerns", json=body, headers=RAISER).json()
    assert (first["unit_id"], first["bba_user"], first["routed_by"]) == ("solrosen", "bba.solrosen", "named_unit")
    # The same child again, by stage only: the concern joins the child's case and its BBA, not the stage's.
    again = client.post("/concerns", json={**body, "unit_id": None}, headers=RAISER).json()
    assert again["case_id"] == first["case_id"]
    assert (again["unit_id"], again["bba_user"], again["routed_by"]) == ("solrosen", "bba.solrosen", "childs_case")


def test_the_region_routes_a_baby_to_bvc(tmp_path: Path, nats_url: str) -> None:
    settings = IntakeSettings(org="region", nats_url=nats_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as region:
        headers = bearer("region", "professional", "sjukskoterska.sara")
        baby = region.post("/concerns", json=concern(0, None, ESKILSTUNA), headers=headers).json()
        assert (baby["unit_id"], baby["bba_user"], baby["routed_by"]) == ("bvc-centrum", "bba.bvc", "age")
        unknown = region.post("/concerns", json=concern(9, None, ESKILSTUNA), headers=headers).json()
        assert (unknown["unit_id"], unknown["bba_user"]) == ("mottagning", "mottagning.bhv")


def test_a_configured_intake_desk_is_the_fallback(tmp_path: Path, nats_url: str) -> None:
    settings = IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data", intake_desk_unit="kaa")
    with TestClient(create_app(settings)) as school:
        routed = school.post("/concerns", json=concern(9, None, None), headers=RAISER).json()
        assert (routed["unit_id"], routed["bba_user"], routed["routed_by"]) == ("kaa", "bba.kaa",
                                                                               "fallback_no_municipality")


def test_a_concern_flags_areas_of_one_wheel(client: TestClient) -> None:
    def raised(**extra: Any) -> Any:
        return client.post("/concerns", json={**concern(9, None, ESKILSTUNA), **extra}, headers=RAISER)

    girfec = raised(wheel_id="girfec", wheel_areas=["safe", "healthy"])
    assert girfec.status_code == 201, girfec.text
    assert girfec.json()["wheel_id"] == "girfec"
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        bodies = session.exec(select(OutboxMessage.body).where(
            OutboxMessage.nats_subject == "school.intake.concern.raised.v1")).all()
    raised_events = [json.loads(body)["data"] for body in bodies]
    assert [e["wheel_id"] for e in raised_events if e["concern_id"] == girfec.json()["id"]] == ["girfec"]
    assert raised().json()["wheel_id"] == "sormland"  # the organisation's default wheel
    for refused, field in ((raised(wheel_areas=["safe"]), "wheel_areas"),
                           (raised(wheel_id="girfec", wheel_areas=["safe", "trygghet"]), "wheel_areas"),
                           (raised(wheel_id="okand", wheel_areas=["safe"]), "wheel_id")):
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] == field
