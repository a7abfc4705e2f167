"""The wheel as the seeds use it, against a real nats-server and SQLite: perspectives, history, reading a mapping
on another wheel, the wheel picture, and a municipality's own wheel from a configured folder (decision 21)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from tillsammans_common import wheel
from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.testing import bearer, seed_case, wait_for
from tillsammans_common.wheel import WheelError
from tillsammans_mapping.config import MappingSettings
from tillsammans_mapping.main import create_app
from tillsammans_mapping.models import AreaAssessment

BBA = bearer("school", "bba", "bba.norrskolan")
CASE = "3d9b2f60-1c4e-4a7b-9e85-6f0a2c1d7b44"
CHILD = "20130412-1237"
SVG = "{http://www.w3.org/2000/svg}"
ANSWERS = {
    "has_all_information": True, "obstacles": "Oro hemma.", "own_actions": "Samtal med mentor.",
    "organisation_actions": "Elevhälsan följer upp.", "help_needed": "Stöd från socialtjänsten.",
}
OREBRO = {
    "id": "orebro", "version": 1, "name": "Örebrohjulet (lokal variant)", "source": "kommunens egen variant",
    "scale": {"steps": [
        {"code": "1", "value": 1, "label_sv": "Mycket bra", "label_en": "Very good", "flags": False},
        {"code": "2", "value": 2, "label_sv": "Bra", "label_en": "Good", "flags": False},
        {"code": "3", "value": 3, "label_sv": "Varken eller", "label_en": "Neither", "flags": False},
        {"code": "4", "value": 4, "label_sv": "Dåligt", "label_en": "Poor", "flags": True},
        {"code": "5", "value": 5, "label_sv": "Mycket dåligt", "label_en": "Very poor", "flags": True}]},
    "areas": [
        {"code": "kropp", "label_sv": "Kropp och hälsa", "label_en": "Body and health", "suggests": ["region"],
         "description_sv": "Sömn, mat, rörelse och hur barnet mår."},
        {"code": "skola", "label_sv": "Skola", "label_en": "School", "suggests": ["school"]},
        {"code": "familj", "label_sv": "Familj", "label_en": "Family", "suggests": ["social"]},
        {"code": "kompisar", "label_sv": "Kompisar", "label_en": "Friends", "suggests": ["social"]},
    ],
}
OREBRO_SORMLAND = {
    "id": "orebro-sormland", "source": "test", "wheels": ["orebro", "sormland"],
    "links": [["kropp", "halsa"], ["skola", "larande"], ["familj", "hemmet"], ["familj", "omsorg"],
              ["kompisar", "relationer"]],
}


@pytest.fixture(autouse=True)
def _packaged_wheels_after() -> Iterator[None]:
    # A service started on a folder installs its wheels process-wide; later tests expect the packaged ones.
    yield
    wheel.configure(None)


@contextmanager
def _client(tmp_path: Path, nats_url: str, **settings: Any) -> Iterator[TestClient]:
    """A mapping service that knows CASE: Norrskolan's case of CHILD, whose BBA is bba.norrskolan."""
    config = MappingSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data", **settings)
    with TestClient(create_app(config)) as client:
        seed_case(_engine(client), config, case_id=CASE, personnummer=CHILD)
        yield client
        wait_for(lambda: all(_published_at(client)), message="outbox drained to NATS")


def _engine(client: TestClient) -> Engine:
    engine: Engine = client.app.state.infra.engine  # type: ignore[attr-defined]
    return engine


def _published_at(client: TestClient) -> list[object]:
    with Session(_engine(client)) as session:
        return list(session.exec(select(OutboxMessage.published_at)).all())


def _open(client: TestClient, wheel_id: str = "sormland") -> str:
    response = client.post("/mappings", json={"case_id": CASE, "wheel_id": wheel_id}, headers=BBA)
    assert response.status_code == 201, response.text
    mapping_id: str = response.json()["id"]
    return mapping_id


def _put(client: TestClient, mapping_id: str, area: str, perspective: str, level: str,
         note: str | None = None) -> dict[str, Any]:
    response = client.put(f"/mappings/{mapping_id}/areas/{area}/perspectives/{perspective}",
                          json={"level": level, "note": note}, headers=BBA)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _complete(client: TestClient, mapping_id: str) -> dict[str, Any]:
    assert client.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=BBA).status_code == 200
    response = client.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 2}, headers=BBA)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_childs_wheel_history_over_three_mappings_and_two_perspectives(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mappings = []
        # trygghet from the professional's view and the child's own; hemmet only from the professional's.
        for professional, child, home in (("serious_concern", "some_concern", "some_concern"),
                                          ("some_concern", "some_concern", None),
                                          ("no_concern", "unknown", "no_concern")):
            mapping_id = _open(client)
            # The old route still records the professional's assessment.
            old = client.put(f"/mappings/{mapping_id}/areas/trygghet", json={"level": professional}, headers=BBA)
            assert old.status_code == 200, old.text
            assert old.json()["perspective"] == "professional"
            said = _put(client, mapping_id, "trygghet", "child", child, note="Jag är rädd när de bråkar.")
            assert (said["perspective"], said["level"]) == ("child", child)
            if home:
                _put(client, mapping_id, "hemmet", "professional", home)
            _complete(client, mapping_id)
            mappings.append(mapping_id)
        first, second, third = mappings

        history = client.get(f"/cases/{CASE}/wheel-history", headers=BBA)
        assert history.status_code == 200, history.text
        body = history.json()
        assert body["case_id"] == CASE
        assert [m["mapping_id"] for m in body["mappings"]] == mappings
        series = {(a["area_code"], a["perspective"]): a["points"] for a in body["areas"]}
        assert set(series) == {("trygghet", "professional"), ("trygghet", "child"), ("hemmet", "professional")}
        assert [(p["mapping_id"], p["level"], p["value"], p["previous_mapping_id"], p["change"])
                for p in series[("trygghet", "professional")]] == [
            (first, "serious_concern", 3, None, None),
            (second, "some_concern", 2, first, -1),
            (third, "no_concern", 1, second, -1)]
        # The child still worried at the second mapping; at the third could not say: no number to compare.
        assert [(p["level"], p["previous_level"], p["change"]) for p in series[("trygghet", "child")]] == [
            ("some_concern", None, None), ("some_concern", "some_concern", 0), ("unknown", "some_concern", None)]
        # hemmet was not assessed in the second mapping: the change is since the mapping that last assessed it.
        assert [(p["mapping_id"], p["previous_mapping_id"], p["change"])
                for p in series[("hemmet", "professional")]] == [(first, None, None), (third, first, -1)]

        # The child's worry is heard and shown but does not by itself flag the area: the professional's does.
        mapping = client.get(f"/mappings/{third}", headers=BBA).json()
        assert [(a["area_code"], a["perspective"]) for a in mapping["areas"]] == [
            ("hemmet", "professional"), ("trygghet", "professional"), ("trygghet", "child")]
        assert mapping["flagged_areas"] == []
        assert client.get(f"/mappings/{first}", headers=BBA).json()["flagged_areas"] == ["hemmet", "trygghet"]

        # Need-to-know as the rest of mapping: a BBA of another unit and an auditor hold no relation to the child.
        for outsider in (bearer("school", "bba", "bba.sodraskolan"), bearer("school", "auditor")):
            assert client.get(f"/cases/{CASE}/wheel-history", headers=outsider).status_code == 403
        assert client.get("/cases/unknown-case/wheel-history", headers=BBA).status_code == 404
        with Session(_engine(client)) as session:
            actions = session.exec(select(AuditRecord.action).where(col(AuditRecord.outcome) != "denied")).all()
        assert actions.count("mapping.wheel_history") == 1
        assert actions.count("mapping.record_child") == 3


def test_a_perspective_is_checked_against_the_wheel_and_writes_nothing_when_refused(
        tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _open(client)
        refusals = [
            (f"/mappings/{mapping_id}/areas/trygghet/perspectives/teacher", {"level": "no_concern"}, "perspective"),
            (f"/mappings/{mapping_id}/areas/trygghet/perspectives/child", {"level": "4"}, "level"),
            (f"/mappings/{mapping_id}/areas/safe/perspectives/child", {"level": "no_concern"}, "area_code"),
            (f"/mappings/{mapping_id}/areas/trygghet/perspectives/child", {"level": "no_concern", "mood": "glad"},
             "mood"),
        ]
        for path, body, field in refusals:
            response = client.put(path, json=body, headers=BBA)
            assert response.status_code == 422, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert field in [error["field"] for error in response.json()["errors"]], response.text
        with Session(_engine(client)) as session:
            assert session.exec(select(func.count()).select_from(AreaAssessment)).one() == 0


def test_a_mapping_reads_on_the_other_wheel_through_the_declared_correspondence(
        tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _open(client)
        _put(client, mapping_id, "trygghet", "professional", "serious_concern")
        _put(client, mapping_id, "hemmet", "professional", "no_concern")
        _put(client, mapping_id, "hemmet", "guardians", "some_concern")
        _put(client, mapping_id, "larande", "child", "no_concern")

        read = client.get(f"/mappings/{mapping_id}/as/girfec", headers=BBA)
        assert read.status_code == 200, read.text
        body = read.json()
        assert (body["wheel_id"], body["as_wheel_id"], body["correspondence_id"]) == (
            "sormland", "girfec", "sormland-girfec")
        areas = {(a["area_code"], a["perspective"]): a for a in body["areas"]}
        # Safe gathers trygghet and hemmet (sormland-girfec.correspondence.json), in Sörmland's order.
        safe = areas[("safe", "professional")]
        assert [(f["area_code"], f["level"]) for f in safe["from_areas"]] == [
            ("hemmet", "no_concern"), ("trygghet", "serious_concern")]
        assert safe["flagged"] is True and safe["label_en"] == "Safe"
        assert areas[("nurtured", "professional")]["flagged"] is False
        assert areas[("nurtured", "guardians")]["flagged"] is True
        assert areas[("achieving", "child")]["from_areas"] == [
            {"area_code": "larande", "level": "no_concern", "value": 1, "flags": False}]
        # In GIRFEC's order; healthy, active and the rest have nothing assessed behind them.
        assert [(a["area_code"], a["perspective"]) for a in body["areas"]] == [
            ("safe", "professional"), ("safe", "guardians"), ("achieving", "child"), ("nurtured", "professional"),
            ("nurtured", "guardians")]
        assert body["not_covered"] == ["healthy", "active", "respected", "responsible", "included"]

        # The correspondence reads both ways: a GIRFEC mapping reads on the Sörmland wheel.
        girfec = _open(client, "girfec")
        _put(client, girfec, "safe", "child", "serious_concern")
        back = client.get(f"/mappings/{girfec}/as/sormland", headers=BBA).json()
        assert [(a["area_code"], a["perspective"], a["flagged"]) for a in back["areas"]] == [
            ("hemmet", "child", True), ("trygghet", "child", True)]

        for path, status in ((f"/mappings/{mapping_id}/as/moon", 404), (f"/mappings/{mapping_id}/as/sormland", 404),
                             (f"/mappings/{mapping_id}/as/Not%20a%20wheel", 422)):
            response = client.get(path, headers=BBA)
            assert response.status_code == status, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        assert client.get(f"/mappings/{mapping_id}/as/girfec", headers=bearer("school", "auditor")).status_code == 403


def test_the_wheel_picture_is_svg_with_every_area_and_no_identity(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        mapping_id = _open(client)
        _put(client, mapping_id, "trygghet", "professional", "serious_concern")
        _put(client, mapping_id, "trygghet", "child", "some_concern", note="Jag vill inte gå hem.")
        _put(client, mapping_id, "hemmet", "guardians", "unknown")

        response = client.get(f"/mappings/{mapping_id}/wheel.svg", headers=BBA)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert response.headers["cache-control"] == "no-store"
        root = ET.fromstring(response.content)
        assert root.tag == f"{SVG}svg"
        texts = [element.text for element in root.iter() if element.text]
        sormland = wheel.latest("sormland")
        assert sormland is not None
        for area in sormland.areas:
            assert area.label_sv in texts
        groups = {group.get("data-area"): group for group in root.iter(f"{SVG}g")}
        assert list(groups) == [area.code for area in sormland.areas]
        cells = {(code, path.get("data-perspective")): path.get("data-level")
                 for code, group in groups.items() for path in group.iter(f"{SVG}path")}
        assert len(cells) == 7 * 3  # one ring per perspective in every sector
        assert cells[("trygghet", "professional")] == "serious_concern"
        assert cells[("trygghet", "child")] == "some_concern"
        assert cells[("hemmet", "guardians")] == "unknown"
        assert cells[("halsa", "child")] == ""
        # Nothing that names the child or the record: not the personnummer, case, mapping or any free text.
        document = response.content.decode()
        for identity in (CHILD, CHILD.replace("-", ""), "130412", CASE, mapping_id, "Jag vill inte gå hem."):
            assert identity not in document

        assert client.get(f"/mappings/{mapping_id}/wheel.svg", headers=bearer("region", "bba")).status_code == 403
        assert client.get("/mappings/nope/wheel.svg", headers=BBA).status_code == 404
        with Session(_engine(client)) as session:
            assert session.exec(select(func.count()).select_from(AuditRecord).where(
                col(AuditRecord.action) == "mapping.wheel_picture")).one() == 1


def test_a_municipality_adds_its_own_wheel_and_scale_from_a_folder(tmp_path: Path, nats_url: str) -> None:
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "orebro-v1.json").write_text(json.dumps(OREBRO), encoding="utf-8")
    (folder / "orebro-sormland.correspondence.json").write_text(json.dumps(OREBRO_SORMLAND), encoding="utf-8")
    with _client(tmp_path, nats_url, wheels_dir=folder, peers=["school", "region", "social"]) as client:
        listed = [(w["id"], w["version"]) for w in client.get("/wheels", headers=BBA).json()]
        assert listed == [("girfec", 1), ("orebro", 1), ("sormland", 1)]
        shown = client.get("/wheels/orebro", headers=BBA).json()
        assert [step["code"] for step in shown["scale"]["steps"]] == ["1", "2", "3", "4", "5"]
        assert shown["areas"][0]["description_sv"] == "Sömn, mat, rörelse och hur barnet mår."

        declared = client.get("/correspondences", headers=bearer("school", "auditor"))
        assert declared.status_code == 200, declared.text
        assert [c["id"] for c in declared.json()] == ["sormland-girfec", "orebro-sormland"]

        mapping_id = _open(client, "orebro")
        # The level follows this wheel's scale of 1 to 5: the packaged wheels' codes are no step of it.
        wrong = client.put(f"/mappings/{mapping_id}/areas/familj", json={"level": "serious_concern"}, headers=BBA)
        assert wrong.status_code == 422
        assert wrong.json()["errors"][0]["field"] == "level"
        assert "1, 2, 3, 4, 5, unknown" in wrong.json()["detail"]
        assert _put(client, mapping_id, "familj", "professional", "5")["value"] == 5
        _put(client, mapping_id, "skola", "professional", "2")
        _put(client, mapping_id, "familj", "child", "4")
        completed = _complete(client, mapping_id)
        assert completed["flagged_areas"] == ["familj"]
        assert completed["suggested_orgs"] == ["social"]

        read = client.get(f"/mappings/{mapping_id}/as/sormland", headers=BBA).json()
        assert [(a["area_code"], a["perspective"], a["flagged"]) for a in read["areas"]] == [
            ("larande", "professional", False), ("omsorg", "professional", True), ("omsorg", "child", True),
            ("hemmet", "professional", True), ("hemmet", "child", True)]
        picture = ET.fromstring(client.get(f"/mappings/{mapping_id}/wheel.svg", headers=BBA).content)
        assert [g.get("data-area") for g in picture.iter(f"{SVG}g")] == ["kropp", "skola", "familj", "kompisar"]


@pytest.mark.parametrize(("name", "content", "says"), [
    ("broken.json", "{ not json", "broken.json"),
    ("no-scale-flags.json", json.dumps({**OREBRO, "scale": {"steps": [
        {"code": "1", "value": 1, "label_sv": "Bra", "label_en": "Good", "flags": False},
        {"code": "2", "value": 2, "label_sv": "Dåligt", "label_en": "Poor", "flags": False}]}}),
     "at least one scale step must flag"),
    ("twice.json", json.dumps({**OREBRO, "areas": OREBRO["areas"] * 2}), "area codes must be unique"),
    ("sormland-again.json", json.dumps({**OREBRO, "id": "sormland"}), "sormland v1 is already defined"),
    ("typo.correspondence.json", json.dumps({**OREBRO_SORMLAND, "wheels": ["sormland", "girfec"]}),
     "are not areas of sormland"),
])
def test_a_malformed_wheel_file_stops_start_up_naming_the_file(tmp_path: Path, nats_url: str, name: str,
                                                               content: str, says: str) -> None:
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / name).write_text(content, encoding="utf-8")
    settings = MappingSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data", wheels_dir=folder)
    with pytest.raises(WheelError) as refused:
        create_app(settings)
    assert says in str(refused.value)
    assert name in str(refused.value)


def test_a_missing_wheels_folder_stops_start_up(tmp_path: Path, nats_url: str) -> None:
    settings = MappingSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data",
                               wheels_dir=tmp_path / "nowhere")
    with pytest.raises(WheelError, match="does not exist"):
        create_app(settings)
