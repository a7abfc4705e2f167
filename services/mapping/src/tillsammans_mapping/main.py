"""Mapping's composition root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from tillsammans_common.service_app import build_app, build_infrastructure
from tillsammans_mapping import api, handlers
from tillsammans_mapping.config import MappingSettings

VERSIONS = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: MappingSettings | None = None) -> FastAPI:
    """Build mapping: migrated database, consumers, relay and routes."""
    settings = settings or MappingSettings()
    infra = build_infrastructure(settings, versions_dir=VERSIONS)
    handlers.register(infra)
    return build_app(infra, title="Tillsammans mapping", routers=[api.router],
                     description="Well-being wheels, mappings (kartläggning) with the five questions and the "
                                 "Trappan step, and the organisations the flagged areas call for.")
