"""Meetings' composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI

from tillsammans_common.db import utcnow
from tillsammans_common.service_app import build_app, build_infrastructure
from tillsammans_meetings import api, handlers, service, sip
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.scheduler import FollowUpScheduler

VERSIONS = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: MeetingsSettings | None = None, *, now: Callable[[], datetime] = utcnow) -> FastAPI:
    """Build meetings: migrated database, consumers, relay, the follow-up scheduler (on clock ``now``), routes."""
    settings = settings or MeetingsSettings()
    infra = build_infrastructure(settings, versions_dir=VERSIONS)
    handlers.register(infra)
    app = build_app(infra, title="Tillsammans meetings", routers=[api.router],
                    description="Samverkansmöte and SIP: invitations across organisations under consent, "
                                "anonymous consultations, the samordningsperson, the plan every principal holds "
                                "and the uppföljning that cannot be forgotten.")

    async def share_pending() -> None:
        await sip.share_plans(engine=infra.engine, connection=infra.broker.connection, settings=settings,
                              principal=None, participating=lambda session, meeting: service.participants(
                                  session, settings=settings, meeting=meeting))

    scheduler = FollowUpScheduler(infra.engine, settings, interval_seconds=settings.follow_up_scan_seconds, now=now,
                                  share_pending=share_pending)
    app.state.scheduler = scheduler
    served = app.router.lifespan_context

    # The scheduler runs inside the shared lifespan (broker and relay up first, stopped last), as the relay does.
    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[None]:
        async with served(running):
            await scheduler.start()
            try:
                yield
            finally:
                await scheduler.stop()

    app.router.lifespan_context = lifespan
    return app
