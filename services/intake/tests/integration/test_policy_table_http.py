"""Decision 19's need-to-know table through HTTP at intake: every caller (role and relation) against every action."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tillsammans_common.testing import NatsServer, bearer
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app

CHILD = {"personnummer": "20130412-1237", "name": "Testbarn Testsson"}
CONCERN = {"unit_id": "norrskolan", "child": CHILD, "wheel_areas": ["trygghet"], "description": "Frånvaron har ökat."}

CALLERS: dict[str, dict[str, str]] = {
    "case's BBA": bearer("school", "bba", "bba.norrskolan"),
    "BBA of the unit by claim": bearer("school", "bba", "biträdande.bba", units=["norrskolan"]),
    "another unit's BBA": bearer("school", "bba", "bba.solrosen", units=["solrosen"]),
    "delegate": bearer("school", "professional", "kurator.karin"),
    "raiser": bearer("school", "professional", "mentor.anna"),
    "professional": bearer("school", "professional", "lärare.lo"),
    "coordinator": bearer("school", "coordinator", "samordnare.sam"),
    "reviewer": bearer("school", "reviewer", "registrator.per"),
    "auditor": bearer("school", "auditor", "granskare.eva"),
    "admin": bearer("school", "admin", "operator.anna"),
    "integration of the unit": bearer("school", "integration", "journal-norr", units=["norrskolan"], client=True),
    "integration of another unit": bearer("school", "integration", "journal-sol", units=["solrosen"], client=True),
    "another organisation's BBA": bearer("region", "bba", "bba.norrskolan", units=["norrskolan"]),
}

CASE_RELATED = {"case's BBA", "BBA of the unit by claim", "delegate", "integration of the unit"}
# Action -> the callers it allows (the rest get 403); straight from the decision's tables.
ALLOWED: dict[str, set[str]] = {
    "case.read": CASE_RELATED,
    "concern.read": CASE_RELATED,
    "concern.status": CASE_RELATED | {"raiser"},
    "case.delegate": {"case's BBA", "BBA of the unit by claim"},
    "case.transfer": {"case's BBA", "BBA of the unit by claim"},
    "inbox.read": {"case's BBA", "BBA of the unit by claim", "another unit's BBA"},
    "directory.write": {"admin"},
    "directory.write (confirm)": {"admin"},
    "directory.write (import)": {"admin"},
    "audit.read": {"auditor"},
    "directory.read": set(CALLERS) - {"another organisation's BBA"},
}


class Session:
    """One intake app with one case, shared by the table's rows."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        created = client.post("/concerns", json=CONCERN, headers=CALLERS["raiser"])
        assert created.status_code == 201, created.text
        self.concern_id, self.case_id = created.json()["id"], created.json()["case_id"]
        until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        delegated = client.post(f"/cases/{self.case_id}/delegations", headers=CALLERS["case's BBA"],
                                json={"delegate_user": "kurator.karin", "valid_until": until})
        assert delegated.status_code == 201, delegated.text

    def attempt(self, action: str, headers: dict[str, str]) -> int:
        """Do ``action`` as the caller; the HTTP status."""
        client, case, concern = self.client, self.case_id, self.concern_id
        until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        requests = {
            "case.read": lambda: client.get(f"/cases/{case}", headers=headers),
            "concern.read": lambda: client.get(f"/concerns/{concern}", headers=headers),
            "concern.status": lambda: client.get(f"/concerns/{concern}/status", headers=headers),
            "case.delegate": lambda: client.post(f"/cases/{case}/delegations", headers=headers,
                                                 json={"delegate_user": "vikarie.vera", "valid_until": until}),
            # To the unit the case is at: allowed and changes nothing, so the table's later rows see the same case.
            "case.transfer": lambda: client.post(f"/cases/{case}/transfer", headers=headers,
                                                 json={"unit_id": "norrskolan", "reason": "Eleven har bytt skola."}),
            "inbox.read": lambda: client.get("/inbox", headers=headers),
            "directory.write": lambda: client.put("/units/testenheten", headers=headers, json={
                "name": "Testenheten", "kind": "school", "bba_user": "bba.test", "bba_name": "BBA Test"}),
            "directory.write (confirm)": lambda: client.post("/units/norrskolan/confirm", headers=headers),
            "directory.write (import)": lambda: client.post("/directory/import", headers=headers,
                                                            json={"organisations": []}),
            "audit.read": lambda: client.get("/audit", headers=headers),
            "directory.read": lambda: client.get("/units", headers=headers),
        }
        return requests[action]().status_code


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """The app and its case, once for the whole table."""
    root: Path = tmp_path_factory.mktemp("policy-table")
    server = NatsServer(root / "nats").start()
    try:
        settings = IntakeSettings(org="school", nats_url=server.url, data_dir=root / "data")
        with TestClient(create_app(settings)) as client:
            yield Session(client)
    finally:
        server.stop()


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_need_to_know_table(session: Session, action: str, caller: str) -> None:
    status = session.attempt(action, CALLERS[caller])
    expected = "allowed" if caller in ALLOWED[action] else "refused"
    assert ("allowed" if status in (200, 201) else "refused" if status == 403 else status) == expected
