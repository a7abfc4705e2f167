"""Tables every service has: outbox, processed messages, dead letters, audit log,
idempotency records and the local consent replica."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from tillsammans_common.db import utcnow


def _ts(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class OutboxMessage(SQLModel, table=True):
    """An event written in the same transaction as the change it reports, waiting for the relay."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        # The relay walks the destinations that have unsent rows and reads each one's oldest rows: both are
        # seeks in this index, however many rows wait for a receiver that is down. Old rows are purged by
        # its first column.
        Index("ix_outbox_pending", "published_at", "withheld_at", "destination", "seq"),
        UniqueConstraint("event_id", "nats_subject", name="uq_outbox_event_subject"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64)
    nats_subject: str = Field(max_length=255)
    stream: str = Field(max_length=64)
    destination: str = Field(max_length=128, description=(
        "Where the row goes: 'inbox.<receiver>' for another organisation, else the stream; order and "
        "backoff are kept per destination."))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    traceparent: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    published_at: datetime | None = _ts(nullable=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=255)
    gate: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True), description=(
        "For an identifying message: the question the consent service answers before it leaves."))
    withheld_at: datetime | None = _ts(nullable=True)
    withheld_reason: str | None = Field(default=None, max_length=255)


class ProcessedMessage(SQLModel, table=True):
    """An event a consumer has applied; written with its effects so each event counts once."""

    __tablename__ = "processed_message"

    consumer: str = Field(primary_key=True, max_length=64)
    event_id: str = Field(primary_key=True, max_length=64)
    # Indexed for pruning (tillsammans_common.retention): each batch is a seek, not a scan.
    processed_at: datetime = _ts(nullable=False, default=utcnow, index=True)


class DeadLetter(SQLModel, table=True):
    """A message that exhausted its deliveries or can never be applied; kept, never dropped."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    consumer: str = Field(max_length=64)
    nats_subject: str = Field(max_length=255)
    event_id: str | None = Field(default=None, max_length=64)
    event_type: str | None = Field(default=None, max_length=128)
    reason: str = Field(max_length=255)
    deliveries: int
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _ts(nullable=False, default=utcnow)


class AuditRecord(SQLModel, table=True):
    """Who did what to which case, when, on what need-to-know basis, or why it was refused (patient-data style
    access log; append-only, see docs/decisions/0018-audit-trail.md)."""

    __tablename__ = "audit_record"
    __table_args__ = (
        # The log reviewer's questions: "who looked at this child" and "what did this user look at", each over a
        # period. The plain index on ``at`` serves the period alone and the retention pruner.
        Index("ix_audit_record_case_at", "case_id", "at"),
        Index("ix_audit_record_user_at", "user", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(nullable=False, default=utcnow, index=True)
    org: str = Field(max_length=32, description="The principal's organisation; empty when nobody was identified.")
    user: str = Field(max_length=128, description="The principal's user id, 'anonymous', or 'system:<consumer>'.")
    role: str = Field(max_length=128, description="The principal's roles, comma-separated ('system' for a consumer).")
    action: str = Field(max_length=128)
    case_id: str | None = Field(default=None, max_length=64)
    purpose: str | None = Field(default=None, max_length=64)
    outcome: str = Field(default="ok", max_length=32)
    trace_id: str | None = Field(default=None, max_length=32)
    unit_id: str | None = Field(default=None, max_length=64, description="The child's unit the access concerned.")
    record_id: str | None = Field(default=None, max_length=64,
                                  description="The record accessed (a meeting, mapping, concern... id).")
    basis: str | None = Field(default=None, max_length=32, description=(
        "The need-to-know relation that allowed the access (e.g. 'bba-of-unit', 'participant'); null when refused."))
    reason: str | None = Field(default=None, max_length=32,
                               description="Why the access was refused, a fixed code (e.g. 'no-token', 'role').")
    protected: bool = Field(default=False, sa_column_kwargs={"server_default": "0"},
                            description="The child has a protected identity (skyddad identitet).")
    service: str | None = Field(default=None, max_length=32, description="The service that wrote the record.")
    units: str | None = Field(default=None, max_length=255,
                              description="The principal's units at the time, comma-separated.")
    principal_kind: str = Field(default="person", max_length=16, sa_column_kwargs={"server_default": "person"},
                                description="'person', 'client' (an integration) or 'system' (a consumer).")


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a POST with an Idempotency-Key, replayed for repeats."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("org", "user", "key", name="uq_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    org: str = Field(max_length=32)
    user: str = Field(max_length=128)
    key: str = Field(max_length=128)
    fingerprint: str = Field(max_length=64)
    status_code: int
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(nullable=False, default=utcnow, index=True)  # indexed for pruning


class ConsentGrant(SQLModel, table=True):
    """A consent this service knows of (its own organisation's, or replicated to it).

    Holds no identity: the child is matched on a pseudonymous child key.
    """

    __tablename__ = "consent_grant"
    __table_args__ = (Index("ix_consent_lookup", "child_key", "disclosing_org"),)

    consent_id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(max_length=64)
    child_key: str = Field(max_length=64)
    disclosing_org: str = Field(primary_key=True, max_length=32)
    """Part of the key: a consent id names a consent only together with its discloser, so no member can
    take (squat) an id another member's consent will arrive with."""
    receiving_orgs: list[str] = Field(sa_column=Column(JSON, nullable=False))
    categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    purpose: str = Field(max_length=64)
    valid_from: datetime = _ts(nullable=False)
    valid_until: datetime = _ts(nullable=False)
    withdrawn_at: datetime | None = _ts(nullable=True)
