"""Mapping's NATS consumers: none yet, on purpose.

A mapping is opened over HTTP by the child's BBA with the opaque case id intake gave them, and
mapping never reads intake's tables, so there is no event it must react to today. The module stays,
with the same ``register`` as every service, so the first consumer has an obvious home.
"""

from __future__ import annotations

from tillsammans_common.service_app import Infrastructure


def register(infra: Infrastructure) -> None:
    """Subscribe mapping's consumers: none today (see the module docstring)."""
