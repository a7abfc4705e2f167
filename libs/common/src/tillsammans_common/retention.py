"""Pruning of the records that exist only to make delivery and retries safe, once they can no longer matter.

Processed-message ids, idempotency records and published outbox rows each have a retention
setting (see ``ServiceSettings``). The processed-id retention is longer than any stream keeps a
message (enforced when settings load), so an id is forgotten only after its message can no longer
be redelivered. Audit records go after ``audit_retention_days`` (at least five years, enforced by the
settings; the database's trigger refuses to delete a younger one whatever asks, decision 18); this is the
only code that deletes them. Dead letters, unsent or withheld outbox rows and every domain table (e.g. the
consent service's decision records) are not touched here.

Each statement deletes at most ``batch`` rows in its own short transaction, and the pruner hands the
event loop back between statements, so a large backlog (e.g. the first pass after an upgrade) never
holds the loop or the SQLite write lock for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Delete, Engine, delete, select, tuple_
from sqlmodel import Session, col

from tillsammans_common.background import cancel_and_wait
from tillsammans_common.db import run_db, utcnow
from tillsammans_common.models import AuditRecord, IdempotencyRecord, OutboxMessage, ProcessedMessage
from tillsammans_common.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """How long each kind of record is kept."""

    processed_message: timedelta
    idempotency_record: timedelta
    published_outbox: timedelta
    audit_record: timedelta = timedelta(days=3653)

    @classmethod
    def of(cls, settings: ServiceSettings) -> Retention:
        """The retention a service's settings configure."""
        return cls(processed_message=timedelta(seconds=settings.processed_message_retention_seconds),
                   idempotency_record=timedelta(seconds=settings.idempotency_retention_seconds),
                   published_outbox=timedelta(seconds=settings.outbox_published_retention_seconds),
                   audit_record=timedelta(days=settings.audit_retention_days))


class Pruner:
    """Deletes processed ids, idempotency records, published outbox rows and audit records past their retention."""

    def __init__(self, engine: Engine, retention: Retention, *, interval_seconds: float = 300.0, batch: int = 500,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.retention = retention
        self.interval_seconds = interval_seconds
        self.batch = batch
        # The clock the cut-offs are taken from: a test seam, so tests age rows without sleeping.
        self._now = now
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Prune in the background, every ``interval_seconds``."""
        self._task = asyncio.create_task(self._run(), name="pruner")

    async def stop(self) -> None:
        """Stop after the current batch."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            try:
                removed = await self.prune_once()
                if any(removed.values()):
                    log.info("pruned records past their retention", extra={"removed": removed})
            except Exception as exc:
                # E.g. the database cannot be written now: the rows wait for the next pass. The type only:
                # a database error's text carries the statement and its parameters.
                log.warning("pruning failed; trying again next pass", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(self.interval_seconds)  # the period between passes, not a wait for a condition

    async def prune_once(self) -> dict[str, int]:
        """Delete everything past its retention, batch by batch; the rows removed per table."""
        now = self._now()
        processed_cut = now - self.retention.processed_message
        idempotency_cut = now - self.retention.idempotency_record
        outbox_cut = now - self.retention.published_outbox
        audit_cut = now - self.retention.audit_record
        processed_key = tuple_(col(ProcessedMessage.consumer), col(ProcessedMessage.event_id))
        statements: dict[str, Callable[[], Delete]] = {
            "processed_message": lambda: delete(ProcessedMessage).where(processed_key.in_(
                select(col(ProcessedMessage.consumer), col(ProcessedMessage.event_id))
                .where(col(ProcessedMessage.processed_at) < processed_cut).limit(self.batch))),
            "idempotency_record": lambda: self._by_key(
                col(IdempotencyRecord.id), col(IdempotencyRecord.created_at) < idempotency_cut),
            # Only rows that were sent: an unsent row still has to go, a withheld one is a record of a refusal.
            "outbox_message": lambda: self._by_key(
                col(OutboxMessage.seq), col(OutboxMessage.published_at) < outbox_cut),
            # Oldest first by the index on ``at``; the trigger lets through only records past the legal floor.
            "audit_record": lambda: self._by_key(col(AuditRecord.id), col(AuditRecord.at) < audit_cut),
        }
        removed: dict[str, int] = {}
        for table, statement in statements.items():
            removed[table] = 0
            while True:
                count = await run_db(self.engine, partial(self._delete, statement()))
                removed[table] += count
                # Hand the loop back between batches (a SQLite service runs its database work on it).
                await asyncio.sleep(0)
                if count < self.batch:
                    break
        return removed

    def _by_key(self, key: Any, older: ColumnElement[bool]) -> Delete:
        return delete(key.table).where(key.in_(select(key).where(older).limit(self.batch)))

    def _delete(self, statement: Delete) -> int:
        with Session(self.engine) as session:
            result = session.execute(statement)
            session.commit()
        return int(getattr(result, "rowcount", 0) or 0)
