"""Meetings' composition root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from tillsammans_common.service_app import build_app, build_infrastructure
from tillsammans_meetings import api, handlers
from tillsammans_meetings.config import MeetingsSettings

VERSIONS = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: MeetingsSettings | None = None) -> FastAPI:
    """Build meetings: migrated database, consumers (invitations, consultations, consent replica), relay, routes."""
    settings = settings or MeetingsSettings()
    infra = build_infrastructure(settings, versions_dir=VERSIONS)
    handlers.register(infra)
    return build_app(infra, title="Tillsammans meetings", routers=[api.router],
                     description="Samverkansmöte and SIP: invitations across organisations under consent, "
                                 "anonymous consultations, the samordningsperson, the plan and the uppföljning.")
