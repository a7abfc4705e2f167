"""Completing a mapping names the real members of the federation serving the child's municipality, with roles."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tillsammans_common.settings import FederationMember, OrgKind
from tillsammans_common.testing import bearer, seed_case, wait_for
from tillsammans_common.wheel import latest
from tillsammans_mapping.config import MappingSettings
from tillsammans_mapping.main import create_app
from tillsammans_mapping.service import suggest

from .test_mapping_flow import ANSWERS, COMPLETED_SUBJECT, _last_on_stream, _published_at

BBA = bearer("school", "bba", "bba.norrskolan")
CASE = "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
ESKILSTUNA, STRANGNAS, UPPSALA, ELSEWHERE = "0484", "0486", "0380", "2080"
FEDERATION = {
    "school": FederationMember(kind=OrgKind.EDUCATION, name="Eskilstuna kommun, skola",
                                 municipalities=frozenset({ESKILSTUNA})),
    "strskola": FederationMember(kind=OrgKind.EDUCATION, name="Strängnäs kommun, skola",
                                 municipalities=frozenset({STRANGNAS})),
    "eskso": FederationMember(kind=OrgKind.SOCIAL_SERVICES, name="Eskilstuna kommun, socialtjänsten",
                              municipalities=frozenset({ESKILSTUNA})),
    "strso": FederationMember(kind=OrgKind.SOCIAL_SERVICES, name="Strängnäs kommun, socialtjänsten",
                              municipalities=frozenset({STRANGNAS})),
    "sormland": FederationMember(kind=OrgKind.HEALTH_CARE, name="Region Sörmland", counties=frozenset({"04"})),
    "uppsala": FederationMember(kind=OrgKind.HEALTH_CARE, name="Region Uppsala", counties=frozenset({"03"})),
}


def _settings(tmp_path: Path, nats_url: str = "nats://127.0.0.1:1", *, org: str = "school",
              peers: list[str] | None = None) -> MappingSettings:
    return MappingSettings(org=org, nats_url=nats_url, data_dir=tmp_path / "data", federation=FEDERATION,
                           peers=peers if peers is not None else list(FEDERATION))


@pytest.mark.parametrize(("municipality", "areas", "expected"), [
    (ESKILSTUNA, ["hemmet"], ["eskso"]),
    (STRANGNAS, ["hemmet"], ["strso"]),
    (ESKILSTUNA, ["halsa"], ["sormland"]),
    (STRANGNAS, ["halsa"], ["sormland"]),  # one region serves every municipality of its county
    (UPPSALA, ["halsa"], ["uppsala"]),
    (UPPSALA, ["hemmet"], []),  # no social services of Uppsala in the federation: nobody to suggest
    (ELSEWHERE, ["halsa", "hemmet", "larande"], []),  # a municipality nobody serves
    (STRANGNAS, ["larande"], ["strskola"]),  # another municipality's schools, never this organisation
    (ESKILSTUNA, ["larande"], []),  # this organisation is already involved
    (ESKILSTUNA, ["relationer", "utveckling"], ["sormland", "eskso"]),  # wheel order, each member once
    (None, ["hemmet"], ["eskso", "strso"]),  # municipality unknown (or protected): every member of the kind
], ids=["esk-social", "str-social", "esk-health", "str-health-by-county", "upp-health", "upp-no-social",
        "nobody-serves", "other-schools", "not-itself", "wheel-order", "unknown-municipality"])
def test_a_kind_resolves_to_the_members_serving_the_childs_municipality(
        tmp_path: Path, municipality: str | None, areas: list[str], expected: list[str]) -> None:
    wheel = latest("sormland")
    assert wheel is not None
    found = suggest(_settings(tmp_path), wheel, areas, municipality=municipality)
    assert [s.org for s in found] == expected
    for suggestion in found:
        assert suggestion.kind is FEDERATION[suggestion.org].kind
        assert suggestion.name == FEDERATION[suggestion.org].name


def test_only_peers_are_suggested(tmp_path: Path) -> None:
    wheel = latest("sormland")
    assert wheel is not None
    settings = _settings(tmp_path, peers=["school", "sormland"])
    assert [s.org for s in suggest(settings, wheel, ["halsa", "hemmet"], municipality=ESKILSTUNA)] == ["sormland"]


def test_completion_over_http_names_the_members_serving_the_child_with_roles_and_areas(
        tmp_path: Path, nats_url: str) -> None:
    with TestClient(create_app(_settings(tmp_path, nats_url))) as client:
        # The child lives in Strängnäs and goes to school in Eskilstuna: Strängnäs' social services serve it.
        seed_case(client.app.state.infra.engine, client.app.state.settings,  # type: ignore[attr-defined]
                  case_id=CASE, personnummer="20130412-1237", municipality_code=STRANGNAS)
        opened = client.post("/mappings", json={"case_id": CASE}, headers=BBA)
        assert opened.status_code == 201, opened.text
        assert opened.json()["suggestions"] is None
        mapping_id = opened.json()["id"]
        for area, level in (("hemmet", "serious_concern"), ("relationer", "some_concern"), ("halsa", "no_concern")):
            put = client.put(f"/mappings/{mapping_id}/areas/{area}", json={"level": level}, headers=BBA)
            assert put.status_code == 200, put.text
        assert client.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=BBA).status_code == 200
        completed = client.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 2}, headers=BBA)
        assert completed.status_code == 200, completed.text
        body = completed.json()
        assert body["suggestions"] == [
            {"org": "strso", "name": "Strängnäs kommun, socialtjänsten", "kind": "social_services",
             "roles": ["social_worker", "family_therapist"], "areas": ["hemmet", "relationer"],
             "role_labels_sv": ["Socialsekreterare, barn och unga", "Familjebehandlare"]},
            {"org": "sormland", "name": "Region Sörmland", "kind": "health_care", "roles": ["bup"],
             "areas": ["relationer"], "role_labels_sv": ["Barn- och ungdomspsykiatrin (BUP)"]},
        ]
        assert body["suggested_orgs"] == ["strso", "sormland"]
        assert client.get(f"/mappings/{mapping_id}", headers=BBA).json() == body

        wait_for(lambda: all(_published_at(client)), message="outbox drained to NATS")
        envelope = asyncio.run(_last_on_stream(nats_url, COMPLETED_SUBJECT))
        assert [(s["org"], s["roles"]) for s in envelope["data"]["suggestions"]] == [
            ("strso", ["social_worker", "family_therapist"]), ("sormland", ["bup"])]
