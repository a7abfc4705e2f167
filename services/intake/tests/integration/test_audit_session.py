"""A scripted session at intake, then the log review: one audit record per access, refusals included."""

from __future__ import annotations

from pathlib import Path

import orjson
from fastapi.testclient import TestClient

from tillsammans_common.testing import bearer, wait_for
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app

CHILD = {"personnummer": "20130412-1237", "name": "Testbarn Testsson"}
CONCERN = {"unit_id": "norrskolan", "child": CHILD, "wheel_areas": ["trygghet"], "description": "Frånvaron har ökat."}
MENTOR = bearer("school", "professional", "mentor.anna")
BBA = bearer("school", "bba", "bba.norrskolan")
OTHER_BBA = bearer("school", "bba", "bba.solrosen")
AUDITOR = bearer("school", "auditor", "granskare.eva")


def test_every_access_of_a_session_is_one_record_and_the_log_review_answers_who_looked(
        tmp_path: Path, nats_url: str) -> None:
    settings = IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        concern = client.post("/concerns", json=CONCERN, headers=MENTOR)
        assert concern.status_code == 201
        concern_id, case_id = concern.json()["id"], concern.json()["case_id"]
        wait_for(lambda: client.get("/inbox", headers=BBA).json(), message="the concern in the inbox")
        script = [
            (MENTOR, f"/concerns/{concern_id}/status", 200),
            (MENTOR, f"/concerns/{concern_id}", 403),
            (BBA, f"/concerns/{concern_id}", 200),
            (BBA, f"/cases/{case_id}", 200),
            (OTHER_BBA, f"/cases/{case_id}", 403),
            (AUDITOR, f"/concerns/{concern_id}", 403),
            ({"Authorization": "Bearer not-a-token"}, f"/cases/{case_id}", 401),
            (bearer("region", "bba", "bba.bvc"), f"/cases/{case_id}", 403),
        ]
        for headers, path, status in script:
            assert client.get(path, headers=headers).status_code == status, path

        exported = client.get("/audit/export", params={"case_id": case_id}, headers=AUDITOR)
        assert exported.status_code == 200
        records = [orjson.loads(line) for line in exported.text.splitlines()]
        people = [(r["user"], r["action"], r["outcome"], r["basis"], r["reason"]) for r in records
                  if r["action"] != "inbox.read" and not r["user"].startswith("system:")]
        # One record per access of the script, in order, each saying on what basis or why not; the
        # raise is the professional's, the routing the consumer's. The 401 and the other
        # organisation's 403 named no case the service could know of, so they are in the full trail.
        assert people == [
            ("mentor.anna", "concern.raise", "ok", "role:professional", None),
            ("mentor.anna", "concern.status", "ok", "raiser", None),
            ("mentor.anna", "case.read", "denied", None, "no-relation"),
            ("bba.norrskolan", "concern.read", "ok", "bba-of-unit", None),
            ("bba.norrskolan", "case.read", "ok", "bba-of-unit", None),
            ("bba.solrosen", "case.read", "denied", None, "no-relation"),
            ("granskare.eva", "case.read", "denied", None, "no-relation"),
            ("granskare.eva", "audit.export", "ok", "auditor", None),
        ]
        assert [r["action"] for r in records if r["user"].startswith("system:")] == ["intake.concern.routed.v1"]
        inbox_reads = [r for r in records if r["action"] == "inbox.read"]
        assert inbox_reads and {(r["user"], r["basis"]) for r in inbox_reads} == {("bba.norrskolan", "visible-cases")}

        trail = [orjson.loads(line) for line in client.get("/audit/export", headers=AUDITOR).text.splitlines()]
        refusals = [(r["user"], r["org"], r["outcome"], r["reason"]) for r in trail if r["case_id"] is None
                    and r["outcome"] != "ok"]
        assert refusals == [("anonymous", "", "unauthenticated", "invalid-token"),
                            ("bba.bvc", "region", "denied", "other-organisation")]

        # The log review: who looked at this child, and was it within their need?
        review = client.get("/audit", params={"case_id": case_id, "outcome": "ok"}, headers=AUDITOR).json()["items"]
        looked = {(r["user"], r["basis"]) for r in review if not r["user"].startswith("system:")}
        assert looked >= {("bba.norrskolan", "bba-of-unit"), ("mentor.anna", "raiser")}
        assert all(r["basis"] for r in review if not r["user"].startswith("system:"))
