"""A child's case as the unit of access at intake: one case per child, need-to-know, delegation, protected identity."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.testing import bearer, wait_for
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app

CHILD = {"personnummer": "20130412-1237", "name": "Testbarn Testsson"}
OTHER_CHILD = {"personnummer": "20150101-2387", "name": "Annat Barn"}
CONCERN = {"unit_id": "norrskolan", "child": CHILD, "wheel_areas": ["trygghet"], "description": "Frånvaron har ökat."}

MENTOR = bearer("school", "professional", "mentor.anna")
BBA = bearer("school", "bba", "bba.norrskolan")
OTHER_BBA = bearer("school", "bba", "bba.solrosen")
KURATOR = bearer("school", "professional", "kurator.karin")


@pytest.fixture
def client(tmp_path: Path, nats_url: str) -> Iterator[TestClient]:
    """Intake of the school, on a real nats-server and SQLite file."""
    settings = IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as running:
        yield running


def _raise(client: TestClient, body: dict[str, object], headers: dict[str, str] = MENTOR) -> dict[str, object]:
    response = client.post("/concerns", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _events(client: TestClient, subject: str) -> list[dict[str, object]]:
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        rows = session.exec(select(OutboxMessage.body).where(OutboxMessage.nats_subject == subject)).all()
    return [orjson.loads(row)["data"] for row in rows]


def _audit(client: TestClient) -> list[AuditRecord]:
    with Session(client.app.state.infra.engine) as session:  # type: ignore[attr-defined]
        return list(session.exec(select(AuditRecord).order_by(col(AuditRecord.id))).all())


def test_one_case_per_child_whoever_raises_and_whichever_unit_they_name(client: TestClient) -> None:
    first = _raise(client, CONCERN)
    # Another professional names another unit: the concern joins the child's case, which stays where it is.
    second = _raise(client, {**CONCERN, "unit_id": "solrosen", "child": {**CHILD, "personnummer": "201304121237"}},
                    headers=KURATOR)
    other = _raise(client, {**CONCERN, "child": OTHER_CHILD})
    assert first["case_id"] == second["case_id"] != other["case_id"]
    assert second["bba_user"] == "bba.norrskolan"
    recorded = _events(client, "school.intake.case.recorded.v1")
    assert sorted(str(event["case_id"]) for event in recorded) == sorted([str(first["case_id"]),
                                                                          str(other["case_id"])])
    case = client.get(f"/cases/{first['case_id']}", headers=BBA)
    assert case.status_code == 200, case.text
    assert [c["id"] for c in case.json()["concerns"]] == [first["id"], second["id"]]


def test_the_raiser_sees_the_status_not_the_child(client: TestClient) -> None:
    concern = _raise(client, CONCERN)
    status = client.get(f"/concerns/{concern['id']}/status", headers=MENTOR)
    assert status.status_code == 200
    assert status.json() == {"id": concern["id"], "case_id": concern["case_id"], "status": "routed",
                             "created_at": concern["created_at"]}
    assert "child_name" not in status.text
    assert client.get(f"/concerns/{concern['id']}", headers=MENTOR).status_code == 403
    assert client.get(f"/concerns/{concern['id']}/status", headers=KURATOR).status_code == 403


@pytest.mark.parametrize("headers", [OTHER_BBA, KURATOR, bearer("school", "auditor", "granskare.eva"),
                                     bearer("school", "admin", "operator.anna"),
                                     bearer("school", "coordinator", "samordnare.sam")])
def test_no_relation_no_child(client: TestClient, headers: dict[str, str]) -> None:
    concern = _raise(client, CONCERN)
    for path in (f"/concerns/{concern['id']}", f"/cases/{concern['case_id']}"):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 403, path
        assert refused.headers["content-type"] == "application/problem+json"
        assert "Testbarn" not in refused.text and "201304121237" not in refused.text
    assert client.get("/cases", headers=headers).json() == []
    denied = [r for r in _audit(client) if r.outcome == "denied"]
    assert {r.case_id for r in denied} == {concern["case_id"]}
    assert all(r.basis is None and r.reason for r in denied)


def test_the_bba_delegates_for_a_period_and_takes_it_back(client: TestClient) -> None:
    concern = _raise(client, CONCERN)
    case_path = f"/cases/{concern['case_id']}"
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    # Only the case's BBA delegates; not another unit's, and not the colleague for themself.
    assert client.post(f"{case_path}/delegations", json={"delegate_user": "kurator.karin", "valid_until": until},
                       headers=OTHER_BBA).status_code == 403
    too_long = client.post(f"{case_path}/delegations", headers=BBA, json={
        "delegate_user": "kurator.karin", "valid_until": (datetime.now(UTC) + timedelta(days=400)).isoformat()})
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "valid_until"
    extra = client.post(f"{case_path}/delegations", headers=BBA,
                        json={"delegate_user": "kurator.karin", "valid_until": until, "scope": "all"})
    assert extra.status_code == 422

    created = client.post(f"{case_path}/delegations", json={"delegate_user": "kurator.karin", "valid_until": until},
                          headers=BBA)
    assert created.status_code == 201, created.text
    delegation = created.json()
    assert client.get(case_path, headers=KURATOR).status_code == 200
    assert client.get(f"/concerns/{concern['id']}", headers=KURATOR).status_code == 200
    assert [c["case_id"] for c in client.get("/cases", headers=KURATOR).json()] == [concern["case_id"]]
    # A delegate acts for the BBA on the case but does not hand it on.
    assert client.post(f"{case_path}/delegations", json={"delegate_user": "mentor.anna", "valid_until": until},
                       headers=KURATOR).status_code == 403
    events = _events(client, "school.intake.case.delegation.v1")
    assert [e["delegate_user"] for e in events] == ["kurator.karin"]

    revoked = client.post(f"{case_path}/delegations/{delegation['id']}/revoke", headers=BBA)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert client.post(f"{case_path}/delegations/{delegation['id']}/revoke", headers=BBA).status_code == 409
    assert client.get(case_path, headers=KURATOR).status_code == 403
    assert client.get("/cases", headers=KURATOR).json() == []
    assert [e["revoked"] for e in _events(client, "school.intake.case.delegation.v1")].count(True) == 1
    bases = {(r.user, r.action): r.basis for r in _audit(client) if r.outcome == "ok"}
    assert bases[("kurator.karin", "case.read")] == "delegate"
    assert bases[("bba.norrskolan", "case.delegate")] == "bba-of-unit"


def test_lists_hold_only_the_callers_cases(client: TestClient) -> None:
    mine = _raise(client, CONCERN)
    theirs = _raise(client, {**CONCERN, "unit_id": "solrosen", "child": OTHER_CHILD})
    assert [c["case_id"] for c in client.get("/cases", headers=BBA).json()] == [mine["case_id"]]
    assert [c["case_id"] for c in client.get("/cases", headers=OTHER_BBA).json()] == [theirs["case_id"]]
    inbox = wait_for(lambda: client.get("/inbox", headers=BBA).json(), message="inbox item")
    assert [item["case_id"] for item in inbox] == [mine["case_id"]]


def test_protected_identity_narrows_every_output_and_event(client: TestClient) -> None:
    concern = _raise(client, {**CONCERN, "child": {**CHILD, "protected_identity": True}})
    read = client.get(f"/concerns/{concern['id']}", headers=BBA).json()
    assert read["protected_identity"] is True and read["unit_id"] is None
    listed = client.get("/cases", headers=BBA).json()
    assert listed[0]["child_name"] == "(skyddad identitet)" and listed[0]["unit_id"] is None
    inbox = wait_for(lambda: client.get("/inbox", headers=BBA).json(), message="inbox item")
    assert inbox[0]["unit_id"] is None
    for subject in ("school.intake.case.recorded.v1", "school.intake.concern.raised.v1",
                    "school.intake.concern.routed.v1"):
        assert [event["unit_id"] for event in _events(client, subject)] == [None], subject
    # A later concern that does not repeat the marking keeps it: once marked, always marked.
    later = _raise(client, CONCERN)
    assert later["protected_identity"] is True and later["unit_id"] is None
    reads = [r for r in _audit(client) if r.action == "concern.read"]
    assert reads and all(r.protected for r in reads)


def test_the_intake_desk_hands_a_case_to_the_childs_unit_and_its_access_goes_with_it(client: TestClient) -> None:
    desk = bearer("school", "bba", "mottagning.bou")
    # No unit and no municipality: no rule can route it, so it goes to the intake desk, never nowhere.
    concern = _raise(client, {"child": CHILD, "wheel_areas": ["trygghet"], "description": "Oro."})
    assert (concern["unit_id"], concern["bba_user"]) == ("mottagning", "mottagning.bou")
    case_id = concern["case_id"]
    wait_for(lambda: any(item["case_id"] == case_id for item in client.get("/inbox", headers=desk).json()),
             message="the concern in the desk's inbox")
    assert client.get(f"/cases/{case_id}", headers=BBA).status_code == 403

    for body, field in (({"unit_id": "ingen-sadan", "reason": "x"}, "unit_id"),
                        ({"unit_id": "norrskolan", "reason": ""}, "reason"),
                        ({"unit_id": "norrskolan"}, "reason")):
        refused = client.post(f"/cases/{case_id}/transfer", json=body, headers=desk)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field, refused.text
    assert client.post(f"/cases/{case_id}/transfer", json={"unit_id": "norrskolan", "reason": "x"},
                       headers=MENTOR).status_code == 403

    moved = client.post(f"/cases/{case_id}/transfer", headers=desk,
                        json={"unit_id": "norrskolan", "reason": "Eleven går i årskurs 6 på Norrskolan."})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"case_id": case_id, "unit_id": "norrskolan", "bba_user": "bba.norrskolan",
                            "transferred": True, "moved_concerns": 1}
    # The new BBA has the case and the concern in the inbox; the desk no longer sees either.
    assert client.get(f"/cases/{case_id}", headers=BBA).json()["bba_user"] == "bba.norrskolan"
    wait_for(lambda: [item["concern_id"] for item in client.get("/inbox", headers=BBA).json()] == [concern["id"]],
             message="the concern in the new BBA's inbox")
    assert client.get(f"/cases/{case_id}", headers=desk).status_code == 403
    assert client.get("/inbox", headers=desk).json() == []
    # The other services learn the new BBA from the case event; the handover back to the desk is refused.
    recorded = [event for event in _events(client, "school.intake.case.recorded.v1") if event["case_id"] == case_id]
    assert [event["bba_user"] for event in recorded] == ["mottagning.bou", "bba.norrskolan"]
    again = client.post(f"/cases/{case_id}/transfer", json={"unit_id": "mottagning", "reason": "x"}, headers=BBA)
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "unit_id"
    # To the unit it is at: allowed, and nothing changes.
    same = client.post(f"/cases/{case_id}/transfer", json={"unit_id": "norrskolan", "reason": "x"}, headers=BBA)
    assert same.json()["transferred"] is False
    assert len([e for e in _events(client, "school.intake.case.recorded.v1") if e["case_id"] == case_id]) == 2
    assert [(r.user, r.basis) for r in _audit(client) if r.action == "case.transfer" and r.outcome == "ok"] == [
        ("mottagning.bou", "bba-of-unit"), ("bba.norrskolan", "bba-of-unit")]
