"""Fixtures shared by libs/common's integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tillsammans_common.db import make_engine, migrate


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """A SQLite file with the shared tables (outbox, processed messages, ...) and no service's own."""
    engine = make_engine(f"sqlite:///{tmp_path / 'relay.db'}")
    migrate(engine, tmp_path / "no-service-versions")
    return engine
