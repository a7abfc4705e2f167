"""Idempotent JetStream consumers: durable push subscriptions in a deliver group, effects and the
processed-id in one transaction, bounded redelivery with backoff, and a dead letter instead of a
silent drop."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

from faststream.middlewares import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsMessage
from nats.js.api import DeliverPolicy, StorageType, StreamConfig
from pydantic import ValidationError
from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from tillsammans_common.db import run_db, utcnow
from tillsammans_common.events import EVENTS_STREAM, INBOX_STREAM, Envelope, Event
from tillsammans_common.messaging.consent_replica import decide
from tillsammans_common.models import DeadLetter, ProcessedMessage
from tillsammans_common.settings import ServiceSettings

log = logging.getLogger(__name__)

Handler = Callable[[Session, Envelope, Any], None]
MAX_ACK_PENDING = 256
# Built once, so each message reuses the compiled statements.
_SELECT_PROCESSED = select(col(ProcessedMessage.event_id)).where(
    col(ProcessedMessage.consumer) == bindparam("consumer"), col(ProcessedMessage.event_id) == bindparam("event_id"))
_INSERT_PROCESSED = insert(ProcessedMessage.__table__)  # type: ignore[attr-defined]


class Retry(Exception):
    """The message cannot be applied yet (e.g. its consent has not arrived); try again later."""


class Reject(Exception):
    """The message can never be applied; it goes to the dead letters at once."""


def stream_configs(org: str) -> tuple[StreamConfig, StreamConfig]:
    """This organisation's event stream and its cross-organisation inbox stream.

    File storage and a two-minute duplicate window (``Nats-Msg-Id``) for both.
    """
    return (
        StreamConfig(name=EVENTS_STREAM, subjects=[f"{org}.>"], storage=StorageType.FILE, duplicate_window=120.0),
        StreamConfig(name=INBOX_STREAM, subjects=[f"inbox.{org}.>"], storage=StorageType.FILE,
                     duplicate_window=120.0),
    )


def consume(
    broker: NatsBroker,
    engine: Engine,
    settings: ServiceSettings,
    *,
    event: type[Event],
    handler: Handler,
    durable: str,
    from_other_orgs: bool = False,
) -> None:
    """Subscribe ``handler(session, envelope, event)`` to one event type, effectively once.

    With ``from_other_orgs`` the consumer reads this organisation's inbox: the sender is checked
    against the subject, and an identifying message must be covered by a consent in the local
    replica before anything is stored (defence in depth behind the sender's egress check).
    """
    # The streams are created by ensure_streams at start-up, not by FastStream.
    stream = JStream(INBOX_STREAM if from_other_orgs else EVENTS_STREAM, declare=False)
    subject = f"inbox.{settings.org}.*.{event.type}" if from_other_orgs else f"{settings.org}.{event.type}"
    consumer_name = f"{settings.service_name}-{durable}"

    def processed(session: Session, event_id: str) -> bool:
        return session.connection().execute(
            _SELECT_PROCESSED, {"consumer": consumer_name, "event_id": event_id}).first() is not None

    def apply(envelope: Envelope, payload: Event, nats_subject: str) -> None:
        with Session(engine, expire_on_commit=False) as session:
            if processed(session, envelope.id):
                return
            if from_other_orgs:
                _check_ingress(session, settings, envelope, payload, nats_subject)
            handler(session, envelope, payload)
            try:
                session.connection().execute(_INSERT_PROCESSED, {
                    "consumer": consumer_name, "event_id": envelope.id, "processed_at": utcnow()})
                session.commit()
            except IntegrityError:
                session.rollback()
                if not processed(session, envelope.id):
                    raise  # the effects themselves broke a constraint, not a concurrent duplicate

    async def on_message(body: bytes, msg: NatsMessage) -> None:
        nats_subject = msg.raw_message.subject
        deliveries = msg.raw_message.metadata.num_delivered
        try:
            envelope = Envelope.from_bytes(body)
            if envelope.type != event.type:
                raise Reject("unexpected event type on subject")
            payload = event.model_validate(envelope.data)
            await run_db(engine, partial(apply, envelope, payload, nats_subject))
        except (Reject, ValidationError, ValueError) as exc:
            await _dead_letter(engine, consumer_name, nats_subject, body, deliveries, _reason(exc))
            await msg.ack()
        except Exception as exc:
            if deliveries >= settings.max_deliveries:
                await _dead_letter(engine, consumer_name, nats_subject, body, deliveries, _reason(exc))
                await msg.ack()
                return
            backoff = settings.redelivery_backoff_seconds
            delay = backoff[min(deliveries, len(backoff)) - 1] if backoff else 1.0
            log.warning("message not applied, will redeliver", extra={"consumer": consumer_name,
                                                                    "error_type": type(exc).__name__})
            await msg.nack(delay=delay)
        else:
            await msg.ack()

    # A durable push consumer in a deliver group: the server sends each message as it is stored
    # (a pull consumer costs a fetch round trip per message, or lingers for a batch to fill), at
    # most MAX_ACK_PENDING unacknowledged at a time, and instances of a service share the work.
    with warnings.catch_warnings():
        # FastStream warns about every durable push consumer, even one in a deliver group (queue)
        # like this, which is exactly what its warning recommends.
        warnings.filterwarnings("ignore", message="The JetStream Push consumer", category=RuntimeWarning)
        subscriber = broker.subscriber(
            subject,
            stream=stream,
            durable=consumer_name,
            queue=consumer_name,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_wait=30,
                                  max_deliver=settings.max_deliveries + 1, max_ack_pending=MAX_ACK_PENDING),
            ack_policy=AckPolicy.MANUAL,
            decoder=_raw_body,
            title=f"{settings.service_name}:{durable}",
        )
    subscriber(on_message)


async def _raw_body(message: NatsMessage) -> bytes:
    # Hand the handler the bytes as sent: parsing (and its errors) stays in our code, which never
    # logs payloads, instead of in the framework's decoder.
    return bytes(message.body)


def _check_ingress(session: Session, settings: ServiceSettings, envelope: Envelope, payload: Event,
                   nats_subject: str) -> None:
    sender = nats_subject.split(".")[2]
    if envelope.source_org != sender:
        raise Reject("sender in envelope does not match the subject the broker let it publish on")
    if payload.identifying:
        decision = decide(session, disclosing_org=sender, receiving_org=settings.org,
                          child_key=payload.child_key,  # type: ignore[attr-defined]
                          categories=payload.consent_categories, purpose=payload.consent_purpose,
                          consent_id=envelope.consentid)
        if not decision.allowed:
            # The consent may still be on its way on another consumer; retry, then dead-letter.
            raise Retry(decision.reason)


def _reason(exc: BaseException) -> str:
    # Never the exception text: validation errors and SQL errors can quote personal data.
    if isinstance(exc, (Reject, Retry)):
        return f"{type(exc).__name__}: {exc}"[:255]
    return type(exc).__name__


async def _dead_letter(engine: Engine, consumer: str, nats_subject: str, body: bytes, deliveries: int,
                       reason: str) -> None:
    def write() -> None:
        event_id = event_type = None
        try:
            envelope = Envelope.from_bytes(body)
            event_id, event_type = envelope.id, envelope.type
        except ValueError:
            pass
        with Session(engine) as session:
            session.add(DeadLetter(consumer=consumer, nats_subject=nats_subject, event_id=event_id,
                                   event_type=event_type, reason=reason, deliveries=deliveries, body=body))
            session.commit()

    await run_db(engine, write)
    log.error("message dead-lettered", extra={"consumer": consumer, "reason": reason})
