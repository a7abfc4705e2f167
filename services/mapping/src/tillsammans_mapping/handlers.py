"""Mapping's NATS consumers: thin, shared with the other services where the work is the same."""

from __future__ import annotations

from tillsammans_common.cases import keep_cases
from tillsammans_common.service_app import Infrastructure


def register(infra: Infrastructure) -> None:
    """Subscribe mapping's consumers: the organisation's cases and delegations, which decide who may map."""
    keep_cases(infra)
