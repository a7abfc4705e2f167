"""Pruning past retention, the settings invariant that makes it safe, and SQLite's synchronous mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

from tillsammans_common.db import make_engine
from tillsammans_common.models import AuditRecord, IdempotencyRecord, OutboxMessage, ProcessedMessage
from tillsammans_common.retention import Pruner, Retention
from tillsammans_common.settings import DAY_SECONDS, ServiceSettings

NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
RETENTION = Retention(processed_message=timedelta(days=35), idempotency_record=timedelta(days=7),
                      published_outbox=timedelta(days=7))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    SQLModel.metadata.create_all(engine)
    return engine


def _outbox(seq: int, *, published_at: datetime | None, withheld_at: datetime | None = None) -> OutboxMessage:
    return OutboxMessage(seq=seq, event_id=f"e{seq}", nats_subject="school.x", stream="EVENTS", destination="EVENTS",
                         body=b"{}", created_at=NOW - timedelta(days=400), published_at=published_at,
                         withheld_at=withheld_at)


def _seed(engine: Engine) -> None:
    old, young = NOW - timedelta(days=36), NOW - timedelta(days=34)
    with Session(engine) as session:
        for index in range(5):
            session.add(ProcessedMessage(consumer="c", event_id=f"old{index}", processed_at=old))
        session.add(ProcessedMessage(consumer="c", event_id="young", processed_at=young))
        for index in range(3):
            session.add(IdempotencyRecord(org="school", user="u", key=f"old{index}", fingerprint="f", status_code=201,
                                          response={}, created_at=NOW - timedelta(days=8)))
        session.add(IdempotencyRecord(org="school", user="u", key="young", fingerprint="f", status_code=201,
                                      response={}, created_at=NOW - timedelta(days=6)))
        session.add(_outbox(1, published_at=NOW - timedelta(days=8)))
        session.add(_outbox(2, published_at=NOW - timedelta(days=6)))
        session.add(_outbox(3, published_at=None))  # never sent: must still go
        session.add(_outbox(4, published_at=None, withheld_at=NOW - timedelta(days=300)))  # a refusal's record
        for years in (0, 1, 6):  # audit records are kept at least five years and never deleted by a service
            session.add(AuditRecord(at=NOW - timedelta(days=365 * years), org="school", user="u", role="bba",
                                    action="read"))
        session.commit()


def _keys(engine: Engine) -> tuple[set[str], set[str], set[int], int]:
    with Session(engine) as session:
        return (set(session.exec(select(ProcessedMessage.event_id)).all()),
                set(session.exec(select(IdempotencyRecord.key)).all()),
                {seq for seq in session.exec(select(OutboxMessage.seq)).all() if seq is not None},
                len(session.exec(select(AuditRecord)).all()))


async def test_pruning_removes_what_is_past_retention_in_batches_and_keeps_young_rows_and_every_audit_record(
        engine: Engine) -> None:
    _seed(engine)
    pruner = Pruner(engine, RETENTION, batch=2, now=lambda: NOW)

    removed = await pruner.prune_once()

    assert removed == {"processed_message": 5, "idempotency_record": 3, "outbox_message": 1, "audit_record": 0}
    processed, idempotency, outbox, audit = _keys(engine)
    assert processed == {"young"} and idempotency == {"young"}
    assert outbox == {2, 3, 4}
    assert audit == 3
    # A later pass finds nothing more until time moves on; then the young rows go too.
    assert sum((await pruner.prune_once()).values()) == 0
    later = Pruner(engine, RETENTION, batch=2, now=lambda: NOW + timedelta(days=2))
    assert await later.prune_once() == {"processed_message": 1, "idempotency_record": 1, "outbox_message": 1,
                                        "audit_record": 0}
    assert _keys(engine) == (set(), set(), {3, 4}, 3)


def test_the_processed_id_window_must_outlive_every_stream_that_can_redeliver() -> None:
    with pytest.raises(ValidationError, match="processed_message_retention_seconds"):
        ServiceSettings(inbox_max_age_seconds=10 * DAY_SECONDS, events_max_age_seconds=DAY_SECONDS,
                        processed_message_retention_seconds=9 * DAY_SECONDS)
    with pytest.raises(ValidationError, match="processed_message_retention_seconds"):
        ServiceSettings(events_max_age_seconds=40 * DAY_SECONDS)  # longer than the default 35-day window
    with pytest.raises(ValidationError):  # equal is not longer
        ServiceSettings(inbox_max_age_seconds=DAY_SECONDS, events_max_age_seconds=DAY_SECONDS,
                        processed_message_retention_seconds=DAY_SECONDS)
    settings = ServiceSettings(inbox_max_age_seconds=DAY_SECONDS, events_max_age_seconds=2 * DAY_SECONDS,
                               processed_message_retention_seconds=3 * DAY_SECONDS)
    assert Retention.of(settings).processed_message == timedelta(days=3)
    assert ServiceSettings().processed_message_retention_seconds > max(ServiceSettings().inbox_max_age_seconds,
                                                                        ServiceSettings().events_max_age_seconds)


def test_sqlite_synchronous_is_applied_as_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def synchronous(engine: Engine) -> int:
        with engine.connect() as connection:
            return int(connection.execute(text("PRAGMA synchronous")).scalar_one())

    # SQLite answers 1 for NORMAL and 2 for FULL.
    assert synchronous(make_engine(f"sqlite:///{tmp_path / 'normal.db'}")) == 1
    monkeypatch.setenv("TILLSAMMANS_SQLITE_SYNCHRONOUS", "full")
    settings = ServiceSettings(data_dir=tmp_path)
    assert settings.sqlite_synchronous == "FULL"
    assert synchronous(make_engine(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous)) == 2
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        make_engine(f"sqlite:///{tmp_path / 'off.db'}", sqlite_synchronous="OFF")
