"""The transactional outbox: events are rows written in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy import event as sa_event
from sqlmodel import Session

from tillsammans_common.db import utcnow
from tillsammans_common.events import (
    EVENTS_STREAM,
    INBOX_STREAM,
    Envelope,
    Event,
    inbox_subject,
    internal_subject,
)
from tillsammans_common.models import OutboxMessage
from tillsammans_common.telemetry import current_traceparent

_wakers: dict[int, Callable[[], None]] = {}
# Built once: SQLAlchemy then reuses the compiled statement instead of building it per row.
_INSERT_OUTBOX = insert(OutboxMessage.__table__)  # type: ignore[attr-defined]


def record_event(session: Session, event: Event, *, source: str, org: str, subject: str) -> Envelope:
    """Queue an event for this organisation's own stream."""
    envelope = Envelope.wrap(event, source=source, subject=subject)
    _add(session, envelope, nats_subject=internal_subject(org, event.type), stream=EVENTS_STREAM)
    return envelope


def record_cross_org(session: Session, envelope: Envelope, *, from_org: str, to_org: str,
                     gate: dict[str, Any] | None = None) -> None:
    """Queue a message for another organisation's inbox; only the egress calls this.

    ``gate`` is the question the relay puts to the consent service before an identifying message
    leaves; a message without one is never identifying.
    """
    _add(session, envelope, nats_subject=inbox_subject(to_org, from_org, envelope.type), stream=INBOX_STREAM,
         gate=gate)


def _add(session: Session, envelope: Envelope, *, nats_subject: str, stream: str,
         gate: dict[str, Any] | None = None) -> None:
    # A plain INSERT on the session's connection, in its transaction: an outbox row is never read
    # back or changed by the caller, so an ORM object (the costliest part of a write) buys nothing.
    session.connection().execute(_INSERT_OUTBOX, {
        "event_id": envelope.id,
        "nats_subject": nats_subject,
        "stream": stream,
        # The relay keeps order and backs off per destination: one receiver's inbox, or this organisation's stream.
        "destination": ".".join(nats_subject.split(".")[:2]) if stream == INBOX_STREAM else stream,
        "body": envelope.to_bytes(),
        "traceparent": current_traceparent(),
        "created_at": utcnow(),
        "attempts": 0,
        "gate": gate,
    })
    session.info["outbox_dirty"] = True


def on_outbox_commit(engine: Engine, wake: Callable[[], None]) -> None:
    """Call ``wake`` after each commit on ``engine`` that wrote outbox rows (no polling delay)."""
    _wakers[id(engine)] = wake


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("outbox_dirty", False):
        wake = _wakers.get(id(session.get_bind()))
        if wake is not None:
            wake()


@sa_event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("outbox_dirty", None)
