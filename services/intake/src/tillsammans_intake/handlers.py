"""Intake's NATS consumers: thin, call service.py."""

from __future__ import annotations

from sqlmodel import Session

from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import ConcernRouted, ReportAcknowledged, ReportFiled
from tillsammans_common.events.mapping import MappingCompleted, MappingOpened
from tillsammans_common.messaging.consumer import consume
from tillsammans_common.service_app import Infrastructure
from tillsammans_intake import service
from tillsammans_intake.config import IntakeSettings


def on_mapping(session: Session, _: Envelope, event: MappingOpened | MappingCompleted) -> None:
    """Learn a mapping of a case (mapping's internal events), so a report can name it."""
    service.record_mapping(session, event=event)


def on_report_acknowledged(session: Session, _: Envelope, event: ReportAcknowledged) -> None:
    """Social services received a report filed here."""
    service.acknowledge_report(session, event=event)


def register(infra: Infrastructure) -> None:
    """Subscribe intake's consumers."""
    settings = infra.settings
    assert isinstance(settings, IntakeSettings)

    def on_routed(session: Session, _: Envelope, event: ConcernRouted) -> None:
        service.deliver_to_inbox(session, event=event)

    def on_report(session: Session, _: Envelope, event: ReportFiled) -> None:
        # Only social services get here: the ingress refuses a statutory report anywhere else.
        service.receive_report(session, settings=settings, event=event)

    consume(infra.broker, infra.engine, settings, event=ConcernRouted, handler=on_routed, durable="bba-inbox")
    consume(infra.broker, infra.engine, settings, event=MappingOpened, handler=on_mapping, durable="mappings-opened")
    consume(infra.broker, infra.engine, settings, event=MappingCompleted, handler=on_mapping,
            durable="mappings-completed")
    consume(infra.broker, infra.engine, settings, event=ReportFiled, handler=on_report, durable="reports-received",
            from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=ReportAcknowledged, handler=on_report_acknowledged,
            durable="report-receipts", from_other_orgs=True)
