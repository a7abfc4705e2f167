"""A service whose database cannot be written at start-up starts, says it is not ready, and recovers.

The fault is real: the organisation's data folder is made immutable (chattr +i, which binds root
too), so SQLite cannot create the database; migrations and the directory's seeding wait for it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tillsammans_common.testing import bearer, wait_for
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app

CONCERN = {"unit_id": "norrskolan", "child": {"personnummer": "20130412-1237", "name": "Testbarn"},
           "wheel_areas": ["trygghet"], "description": "Oro."}


@pytest.fixture
def frozen_folder(tmp_path: Path) -> Iterator[Path]:
    """The organisation's data folder, immutable until the test thaws it."""
    folder = tmp_path / "data" / "school"
    folder.mkdir(parents=True)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], check=False).returncode:
        pytest.skip("this file system cannot make a folder immutable (chattr +i)")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_starts_not_ready_and_finishes_starting_once_the_database_can_be_written(
        tmp_path: Path, nats_url: str, frozen_folder: Path) -> None:
    settings = IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data",
                              infrastructure_retry_initial_seconds=0.05, infrastructure_retry_max_seconds=0.2)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["start_up"] != "ok" and ready.headers["Retry-After"]
        refused = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional", "mentor.anna"))
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json" and "20130412" not in refused.text

        subprocess.run(["chattr", "-i", str(frozen_folder)], check=True)
        wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=20,
                 message="readiness once the database can be written")
        # Migrated and seeded: the unit is known and the concern is routed to its BBA.
        raised = client.post("/concerns", json=CONCERN, headers=bearer("school", "professional", "mentor.anna"))
        assert raised.status_code == 201, raised.text
        assert raised.json()["bba_user"] == "bba.norrskolan"
        inbox = wait_for(lambda: client.get("/inbox", headers=bearer("school", "bba", "bba.norrskolan")).json(),
                         message="the routed concern in the BBA's inbox")
        assert inbox[0]["concern_id"] == raised.json()["id"]
