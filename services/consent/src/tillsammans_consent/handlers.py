"""Consent's NATS consumers: thin, call service.py and the shared replica logic."""

from __future__ import annotations

from functools import partial

import orjson
from faststream.nats import NatsMessage
from sqlmodel import Session

from tillsammans_common.cases import keep_cases
from tillsammans_common.db import run_db, session_scope
from tillsammans_common.events import Envelope
from tillsammans_common.events.meetings import WithdrawalApplied
from tillsammans_common.messaging.consent_replica import keep_replica
from tillsammans_common.messaging.consumer import consume
from tillsammans_common.messaging.gate import AskBatch, SettlementReport, decide_subject, settle_subject
from tillsammans_common.service_app import Infrastructure
from tillsammans_consent import service
from tillsammans_consent.config import ConsentSettings


async def _raw_body(message: NatsMessage) -> bytes:
    # Parsing stays in our code, which never logs payloads.
    return bytes(message.body)


def register(infra: Infrastructure) -> None:
    """Keep the replica, answer the disclosure gate of this organisation's own services, note receipts."""
    settings = infra.settings
    assert isinstance(settings, ConsentSettings)
    engine = infra.engine

    def decide(batch: AskBatch) -> bytes:
        with session_scope(engine) as session:
            verdicts = service.decide_disclosures(session, settings=settings, batch=batch)
        # Answered only once the decision records are committed: no permit without its record.
        return orjson.dumps(verdicts.model_dump(mode="json"))

    def settle(report: SettlementReport) -> None:
        with Session(engine) as session:
            service.settle_disclosures(session, report=report)
            session.commit()

    async def on_ask(body: bytes) -> bytes:
        return await run_db(engine, partial(decide, AskBatch.model_validate_json(body)))

    async def on_settle(body: bytes) -> None:
        await run_db(engine, partial(settle, SettlementReport.model_validate_json(body)))

    # Core request-reply inside the organisation's account, shared by the instances of the service.
    infra.broker.subscriber(decide_subject(settings.org), queue="consent-decide", decoder=_raw_body,
                            title="consent:decide")(on_ask)
    infra.broker.subscriber(settle_subject(settings.org), queue="consent-settle", decoder=_raw_body,
                            title="consent:settle", no_reply=True)(on_settle)
    def on_receipt(session: Session, envelope: Envelope, event: WithdrawalApplied) -> None:
        service.record_withdrawal_receipt(session, settings=settings, sender=envelope.source_org, event=event)

    consume(infra.broker, engine, settings, event=WithdrawalApplied, handler=on_receipt,
            durable="withdrawal-receipts", from_other_orgs=True)
    keep_replica(infra)
    keep_cases(infra)
