"""Idempotent JetStream consumers: durable push subscriptions in a deliver group, effects and the
processed-id in one transaction, and a dead letter instead of a silent drop.

A failure of the infrastructure (database locked, full, read-only or gone; broker errors) is retried
with a capped exponential backoff for as long as it lasts and never counts toward the poison limit;
only a message that fails on its own merits is dead-lettered, after ``max_deliveries`` such attempts
(a Reject at once). Nothing is acknowledged before its effect or its dead letter is committed.
"""

from __future__ import annotations

import logging
import re
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import orjson
from faststream.middlewares import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsMessage
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from pydantic import ValidationError
from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from tillsammans_common import audit
from tillsammans_common.db import run_db, utcnow
from tillsammans_common.errors import Failure, classify_failure
from tillsammans_common.events import EVENT_TYPES, EVENTS_STREAM, INBOX_STREAM, Envelope, Event
from tillsammans_common.messaging import deadletters, parking
from tillsammans_common.messaging.consent_replica import decide, grant_of
from tillsammans_common.messaging.deadletters import DEADLETTER_STREAM, PARKED_STREAM, Letter
from tillsammans_common.messaging.parking import Outcome
from tillsammans_common.messaging.refusals import Reject, Retry
from tillsammans_common.models import DeadLetter, ProcessedMessage
from tillsammans_common.settings import OrgKind, ServiceSettings, StreamLimits
from tillsammans_common.telemetry import dead_letter_counters, delivery_counters, ingress_refusals

__all__ = ["Reject", "Retry", "consume", "durable_consumers", "infrastructure_delay", "stream_configs"]

log = logging.getLogger(__name__)

Handler = Callable[[Session, Envelope, Any], None]
MAX_ACK_PENDING = 256
# Built once, so each message reuses the compiled statements.
_SELECT_PROCESSED = select(col(ProcessedMessage.event_id)).where(
    col(ProcessedMessage.consumer) == bindparam("consumer"), col(ProcessedMessage.event_id) == bindparam("event_id"))
_INSERT_PROCESSED = insert(ProcessedMessage.__table__)  # type: ignore[attr-defined]
# What a dead letter keeps of a message that may identify a child: the CloudEvents attributes, never data.
DEAD_LETTER_ATTRIBUTES = ("specversion", "id", "source", "type", "subject", "time", "consentid")
# Module level, so tests can swap in a counter of their own meter provider.
REFUSED = ingress_refusals()
DEAD_LETTERED, PARKED = dead_letter_counters()
REDELIVERED = delivery_counters().redelivered
# The reason code of a message that waits for its consent: parked rather than dead-lettered.
WAITS_FOR_CONSENT = "not_covered"
# A record id another organisation sent is kept in the audit trail only in this shape: it can then hold nothing else.
_OPAQUE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# How many messages' merit-failure counts a consumer keeps (a few hundred bytes each at most).
MERIT_FAILURES_KEPT = 10_000
# JetStream never gives up on a message by itself: only the consumer, counting merit failures, does.
UNLIMITED_DELIVERIES = -1
# The durable consumers subscribed on each broker, so start-up can bring existing ones to today's configuration.
_DURABLES: weakref.WeakKeyDictionary[NatsBroker, list[tuple[str, str]]] = weakref.WeakKeyDictionary()


def durable_consumers(broker: NatsBroker) -> list[tuple[str, str]]:
    """``(stream, durable name)`` of every consumer ``consume`` subscribed on ``broker``."""
    return list(_DURABLES.get(broker, []))


def infrastructure_delay(failures: int, *, initial: float, cap: float) -> float:
    """Seconds to wait before the next try after ``failures`` infrastructure failures of one message."""
    return min(cap, initial * 2.0 ** min(max(failures, 1) - 1, 32))


class MeritFailures:
    """Attempts of each message that failed on the message's own merits, keyed by stream sequence.

    In memory and bounded (the oldest entry goes first), because JetStream's delivery count also
    counts infrastructure failures and so cannot be the poison limit. A restart, or an instance of
    the deliver group that did not see the earlier attempts, starts a message's count again: a
    poison message gets at most ``max_deliveries`` more attempts per process that sees it, never fewer.
    """

    def __init__(self, limit: int = MERIT_FAILURES_KEPT) -> None:
        self._counts: OrderedDict[int, int] = OrderedDict()
        self._limit = limit

    def add(self, sequence: int) -> int:
        """Count one more merit failure of the message; the count so far."""
        count = self._counts.pop(sequence, 0) + 1
        self._counts[sequence] = count
        while len(self._counts) > self._limit:
            self._counts.popitem(last=False)
        return count

    def get(self, sequence: int) -> int:
        """The merit failures counted for the message."""
        return self._counts.get(sequence, 0)

    def forget(self, sequence: int) -> None:
        """The message is settled (applied or dead-lettered)."""
        self._counts.pop(sequence, None)


def stream_configs(org: str, *, inbox_max_age_seconds: float | None = None,
                   limits: StreamLimits = StreamLimits()) -> tuple[StreamConfig, StreamConfig]:
    """This organisation's event stream and its cross-organisation inbox stream, with their limits.

    Both on file storage, on ``limits.replicas`` servers, with a duplicate window (``Nats-Msg-Id``)
    of ``limits.duplicate_window_seconds``. EVENTS keeps every message (consumed or not) until it is
    older than its maximum age or the stream exceeds its maximum size, the oldest going first. The
    inbox keeps a message only while a consumer that wants it has not acknowledged it (interest
    retention), and never longer than its maximum age: a receiver keeps nothing it has already handled.
    ``inbox_max_age_seconds``, when given, overrides ``limits``.
    """
    if inbox_max_age_seconds is not None:
        limits = replace(limits, inbox_max_age_seconds=inbox_max_age_seconds)
    return (
        StreamConfig(name=EVENTS_STREAM, subjects=[f"{org}.>"], storage=StorageType.FILE,
                     retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD,
                     max_age=limits.events_max_age_seconds, max_bytes=limits.events_max_bytes,
                     num_replicas=limits.replicas,
                     # JetStream refuses a duplicate window longer than the maximum age.
                     duplicate_window=min(limits.duplicate_window_seconds, limits.events_max_age_seconds)),
        StreamConfig(name=INBOX_STREAM, subjects=[f"inbox.{org}.>"], storage=StorageType.FILE,
                     retention=RetentionPolicy.INTEREST, max_age=limits.inbox_max_age_seconds,
                     num_replicas=limits.replicas,
                     duplicate_window=min(limits.duplicate_window_seconds, limits.inbox_max_age_seconds)),
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
    after_commit: Callable[[], None] | None = None,
) -> None:
    """Subscribe ``handler(session, envelope, event)`` to one event type, effectively once.

    With ``from_other_orgs`` the consumer reads this organisation's inbox: every organisation the
    message claims as its author must be the sender the subject proves, it must be meant for this
    organisation, and an identifying message must be covered by a consent in the local replica
    before anything is stored (defence in depth behind the sender's egress check). A refusal is
    dead-lettered without the payload, counted (``tillsammans.ingress.refused``) and logged.

    A failure of the infrastructure is retried with ``infrastructure_retry_*`` backoff until it passes;
    a failure on the message's merits is retried ``max_deliveries`` times in all, then dead-lettered
    to the DEADLETTER stream (a local copy in ``dead_letter`` when the database takes it). One that
    waits for its consent is parked instead, for up to ``parking_timeout_seconds``. ``after_commit``
    runs on the event loop after a message's effects committed.
    """
    # The streams are created by ensure_streams at start-up, not by FastStream.
    stream = JStream(INBOX_STREAM if from_other_orgs else EVENTS_STREAM, declare=False)
    subject = f"inbox.{settings.org}.*.{event.type}" if from_other_orgs else f"{settings.org}.{event.type}"
    consumer_name = f"{settings.service_name}-{durable}"
    _DURABLES.setdefault(broker, []).append((stream.name, consumer_name))
    merit_failures = MeritFailures()

    redact = from_other_orgs or event.identifying

    def processed(session: Session, event_id: str) -> bool:
        return session.connection().execute(
            _SELECT_PROCESSED, {"consumer": consumer_name, "event_id": event_id}).first() is not None

    def audited(subject: str | None, payload: Event | None = None) -> dict[str, Any]:
        # Who applied the message (this consumer) and which case or record it concerned, from the envelope's
        # subject: a case id in our own events; another organisation's record id only when it is a UUID.
        where: dict[str, Any] = {"case_id": subject[:64] if subject else None}
        if from_other_orgs:
            where = {"record_id": subject if subject and _OPAQUE_ID.match(subject) else None}
        else:
            unit = getattr(payload, "unit_id", None)  # our own unit ids; None for a protected child
            where["unit_id"] = unit[:64] if isinstance(unit, str) else None
        return {"org": settings.org, "user": f"system:{consumer_name}"[:128], "role": "system",
                "principal_kind": "system", "service": settings.service_name,
                "protected": getattr(payload, "protected_identity", False) is True, **where}

    def apply(envelope: Envelope, payload: Event, nats_subject: str) -> None:
        with Session(engine, expire_on_commit=False) as session:
            if processed(session, envelope.id):
                return
            if from_other_orgs:
                _check_ingress(session, settings, envelope, payload, nats_subject)
            handler(session, envelope, payload)
            # In the handler's transaction: the effect and its record commit together or not at all.
            audit.write(session.connection(), action=event.type, outcome="ok", **audited(envelope.subject, payload))
            try:
                session.connection().execute(_INSERT_PROCESSED, {
                    "consumer": consumer_name, "event_id": envelope.id, "processed_at": utcnow()})
                session.commit()
            except IntegrityError:
                session.rollback()
                if not processed(session, envelope.id):
                    raise  # the effects themselves broke a constraint, not a concurrent duplicate

    def letter(nats_subject: str, body: bytes, deliveries: int, sequence: int, reason: str, code: str, *,
               keep: bool) -> Letter:
        attributes = deadletters.attributes_of(body)
        event_id = attributes.get("id")
        known = EVENT_TYPES.get(_type_of(body) or "")
        # Kept whole only when asked and it cannot identify a child.
        keep_body = keep and not (known is not None and known.identifying)
        return Letter(consumer=consumer_name, durable=durable, subject=nats_subject, event_id=event_id,
                      event_type=known.type if known is not None else None,
                      # Our own services set the subject to a case id; another organisation could put anything there.
                      case_id=None if from_other_orgs else attributes.get("subject"),
                      reason=reason, reason_code=code, deliveries=deliveries, data_kept=keep_body,
                      body=body if keep_body else redacted(body), at=deadletters.now(), source_sequence=sequence)

    async def refuse(nats_subject: str, body: bytes, deliveries: int, sequence: int, exc: BaseException) -> None:
        # Counted before the dead letter is written: whoever sees the dead letter also sees the count.
        if from_other_orgs:
            _count_refusal(event.type, _sender_of(nats_subject), _reason_code(exc))
        await _dead_letter(broker, engine, settings, letter(nats_subject, body, deliveries, sequence, _reason(exc),
                                                            _reason_code(exc), keep=not redact))
        await audit_refused(deadletters.attributes_of(body).get("subject"), _reason_code(exc))

    async def audit_refused(subject: str | None, code: str) -> None:
        # Its own transaction, after the dead letter (which alone must succeed): best effort, as the database
        # may be what failed.
        def record() -> None:
            with engine.begin() as connection:
                audit.write(connection, action=event.type, outcome="refused", reason=code[:32], **audited(subject))

        try:
            await run_db(engine, record)
        except Exception as failed:
            log.warning("refused message could not be written to the audit trail",
                        extra={"consumer": consumer_name, "error_type": type(failed).__name__})

    async def park(nats_subject: str, body: bytes, deliveries: int, sequence: int, exc: Retry) -> None:
        # The whole message, as the INBOX held it: it is to be applied when its consent arrives.
        js = broker.config.connection_state.stream
        parked = Letter(consumer=consumer_name, durable=durable, subject=nats_subject,
                        event_id=deadletters.attributes_of(body).get("id"), event_type=event.type, case_id=None,
                        reason=_reason(exc), reason_code=exc.code, deliveries=deliveries, data_kept=True, body=body,
                        at=deadletters.now(), source_sequence=sequence)
        await deadletters.write(js, PARKED_STREAM, settings.org, settings.service_name, parked)
        PARKED.add(1, {"consumer": consumer_name, "reason": exc.code})
        log.warning("message parked until its consent arrives", extra={"consumer": consumer_name,
                                                                       "reason": exc.code})

    async def retry_parked(parked: Letter) -> Outcome:
        try:
            envelope = Envelope.from_bytes(parked.body)
            payload = event.model_validate(envelope.data)
            await run_db(engine, partial(apply, envelope, payload, parked.subject))
        except Exception as exc:
            if classify_failure(exc) is Failure.INFRASTRUCTURE:
                raise
            if isinstance(exc, Retry) and exc.code == WAITS_FOR_CONSENT:
                return Outcome.WAITING
            await refuse(parked.subject, parked.body, parked.deliveries, parked.source_sequence, exc)
            return Outcome.DEAD_LETTERED
        if after_commit is not None:
            after_commit()
        return Outcome.APPLIED

    async def expire_parked(parked: Letter) -> None:
        waited = Retry(f"{parked.reason.removeprefix('Retry: ')} (parking timed out)"[:200], code=parked.reason_code)
        await refuse(parked.subject, parked.body, parked.deliveries, parked.source_sequence, waited)

    parking.register(broker, durable, retry_parked, expire_parked)

    async def retry_later(msg: NatsMessage, sequence: int, deliveries: int, exc: BaseException) -> None:
        # Not acknowledged: the broker keeps the message and offers it again after the delay.
        failures = deliveries - merit_failures.get(sequence)
        delay = infrastructure_delay(failures, initial=settings.infrastructure_retry_initial_seconds,
                                     cap=settings.infrastructure_retry_max_seconds)
        log.warning("infrastructure failure, message kept for a later try", extra={
            "consumer": consumer_name, "error_type": type(exc).__name__, "retry_in_seconds": delay})
        REDELIVERED.add(1, {"consumer": consumer_name, "kind": "infrastructure"})
        await msg.nack(delay=delay)

    async def on_message(body: bytes, msg: NatsMessage) -> None:
        nats_subject = msg.raw_message.subject
        metadata = msg.raw_message.metadata
        deliveries = metadata.num_delivered
        sequence = metadata.sequence.stream
        try:
            envelope = Envelope.from_bytes(body)
            if envelope.type != event.type:
                raise Reject("unexpected event type on subject", code="wrong_type")
            payload = event.model_validate(envelope.data)
            await run_db(engine, partial(apply, envelope, payload, nats_subject))
        except Exception as exc:
            if classify_failure(exc) is Failure.INFRASTRUCTURE:
                await retry_later(msg, sequence, deliveries, exc)
                return
            merits = merit_failures.add(sequence)
            if isinstance(exc, (Reject, ValidationError, ValueError)) or merits >= settings.max_deliveries:
                try:
                    if (isinstance(exc, Retry) and exc.code == WAITS_FOR_CONSENT
                            and settings.parking_timeout_seconds > 0):
                        await park(nats_subject, body, deliveries, sequence, exc)
                    else:
                        await refuse(nats_subject, body, deliveries, sequence, exc)
                except Exception as failed:
                    # The letter is not durable, so neither is the message's fate: keep it and try again.
                    await retry_later(msg, sequence, deliveries, failed)
                    return
                merit_failures.forget(sequence)
                await msg.ack()
                return
            backoff = settings.redelivery_backoff_seconds
            delay = backoff[min(merits, len(backoff)) - 1] if backoff else 1.0
            log.warning("message not applied, will redeliver", extra={"consumer": consumer_name,
                                                                    "error_type": type(exc).__name__})
            REDELIVERED.add(1, {"consumer": consumer_name, "kind": "merit"})
            await msg.nack(delay=delay)
        else:
            merit_failures.forget(sequence)
            await msg.ack()
            if after_commit is not None:
                after_commit()

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
                                  max_deliver=UNLIMITED_DELIVERIES, max_ack_pending=MAX_ACK_PENDING),
            ack_policy=AckPolicy.MANUAL,
            decoder=_raw_body,
            title=f"{settings.service_name}:{durable}",
        )
    subscriber(on_message)


async def _raw_body(message: NatsMessage) -> bytes:
    # Hand the handler the bytes as sent: parsing (and its errors) stays in our code, which never
    # logs payloads, instead of in the framework's decoder.
    return bytes(message.body)


def _sender_of(nats_subject: str) -> str:
    # inbox.<to>.<from>.<type>: the broker lets only account <from> publish on this subject.
    return nats_subject.split(".")[2]


def _check_ingress(session: Session, settings: ServiceSettings, envelope: Envelope, payload: Event,
                   nats_subject: str) -> None:
    """Refuse a message from another organisation that claims an author other than its sender, or
    is not meant for this organisation, or identifies a child without a consent that covers it (a
    statutory report instead without the receiver the law names, see ``_check_statutory``)."""
    sender = _sender_of(nats_subject)
    if sender == settings.org:
        raise Reject("an organisation does not write to its own inbox", code="own_inbox")
    if envelope.source_org != sender:
        raise Reject("sender in envelope does not match the subject the broker let it publish on",
                     code="source_mismatch")
    for field in type(payload).sender_fields:
        if getattr(payload, field) != sender:
            raise Reject(f"{field} names another organisation than the sender", code="sender_mismatch")
    for field in type(payload).receiver_fields:
        named = getattr(payload, field)
        if settings.org not in (named if isinstance(named, (list, tuple)) else [named]):
            raise Reject(f"{field} does not name this organisation", code="not_a_receiver")
    if payload.identifying and type(payload).statutory_basis:
        _check_statutory(settings, sender, payload)
        return
    if payload.identifying:
        named = grant_of(session, disclosing_org=sender, consent_id=envelope.consentid) if envelope.consentid else None
        if named is not None and named.withdrawn_at is not None:
            # Arrived after its consent was withdrawn: never stored, and no retry can change that.
            raise Reject("consent was withdrawn", code="consent_withdrawn")
        decision = decide(session, disclosing_org=sender, receiving_org=settings.org,
                          child_key=payload.child_key,  # type: ignore[attr-defined]
                          categories=payload.consent_categories, purpose=payload.disclosure_purpose(),
                          consent_id=envelope.consentid)
        if not decision.allowed:
            # The consent may still be on its way on another consumer; retry, then dead-letter.
            raise Retry(decision.reason, code="not_covered")


def _check_statutory(settings: ServiceSettings, sender: str, payload: Event) -> None:
    """Accept a report the law obliges the sender to make (no consent) only where the law sends it.

    Only an organisation that is itself social services in its own federation directory, serving the
    child's municipality, accepts one, and only from a member of that directory; the event's legal
    basis must be the one its type declares. Anywhere else it is refused for good (docs/decisions/0023).
    """
    basis = type(payload).statutory_basis
    own = settings.federation.get(settings.org)
    if own is None or own.kind is not OrgKind.SOCIAL_SERVICES:
        raise Reject("a statutory report is accepted by social services only", code="not_statutory_receiver")
    if sender not in settings.federation:
        raise Reject("the sender is not a member of the federation", code="unknown_sender")
    if getattr(payload, "legal_basis", basis) != basis:
        raise Reject("the report names another legal basis than its type", code="wrong_legal_basis")
    municipality = getattr(payload, "municipality_code", None)
    if not isinstance(municipality, str) or not own.serves(municipality):
        raise Reject("this organisation does not serve the child's municipality", code="not_served")


def _reason(exc: BaseException) -> str:
    # Never the exception text: validation errors and SQL errors can quote personal data.
    if isinstance(exc, (Reject, Retry)):
        return f"{type(exc).__name__}: {exc}"[:255]
    return type(exc).__name__


def _reason_code(exc: BaseException) -> str:
    # A short, fixed vocabulary, so a metric's attributes stay few and carry no data.
    if isinstance(exc, (Reject, Retry)):
        return exc.code
    if isinstance(exc, ValueError):  # pydantic's ValidationError is one
        return "invalid_message"
    return "not_applied"


def _count_refusal(event_type: str, sender: str, reason: str) -> None:
    # event_type is the consumer's own (not the sender's claim) and sender a federation member the
    # broker vouches for, so the attributes are few and chosen by us, never by the message.
    attributes = {"event_type": event_type, "sender": sender, "reason": reason}
    REFUSED.add(1, attributes)
    log.warning("message from another organisation refused", extra=attributes)


def redacted(body: bytes) -> bytes:
    """The CloudEvents attributes of a message, without its data: what a dead letter may keep."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    kept: dict[str, str] = {}
    if isinstance(parsed, dict):
        # Only short strings: an attribute the sender stuffed with something else is not kept either.
        kept = {name: parsed[name] for name in DEAD_LETTER_ATTRIBUTES
                if isinstance(parsed.get(name), str) and len(parsed[name]) <= 255}
        if kept.get("type") not in EVENT_TYPES:  # a type of the sender's invention could be anything
            kept.pop("type", None)
    return orjson.dumps(kept)


def _type_of(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    return kind if isinstance(kind, str) else None


async def _dead_letter(broker: NatsBroker, engine: Engine, settings: ServiceSettings, letter: Letter) -> None:
    # The stream first, and only the stream must succeed: the database may be what is failing.
    js = broker.config.connection_state.stream
    await deadletters.write(js, DEADLETTER_STREAM, settings.org, settings.service_name, letter)
    DEAD_LETTERED.add(1, {"consumer": letter.consumer, "reason": letter.reason_code})
    log.error("message dead-lettered", extra={"consumer": letter.consumer, "reason": letter.reason})

    def copy() -> None:
        with Session(engine) as session:
            session.add(DeadLetter(consumer=letter.consumer, nats_subject=letter.subject, event_id=letter.event_id,
                                   event_type=letter.event_type, reason=letter.reason, deliveries=letter.deliveries,
                                   body=letter.body))
            session.commit()

    try:
        await run_db(engine, copy)
    except Exception as exc:
        # A local convenience only (decision 14): the DEADLETTER stream already holds the letter.
        log.warning("local copy of a dead letter not written", extra={"consumer": letter.consumer,
                                                                      "error_type": type(exc).__name__})


MAX_DELIVERIES_ADVISORIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"


async def watch_max_deliveries(broker: NatsBroker, settings: ServiceSettings) -> Subscription:
    """Dead-letter (without data) every message the broker gave up delivering to one of this service's consumers.

    A safety net: our durables have no delivery limit (decision 13), so only a consumer created by
    hand or by an older version can reach one. An advisory is a core NATS message: one that arrives
    while the service is down is not seen (the message itself stays in its stream until its age limit).
    """
    client = broker.config.connection_state.connection
    js = broker.config.connection_state.stream
    prefix = f"{settings.service_name}-"

    async def on_advisory(advisory: Msg) -> None:
        try:
            parsed = orjson.loads(advisory.data)
            consumer, stream = str(parsed["consumer"]), str(parsed["stream"])
            sequence, deliveries = int(parsed["stream_seq"]), int(parsed.get("deliveries", 0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        if not consumer.startswith(prefix):
            return  # another service's consumer: that service writes the letter
        try:
            original = await js.get_msg(stream, sequence)
            body, subject = bytes(original.data or b""), original.subject or ""
        except NotFoundError:
            body, subject = b"", ""
        known = EVENT_TYPES.get(_type_of(body) or "")
        letter = Letter(consumer=consumer, durable=consumer.removeprefix(prefix), subject=subject,
                        event_id=deadletters.attributes_of(body).get("id"),
                        event_type=known.type if known is not None else None, case_id=None,
                        reason="the broker stopped delivering it (maximum deliveries)", reason_code="max_deliveries",
                        deliveries=deliveries, data_kept=False, body=redacted(body), at=deadletters.now(),
                        source_sequence=sequence)
        try:
            await deadletters.write(js, DEADLETTER_STREAM, settings.org, settings.service_name, letter)
        except Exception as exc:
            log.error("dead letter of an advisory not written", extra={"consumer": consumer,
                                                                       "error_type": type(exc).__name__})
            return
        DEAD_LETTERED.add(1, {"consumer": consumer, "reason": letter.reason_code})
        log.error("message dead-lettered after the broker's maximum deliveries", extra={"consumer": consumer})

    subscription: Subscription = await client.subscribe(MAX_DELIVERIES_ADVISORIES, cb=on_advisory)
    return subscription
