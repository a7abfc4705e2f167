"""Intake's NATS consumers: thin, call service.py."""

from __future__ import annotations

from sqlmodel import Session

from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import ConcernRouted
from tillsammans_common.messaging.consumer import consume
from tillsammans_common.service_app import Infrastructure
from tillsammans_intake import service


def register(infra: Infrastructure) -> None:
    """Subscribe intake's consumers."""

    def on_routed(session: Session, _: Envelope, event: ConcernRouted) -> None:
        service.deliver_to_inbox(session, event=event)

    consume(infra.broker, infra.engine, infra.settings, event=ConcernRouted, handler=on_routed, durable="bba-inbox")
