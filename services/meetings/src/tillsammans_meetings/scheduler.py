"""The follow-up scheduler: a background task beside the API, like the outbox relay, started and stopped with it.

Each pass marks what became overdue (follow_ups.mark_overdue) and shares plans whose newest
version has not reached the participants yet (a consent service that did not answer before).
All its state is in the database, so a restart resumes and a second instance changes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import Engine

from tillsammans_common.background import cancel_and_wait
from tillsammans_common.db import run_db, utcnow
from tillsammans_common.settings import ServiceSettings
from tillsammans_meetings.follow_ups import mark_overdue

log = logging.getLogger(__name__)


class FollowUpScheduler:
    """Marks follow-ups and plan items overdue every ``interval_seconds``, by ``now`` (a clock tests control)."""

    def __init__(self, engine: Engine, settings: ServiceSettings, *, interval_seconds: float = 60.0,
                 now: Callable[[], datetime] = utcnow,
                 share_pending: Callable[[], Awaitable[None]] | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.interval_seconds = interval_seconds
        self._now = now
        self._share_pending = share_pending
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run passes in the background until stopped."""
        self._task = asyncio.create_task(self._run(), name="follow-up-scheduler")

    async def stop(self) -> None:
        """Stop after (or during) the current pass; nothing half-done stays, each row commits with its event."""
        await cancel_and_wait(self._task)
        self._task = None

    async def run_once(self) -> int:
        """One pass; how many follow-ups and plan items this pass marked overdue."""
        now = self._now()
        marked = await run_db(self.engine, lambda: mark_overdue(self.engine, settings=self.settings, now=now))
        if self._share_pending is not None:
            await self._share_pending()
        return marked

    async def _run(self) -> None:
        while True:
            try:
                marked = await self.run_once()
                if marked:
                    log.info("follow-ups or plan items overdue", extra={"marked": marked})
            except Exception as exc:
                # The database or broker cannot take it now: the rows wait for the next pass. The type only,
                # a database error's text carries the statement and its parameters.
                log.warning("follow-up pass failed; trying again next pass", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(self.interval_seconds)  # the period between passes, not a wait for a condition
