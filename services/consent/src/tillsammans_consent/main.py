"""Consent's composition root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from tillsammans_common.service_app import build_app, build_infrastructure
from tillsammans_consent import api, handlers
from tillsammans_consent.config import ConsentSettings

VERSIONS = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: ConsentSettings | None = None) -> FastAPI:
    """Build consent: migrated database, replica consumers, relay and routes."""
    settings = settings or ConsentSettings()
    infra = build_infrastructure(settings, versions_dir=VERSIONS)
    handlers.register(infra)
    return build_app(infra, title="Tillsammans consent", routers=[api.router],
                     description="Consent records (samtycke), withdrawal, disclosure decisions and the replica "
                                 "of consents other organisations recorded naming this one.")
