"""The outbox relay: publishes committed outbox rows to JetStream, woken by each commit.

Waking on commit (not polling) keeps the relay off the latency path; the periodic sweep only
catches rows left by a crash or a failed publish. ``Nats-Msg-Id`` is the event id, so a row
published twice (crash between publish and mark) is dropped by the stream's duplicate window.

Order and failure are per destination (``inbox.<receiver>``, or this organisation's own stream): each
pass loads a fair share of the batch for every destination that has unsent rows, and a destination
whose publish failed backs off (capped exponential, with jitter) without being loaded at all, so a
receiver that refuses or cannot be reached delays only its own messages (docs/decisions/0012).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from faststream.nats import NatsBroker
from opentelemetry import metrics, trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, Select, bindparam, func, select, text, union_all, update
from sqlmodel import Session, col

from tillsammans_common.background import cancel_and_wait, wait_for_wake
from tillsammans_common.db import run_db, utcnow
from tillsammans_common.messaging import gate
from tillsammans_common.messaging.gate import Settlement
from tillsammans_common.messaging.outbox import on_outbox_commit
from tillsammans_common.models import OutboxMessage
from tillsammans_common.telemetry import context_of, delivery_counters, exporting, outbox_backlog_gauges

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("tillsammans.outbox")
# Publish a permitted row only within this share of its lease: the rest is margin for a slow pass.
_EXPIRED = "LeaseExpired"
_NO_PERMIT = "ConsentServiceUnavailable"
# Failures of the disclosure gate, not of the destination: the row waits (its destination's later rows
# with it) and is tried next pass, but the receiver is not backed off for them.
_GATE_ERRORS = frozenset({_NO_PERMIT, _EXPIRED})
_UNSENT = (col(OutboxMessage.published_at).is_(None), col(OutboxMessage.withheld_at).is_(None))
# The destinations with unsent rows, one index seek each (a loose index scan, which neither SQLite nor
# PostgreSQL plans by itself): a GROUP BY would read every waiting row, of a dead receiver too, each pass.
_DESTINATIONS = text("""
WITH RECURSIVE walk(destination) AS (
    SELECT MIN(destination) FROM outbox_message WHERE published_at IS NULL AND withheld_at IS NULL
    UNION ALL
    SELECT (SELECT MIN(o.destination) FROM outbox_message o
            WHERE o.published_at IS NULL AND o.withheld_at IS NULL AND o.destination > walk.destination)
    FROM walk WHERE walk.destination IS NOT NULL
)
SELECT destination FROM walk WHERE destination IS NOT NULL
""")
BACKLOG_REFRESH_SECONDS = 5.0


@dataclass(frozen=True)
class _Pending:
    seq: int
    event_id: str
    nats_subject: str
    stream: str
    body: bytes
    traceparent: str | None
    gate: dict[str, Any] | None
    # Order is kept per destination: a failing receiver must not let later messages overtake.
    destination: str


@dataclass
class _Backoff:
    failures: int
    until: float


@dataclass(frozen=True)
class _Load:
    rows: list[_Pending]
    limits: dict[str, int]
    destinations: set[str]


def _ask_of(row: _Pending) -> gate.DisclosureAsk:
    """The question a row carries, without the permit it was queued with."""
    assert row.gate is not None
    return gate.DisclosureAsk.model_validate({key: value for key, value in row.gate.items() if key != "permit"})


# Module level, like the consumers' counters: a no-op until an exporter installs a meter provider.
PUBLISH_FAILED = delivery_counters().publish_failed


class OutboxRelay:
    """Moves outbox rows of one service's database to NATS."""

    def __init__(self, engine: Engine, broker: NatsBroker, *, org: str, sweep_seconds: float = 1.0,
                 batch: int = 200, backoff_initial_seconds: float = 0.2, backoff_max_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 meter_provider: metrics.MeterProvider | None = None) -> None:
        self.engine = engine
        self.broker = broker
        self.org = org
        self.sweep_seconds = sweep_seconds
        self.batch = batch
        self.backoff_initial_seconds = backoff_initial_seconds
        self.backoff_max_seconds = backoff_max_seconds
        # Backoff runs on this clock (a test seam); permit leases stay on time.monotonic, as the consent
        # service's own clock runs.
        self._clock = clock
        self._backoff: dict[str, _Backoff] = {}
        # Counting the backlog costs a read of every waiting row: done only when someone can see the gauges.
        self._observe_backlog = meter_provider is not None or exporting()
        self._backlog: dict[str, tuple[int, datetime]] = {}
        self._backlog_due = 0.0
        backlog = weakref.WeakMethod(self.backlog)
        # The meter outlives a relay (tests make many): held weakly, a relay that is gone reports nothing.
        outbox_backlog_gauges(lambda: method() if (method := backlog()) is not None else {}, meter_provider)
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
        await cancel_and_wait(self._task)

    def retry_at(self, destination: str) -> float | None:
        """When (on the relay's clock) a backing-off destination is tried again; None if it is not backing off."""
        backoff = self._backoff.get(destination)
        return backoff.until if backoff is not None else None

    def backlog(self) -> dict[str, tuple[int, float]]:
        """Unsent rows per destination and the age in seconds of the oldest, as last counted."""
        now = utcnow()
        return {destination: (count, max(0.0, (now - oldest).total_seconds()))
                for destination, (count, oldest) in self._backlog.items()}

    async def refresh_backlog(self) -> None:
        """Count the unsent rows per destination for the backlog gauges."""
        self._backlog = await run_db(self.engine, self._count_backlog)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                _, full = await self.relay_once()
                if self._observe_backlog and self._clock() >= self._backlog_due:
                    self._backlog_due = self._clock() + BACKLOG_REFRESH_SECONDS
                    await self.refresh_backlog()
            except Exception:
                log.exception("outbox relay pass failed")
                full = False
            if full:
                continue
            # Wake for the first backoff that ends before the next sweep, so a retry is not late by a sweep.
            now = self._clock()
            timeout = min([self.sweep_seconds, *(backoff.until - now for backoff in self._backoff.values()
                                                 if backoff.until > now)])
            await wait_for_wake(self._wake, timeout)

    async def relay_once(self) -> tuple[int, bool]:
        """Publish one batch of unsent rows; returns (sent, whether a destination may have more waiting).

        A destination that is backing off is not loaded; when its pause ends it is tried with its oldest
        row alone, and gets its full share again once that has gone.
        """
        now = self._clock()
        waiting = {destination for destination, backoff in self._backoff.items() if backoff.until > now}
        load = await run_db(self.engine, partial(self._load, waiting, set(self._backoff) - waiting))
        for destination in set(self._backoff) - load.destinations:
            # Nothing left to send there (e.g. its last rows were withheld): no backoff to keep.
            del self._backoff[destination]
        pending = load.rows
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
        blocked: dict[str, str] = {}
        settlements: dict[str, Settlement] = {}
        for row, error in zip(sendable, errors, strict=True):
            verdict = permits.get(row.seq)
            if verdict is not None:
                settlements[verdict.decision_id] = (
                    Settlement.SENT if error is None else Settlement.EXPIRED if error == _EXPIRED
                    else Settlement.FAILED)
            if error is not None:
                PUBLISH_FAILED.add(1, {"destination": row.destination, "error_type": error})
            if error is not None and row.destination not in blocked:
                failed[row.seq] = error
                blocked[row.destination] = error
            elif error is None and row.destination not in blocked:
                published.append(row.seq)
        await gate.settle(self.broker.connection, self.org, settlements)
        await run_db(self.engine, partial(self._mark, published, failed, withheld))
        sent = set(published)
        self._after_pass({row.destination for row in sendable if row.seq in sent}, blocked)
        loaded: dict[str, int] = {}
        for row in pending:
            loaded[row.destination] = loaded.get(row.destination, 0) + 1
        more = any(count == load.limits[destination] and destination not in blocked
                   for destination, count in loaded.items())
        return len(published), more

    def _after_pass(self, delivered: set[str], blocked: Mapping[str, str]) -> None:
        """Back off the destinations whose publish failed; end the backoff of those that took their rows."""
        for destination, error in blocked.items():
            if error in _GATE_ERRORS:
                continue
            backoff = self._backoff.setdefault(destination, _Backoff(failures=0, until=0.0))
            backoff.failures += 1
            pause = min(self.backoff_max_seconds, self.backoff_initial_seconds * 2.0 ** (backoff.failures - 1))
            # Jitter in [pause/2, pause]: relays of several services that failed together do not retry in step.
            pause *= 0.5 + random.random() / 2  # noqa: S311 - spreading retries, not a secret
            backoff.until = self._clock() + pause
            log.warning("outbox destination failed, backing off",
                        extra={"destination": destination, "error_type": error, "failures": backoff.failures,
                               "retry_in_seconds": round(pause, 3)})
        for destination in delivered - set(blocked):
            if destination in self._backoff:
                backoff = self._backoff.pop(destination)
                log.info("outbox destination delivering again",
                         extra={"destination": destination, "failures": backoff.failures})

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
                return _NO_PERMIT
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

    def _load(self, waiting: set[str], probing: set[str]) -> _Load:
        """The oldest unsent rows of each destination that is not backing off, a fair share of the batch each."""
        with Session(self.engine) as session:
            present = set(session.execute(_DESTINATIONS).scalars())
            destinations = sorted(present - waiting)
            if not destinations:
                return _Load([], {}, present)
            share = max(1, self.batch // len(destinations))
            # A destination coming out of its backoff is tried with one row: no batch of in-flight
            # publishes to a receiver that may still refuse them.
            limits = {destination: 1 if destination in probing else share for destination in destinations}
            parts = [self._oldest(destination, limit) for destination, limit in limits.items()]
            statement = parts[0] if len(parts) == 1 else union_all(*(select(part.subquery()) for part in parts))
            rows = sorted((_Pending(*row) for row in session.execute(statement).all()), key=lambda row: row.seq)
            return _Load(rows, limits, present)

    @staticmethod
    def _oldest(destination: str, limit: int) -> Select[Any]:
        return (select(col(OutboxMessage.seq), col(OutboxMessage.event_id), col(OutboxMessage.nats_subject),
                       col(OutboxMessage.stream), col(OutboxMessage.body), col(OutboxMessage.traceparent),
                       col(OutboxMessage.gate), col(OutboxMessage.destination))
                .where(*_UNSENT, col(OutboxMessage.destination) == bindparam(None, destination))
                .order_by(col(OutboxMessage.seq))
                .limit(limit))

    def _count_backlog(self) -> dict[str, tuple[int, datetime]]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(col(OutboxMessage.destination), func.count(), func.min(col(OutboxMessage.created_at)))
                .where(*_UNSENT).group_by(col(OutboxMessage.destination))).all()
        # SQLite hands timestamps back without their zone; they were written in UTC.
        return {destination: (count, oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC))
                for destination, count, oldest in rows}

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
