"""Intake's composition root."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI
from sqlmodel import Session

from tillsammans_common.service_app import Infrastructure, build_app, build_infrastructure
from tillsammans_intake import api, handlers, service
from tillsammans_intake.config import IntakeSettings

VERSIONS = Path(__file__).parent / "migrations" / "versions"


def _seed(infra: Infrastructure, settings: IntakeSettings) -> None:
    with Session(infra.engine) as session:
        service.seed_directory(session, settings=settings)


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    """Build intake: migrated database, seeded directory, consumers, relay and routes."""
    settings = settings or IntakeSettings()
    infra = build_infrastructure(settings, versions_dir=VERSIONS)
    infra.start_up(partial(_seed, infra, settings))
    handlers.register(infra)
    return build_app(infra, title="Tillsammans intake", routers=[api.router],
                     description="Concerns (oro), the unit and BBA directory, routing and the BBA's inbox.")
