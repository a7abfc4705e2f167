"""The outbox relay: publishes committed outbox rows to JetStream, woken by each commit.

Waking on commit (not polling) keeps the relay off the latency path; the periodic sweep only
catches rows left by a crash or a failed publish. ``Nats-Msg-Id`` is the event id, so a row
published twice (crash between publish and mark) is dropped by the stream's duplicate window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from faststream.nats import NatsBroker
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, delete, select, update
from sqlmodel import Session, col

from tillsammans_common.db import run_db, utcnow
from tillsammans_common.messaging import gate
from tillsammans_common.messaging.gate import Settlement
from tillsammans_common.messaging.outbox import on_outbox_commit
from tillsammans_common.models import OutboxMessage
from tillsammans_common.telemetry import context_of

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("tillsammans.outbox")
PUBLISHED_RETENTION = timedelta(days=7)
# Publish a permitted row only within this share of its lease: the rest is margin for a slow pass.
_EXPIRED = "LeaseExpired"


@dataclass(frozen=True)
class _Pending:
    seq: int
    event_id: str
    nats_subject: str
    stream: str
    body: bytes
    traceparent: str | None
    gate: dict[str, Any] | None

    @property
    def destination(self) -> str:
        # Order is kept per destination: a failing receiver must not let later messages overtake.
        return ".".join(self.nats_subject.split(".")[:2]) if self.stream == "INBOX" else self.stream


def _ask_of(row: _Pending) -> gate.DisclosureAsk:
    """The question a row carries, without the permit it was queued with."""
    assert row.gate is not None
    return gate.DisclosureAsk.model_validate({key: value for key, value in row.gate.items() if key != "permit"})


class OutboxRelay:
    """Moves outbox rows of one service's database to NATS."""

    def __init__(self, engine: Engine, broker: NatsBroker, *, org: str, sweep_seconds: float = 1.0,
                 batch: int = 200) -> None:
        self.engine = engine
        self.broker = broker
        self.org = org
        self.sweep_seconds = sweep_seconds
        self.batch = batch
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Ask the relay to look now; safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        """Start relaying in the background."""
        self._loop = asyncio.get_running_loop()
        on_outbox_commit(self.engine, self.wake)
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop after the current batch; unsent rows stay for the next start."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        sweeps = 0
        while True:
            self._wake.clear()
            try:
                _, full = await self.relay_once()
            except Exception:
                log.exception("outbox relay pass failed")
                full = False
            if full:
                continue
            sweeps += 1
            if sweeps % 600 == 0:
                await run_db(self.engine, self._purge_published)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.sweep_seconds)
            except TimeoutError:
                pass

    async def relay_once(self) -> tuple[int, bool]:
        """Publish one batch of unsent rows; returns (sent, whether the batch was full)."""
        pending = await run_db(self.engine, self._load)
        if not pending:
            return 0, False
        permits, withheld, deadlines = await self._ask_gate(pending)
        # All publishes of a batch are in flight at once and their acknowledgements awaited together:
        # one round trip per batch instead of per row. The server stores one connection's messages
        # in the order sent; if one fails, it and every later row to the same destination stay
        # unsent and go again in order next pass (those that did arrive are dropped as duplicates
        # by their Nats-Msg-Id), so a failing receiver never lets later messages overtake.
        sendable = [row for row in pending if row.seq not in withheld]
        errors = await asyncio.gather(*(self._publish(row, permits, deadlines) for row in sendable))
        published: list[int] = []
        failed: dict[int, str] = {}
        blocked: set[str] = set()
        settlements: dict[str, Settlement] = {}
        for row, error in zip(sendable, errors, strict=True):
            verdict = permits.get(row.seq)
            if verdict is not None:
                settlements[verdict.decision_id] = (
                    Settlement.SENT if error is None else Settlement.EXPIRED if error == _EXPIRED
                    else Settlement.FAILED)
            if error is not None and row.destination not in blocked:
                failed[row.seq] = error
                blocked.add(row.destination)
                log.warning("outbox publish failed, will retry",
                            extra={"destination": row.destination, "error_type": error})
            elif error is None and row.destination not in blocked:
                published.append(row.seq)
        await gate.settle(self.broker.connection, self.org, settlements)
        await run_db(self.engine, partial(self._mark, published, failed, withheld))
        return len(published), len(pending) == self.batch and not failed

    async def _ask_gate(self, pending: list[_Pending]
                        ) -> tuple[dict[int, gate.DisclosureVerdict], dict[int, str], dict[int, float]]:
        """Permits for the identifying rows of a batch: the one given when a row was queued while it
        lasts, else a fresh one, all asked for in one round trip.

        Returns the permits by row, the refused rows with their reason (withheld for good), and the
        monotonic deadline before which each permitted row must be published.
        """
        permits: dict[int, gate.DisclosureVerdict] = {}
        deadlines: dict[int, float] = {}
        now, clock = utcnow(), time.monotonic()
        to_ask: list[_Pending] = []
        for row in pending:
            if row.gate is None:
                continue
            stored = row.gate.get("permit")
            permit = gate.DisclosureVerdict.model_validate(stored) if stored else None
            if permit is not None and permit.usable_until is not None and permit.usable_until > now:
                permits[row.seq] = permit
                deadlines[row.seq] = clock + (permit.usable_until - now).total_seconds()
            else:
                to_ask.append(row)
        if not to_ask:
            return permits, {}, deadlines
        asked_at = time.monotonic()
        try:
            verdicts = await gate.ask(self.broker.connection, self.org, gate.Phase.SEND,
                                      [_ask_of(row) for row in to_ask])
        except gate.GateUnavailable as exc:
            log.warning("consent service did not answer; identifying messages wait",
                        extra={"error_type": str(exc)})
            return permits, {}, deadlines
        withheld: dict[int, str] = {}
        for row, verdict in zip(to_ask, verdicts, strict=True):
            if verdict.allowed:
                permits[row.seq] = verdict
                # Counted from before the question, so this deadline falls before the consent service's.
                deadlines[row.seq] = asked_at + verdict.lease_seconds * gate.LEASE_SHARE
            else:
                withheld[row.seq] = verdict.reason
        return permits, withheld, deadlines

    async def _publish(self, row: _Pending, permits: dict[int, gate.DisclosureVerdict],
                       deadlines: dict[int, float]) -> str | None:
        """Publish one row in the trace it was written in; the error type if it failed.

        An identifying row goes only with a permit of this pass, and only before its lease runs out.

        Straight to JetStream rather than through the broker's publish middlewares: the relay
        already holds the trace context (the row's traceparent), and the middlewares cost more than
        the publish. The receiving consumer's telemetry continues the trace from the header.
        """
        if row.gate is not None:
            if row.seq not in permits:
                return "ConsentServiceUnavailable"
            if time.monotonic() >= deadlines[row.seq]:
                return _EXPIRED
        headers = {"Nats-Msg-Id": row.event_id, "content-type": "application/cloudevents+json"}
        with _tracer.start_as_current_span(f"{row.nats_subject} publish", context=context_of(row.traceparent),
                                           kind=SpanKind.PRODUCER,
                                           attributes={"messaging.system": "nats",
                                                       "messaging.destination.name": row.nats_subject,
                                                       "messaging.message.id": row.event_id}):
            inject(headers)
            try:
                await self.broker.config.connection_state.stream.publish(
                    row.nats_subject, row.body, timeout=5.0, stream=row.stream, headers=headers)
            except Exception as exc:  # the receiver's stream may be down; the row stays for the next pass
                return type(exc).__name__
        return None

    def _load(self) -> list[_Pending]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(col(OutboxMessage.seq), col(OutboxMessage.event_id), col(OutboxMessage.nats_subject),
                       col(OutboxMessage.stream), col(OutboxMessage.body), col(OutboxMessage.traceparent),
                       col(OutboxMessage.gate))
                .where(col(OutboxMessage.published_at).is_(None), col(OutboxMessage.withheld_at).is_(None))
                .order_by(col(OutboxMessage.seq))
                .limit(self.batch)
            ).all()
            return [_Pending(*row) for row in rows]

    def _mark(self, published: list[int], failed: dict[int, str], withheld: dict[int, str]) -> None:
        with Session(self.engine) as session:
            for seq, reason in withheld.items():
                # Refused by the consent service (e.g. withdrawn): kept as a record, never sent.
                session.execute(update(OutboxMessage).where(col(OutboxMessage.seq) == seq)
                                .values(withheld_at=utcnow(), withheld_reason=reason[:255]))
            if published:
                session.execute(update(OutboxMessage).where(col(OutboxMessage.seq).in_(published))
                             .values(published_at=utcnow()))
            for seq, error in failed.items():
                session.execute(update(OutboxMessage).where(col(OutboxMessage.seq) == seq)
                             .values(attempts=OutboxMessage.attempts + 1, last_error=error))
            session.commit()

    def _purge_published(self) -> None:
        with Session(self.engine) as session:
            session.execute(delete(OutboxMessage).where(
                col(OutboxMessage.published_at) < utcnow() - PUBLISHED_RETENTION))
            session.commit()
