"""Consent's NATS consumers: thin, call the shared replica logic."""

from __future__ import annotations

from tillsammans_common.messaging.consent_replica import keep_replica
from tillsammans_common.service_app import Infrastructure


def register(infra: Infrastructure) -> None:
    """Keep the replica: this organisation's own consent events (idempotent) and those replicated to it."""
    keep_replica(infra)
