"""The directory stays current: SS 12000 import and refresh (all or nothing), confirmation and the stale list."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from tillsammans_common.db import utcnow
from tillsammans_common.testing import bearer
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app
from tillsammans_intake.models import Unit

ADMIN = bearer("school", "admin", "drift.olle")
READER = bearer("school", "professional", "mentor.anna")
EXPORT: dict[str, Any] = {
    "organisations": [
        {"id": "0d3f0a4e-0000-4000-8000-000000000001", "displayName": "Eskilstuna kommun",
         "organisationType": "Huvudman", "municipalityCode": "0484"},
        {"id": "0d3f0a4e-0000-4000-8000-000000000002", "displayName": "Norrskolan F-6",
         "organisationCode": "norrskolan",
         "organisationType": "Skolenhet", "schoolTypes": ["FKLASS", "GR", "FTH"], "municipalityCode": "0484",
         "email": "norrskolan@example.se"},
        {"id": "0d3f0a4e-0000-4000-8000-000000000003", "displayName": "Ängsskolan", "organisationCode": "angsskolan",
         "organisationType": "Skolenhet", "schoolTypes": ["GR"], "municipalityCode": "0482"},
        {"id": "0d3f0a4e-0000-4000-8000-000000000004", "displayName": "Förskolan Lärkan", "organisationCode": "larkan",
         "organisationType": "Skolenhet", "schoolTypes": ["FS"], "municipalityCode": "0484"},
        {"id": "0d3f0a4e-0000-4000-8000-000000000005", "displayName": "Vuxenutbildningen",
         "organisationType": "Skolenhet", "schoolTypes": ["VUX"], "municipalityCode": "0484"},
    ],
    "persons": [
        {"id": "p1", "givenName": "Rut", "familyName": "Rektorsson",
         "eduPersonPrincipalNames": ["rut.r@eskilstuna.se"]},
        {"id": "p2", "givenName": "Bo", "familyName": "Biträdande",
         "eduPersonPrincipalNames": ["bo.b@eskilstuna.se"]},
        {"id": "p3", "givenName": "Åsa", "familyName": "Ängel",
         "eduPersonPrincipalNames": ["asa.a@eskilstuna.se"]},
        {"id": "p4", "givenName": "Lo", "familyName": "Lärkansdotter",
         "eduPersonPrincipalNames": ["lo.l@eskilstuna.se"]},
    ],
    "duties": [
        {"id": "d1", "person": {"id": "p1"}, "dutyAt": {"id": "0d3f0a4e-0000-4000-8000-000000000002"},
         "dutyRole": "Rektor", "dutyPercent": 100},
        {"id": "d2", "person": {"id": "p2"}, "dutyAt": {"id": "0d3f0a4e-0000-4000-8000-000000000002"},
         "dutyRole": "Övrig arbetsledning"},
        {"id": "d3", "person": {"id": "p3"}, "dutyAt": {"id": "0d3f0a4e-0000-4000-8000-000000000003"},
         "dutyRole": "Rektor"},
        {"id": "d4", "person": {"id": "p4"}, "dutyAt": {"id": "0d3f0a4e-0000-4000-8000-000000000004"},
         "dutyRole": "Förskolechef"},
    ],
}


def _client(tmp_path: Path, nats_url: str, **settings: Any) -> TestClient:
    return TestClient(create_app(IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data",
                                                **settings)))


def _units(client: TestClient, **params: str) -> dict[str, dict[str, Any]]:
    response = client.get("/units", params=params, headers=READER)
    assert response.status_code == 200, response.text
    return {unit["id"]: unit for unit in response.json()}


def test_an_ss12000_import_creates_and_refreshes_units_and_confirms_them(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        # An admin narrowed Norrskolan to F-6: SS 12000 knows school types, not years, so a refresh keeps that.
        before = _units(client)["norrskolan"]
        imported = client.post("/directory/import", json=EXPORT, headers=ADMIN)
        assert imported.status_code == 200, imported.text
        result = imported.json()
        assert (result["created"], result["updated"], result["not_in_export"]) == (
            ["angsskolan", "larkan"], ["norrskolan"], [])
        units = _units(client)
        norr = units["norrskolan"]
        assert (norr["bba_user"], norr["bba_name"], norr["deputies"]) == (
            "rut.r@eskilstuna.se", "Rut Rektorsson", ["bo.b@eskilstuna.se"])
        assert (norr["min_age"], norr["max_age"]) == (before["min_age"], before["max_age"]) == (6, 12)
        assert norr["source"] == "ss12000" and norr["confirmed_at"] == result["confirmed_at"] and not norr["stale"]
        assert norr["confirmed_at"] > before["confirmed_at"]
        assert (units["angsskolan"]["kind"], units["angsskolan"]["min_age"], units["angsskolan"]["max_age"]) == (
            "school", 7, 15)
        assert (units["larkan"]["kind"], units["larkan"]["min_age"], units["larkan"]["max_age"]) == ("preschool", 1, 5)
        assert "vuxenutbildningen" not in units and "0d3f0a4e-0000-4000-8000-000000000005" not in units

        # The refresh: a new head at Ängsskolan, and Lärkan gone from the export (kept, to go stale).
        refreshed = copy.deepcopy(EXPORT)
        refreshed["organisations"] = [o for o in refreshed["organisations"] if o.get("organisationCode") != "larkan"]
        refreshed["duties"][2]["person"] = {"id": "p2"}
        again = client.post("/directory/import", json=refreshed, headers=ADMIN).json()
        assert (again["created"], again["updated"], again["not_in_export"]) == (
            [], ["norrskolan", "angsskolan"], ["larkan"])
        units = _units(client)
        assert units["angsskolan"]["bba_user"] == "bo.b@eskilstuna.se"
        assert units["larkan"]["confirmed_at"] == result["confirmed_at"]

        # The imported unit takes its children at once: Ängsskolan is Flen's school, and its new BBA gets the concern.
        concern = client.post("/concerns", headers=READER, json={
            "child": {"personnummer": "20130412-1237", "name": "Testbarn"}, "home_municipality": "0482",
            "child_stage": "compulsory_school", "wheel_areas": ["larande"], "description": "Oro."}).json()
        assert (concern["unit_id"], concern["bba_user"], concern["routed_by"]) == (
            "angsskolan", "bo.b@eskilstuna.se", "stage")


def test_a_malformed_import_changes_nothing(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url) as client:
        before = _units(client)
        no_person = copy.deepcopy(EXPORT)
        no_person["duties"][3]["person"] = {"id": "p9"}  # the last unit is the one that fails
        no_bba = copy.deepcopy(EXPORT)
        no_bba["duties"] = no_bba["duties"][:2]
        bad_code = copy.deepcopy(EXPORT)
        bad_code["organisations"][2]["organisationCode"] = "Ängs skolan"
        duplicate = copy.deepcopy(EXPORT)
        duplicate["organisations"][3]["organisationCode"] = "NORRSKOLAN"
        ended = copy.deepcopy(EXPORT)
        ended["duties"][3]["endDate"] = (utcnow() - timedelta(days=1)).date().isoformat()
        placements = {**EXPORT, "placements": [{"id": "x", "child": {"id": "c1"}, "placedAt": {"id": "y"}}]}
        cases = [
            (no_person, "duties.3.person"), (no_bba, "duties"), (bad_code, "organisations.2.organisationCode"),
            (duplicate, "organisations.3.organisationCode"), (ended, "duties"), (placements, "placements"),
            ({**EXPORT, "groups": []}, "groups"), ({"persons": []}, "organisations"),
            ({**EXPORT, "organisations": [{**EXPORT["organisations"][1], "municipalityCode": "484"}]},
             "organisations.0.municipalityCode"),
        ]
        for export, field in cases:
            refused = client.post("/directory/import", json=export, headers=ADMIN)
            assert refused.status_code == 422, (field, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["errors"][0]["field"] == field
        assert _units(client) == before
        assert client.post("/directory/import", json=EXPORT, headers=READER).status_code == 403


def test_the_stale_list_and_confirmation(tmp_path: Path, nats_url: str) -> None:
    with _client(tmp_path, nats_url, stale_after_days=30) as client:
        assert _units(client, stale="true") == {}
        with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
            unit = session.get(Unit, "solrosen")
            assert unit is not None
            unit.confirmed_at = utcnow() - timedelta(days=31)
            session.add(unit)
            session.commit()
        created = client.put("/units/lillskolan", headers=ADMIN, json={
            "name": "Lillskolan", "kind": "school", "bba_user": "bba.lill", "bba_name": "BBA Lill",
            "municipality_code": "0484", "deputies": ["bitr.lill"]})
        assert created.status_code == 200, created.text
        assert (created.json()["min_age"], created.json()["max_age"], created.json()["confirmed_at"]) == (6, 15, None)
        stale = _units(client, stale="true")
        assert sorted(stale) == ["lillskolan", "solrosen"] and all(unit["stale"] for unit in stale.values())
        assert "solrosen" not in _units(client, stale="false")

        confirmed = client.post("/units/solrosen/confirm", headers=ADMIN)
        assert confirmed.status_code == 200 and not confirmed.json()["stale"]
        assert sorted(_units(client, stale="true")) == ["lillskolan"]
        assert client.post("/units/solrosen/confirm", headers=READER).status_code == 403
        assert client.post("/units/nosuchunit/confirm", headers=ADMIN).status_code == 404

        for body, field in (({"min_age": 10, "max_age": 7}, "max_age"), ({"municipality_code": "Eskilstuna"},
                            "municipality_code"), ({"kind": "intake_desk", "min_age": 30}, "min_age"),
                            ({"deputies": [""]}, "deputies.0"), ({"region": "04"}, "region")):
            refused = client.put("/units/lillskolan", headers=ADMIN, json={
                "name": "Lillskolan", "kind": "school", "bba_user": "bba.lill", "bba_name": "BBA Lill", **body})
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field, refused.text


def test_the_directory_file_can_be_an_ss12000_export_loaded_at_every_start(tmp_path: Path, nats_url: str) -> None:
    export = tmp_path / "ss12000.json"
    export.write_text(json.dumps(EXPORT), encoding="utf-8")
    with _client(tmp_path, nats_url, directory_file=export) as client:
        units = _units(client)
        assert sorted(units) == ["angsskolan", "larkan", "norrskolan"]
        first = units["norrskolan"]["confirmed_at"]
        assert (units["norrskolan"]["min_age"], units["norrskolan"]["max_age"]) == (6, 15)
    with _client(tmp_path, nats_url, directory_file=export) as client:
        assert _units(client)["norrskolan"]["confirmed_at"] > first
