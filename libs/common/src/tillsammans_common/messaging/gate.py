"""The disclosure gate: every identifying message is decided by this organisation's consent service.

The consent service holds the authoritative record of the consents this organisation may
disclose under, so it alone answers "may this message about this child go to that organisation
now?". It is asked twice for each identifying message, over NATS request-reply inside the
organisation's own account:

- when a user asks for the disclosure (phase ``queue``), so the user hears at once that no
  consent covers it and nothing is written;
- by the outbox relay just before the message leaves (phase ``send``), unless the permit given
  when it was queued can still be used.

A permit is a lease: the message is published only before the lease runs out, the relay reports
back what happened, and a withdrawal waits for the open leases of its consent before it answers.
Once a withdrawal has answered, nothing under that consent leaves (docs/decisions/0008).

Every question and answer is kept by the consent service as a decision record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

import orjson
from nats.aio.client import Client
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TIMEOUT_SECONDS = 2.0
LEASE_SHARE = 0.5
"""A permit is used only within this share of its lease, counted from before it was asked for: the rest is
margin for a slow pass and for clocks that differ a little between the asker and the consent service."""


class Phase(StrEnum):
    """When the gate is asked: as the user asks to disclose, or as the message leaves."""

    QUEUE = "queue"
    SEND = "send"


class Settlement(StrEnum):
    """What the relay did with a permitted message."""

    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"


class DisclosureAsk(BaseModel):
    """One identifying message that wants to leave; carries a pseudonymous child reference, never the identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=128)
    consent_id: str | None = Field(None, max_length=64, description="The consent the message rests on (send phase).")
    receiving_org: str = Field(max_length=32)
    child_ref: str = Field(max_length=64, description="This organisation's own pseudonymous key of the child.")
    categories: list[str]
    purpose: str = Field(max_length=64)
    requested_by: str = Field(max_length=128)
    requested_role: str = Field(max_length=32)
    trace_id: str | None = Field(None, max_length=32)


class DisclosureVerdict(BaseModel):
    """The consent service's answer for one message, as recorded in its decision record."""

    model_config = ConfigDict(frozen=True)
    decision_id: str
    event_id: str
    allowed: bool
    consent_id: str | None = None
    consent_version: int | None = None
    reason: str
    lease_seconds: float = 0.0
    decided_at: datetime
    usable_until: datetime | None = Field(
        None, description="Set by the asker on its own clock: the permit may be used to send until then.")


class AskBatch(BaseModel):
    """Several questions in one round trip (the relay asks for a whole batch at once)."""

    model_config = ConfigDict(extra="forbid")
    phase: Phase
    asks: list[DisclosureAsk]


class VerdictBatch(BaseModel):
    """The answers, in the order asked."""

    verdicts: list[DisclosureVerdict]


class SettlementReport(BaseModel):
    """What happened to permitted messages, so a waiting withdrawal need not wait out their leases."""

    model_config = ConfigDict(extra="forbid")
    settlements: dict[str, Settlement] = Field(description="decision id -> what the relay did.")


class GateUnavailable(Exception):
    """The consent service did not answer: nothing identifying leaves until it does."""


def decide_subject(org: str) -> str:
    """The request-reply subject of an organisation's consent decisions (inside its own account)."""
    # Not under "<org>.>": that is the EVENTS stream's space, whose acknowledgement would answer first.
    return f"svc.{org}.consent.decide"


def settle_subject(org: str) -> str:
    """Where the relay reports what it did with permitted messages."""
    return f"svc.{org}.consent.settle"


async def ask(connection: Client, org: str, phase: Phase, asks: list[DisclosureAsk], *,
              timeout: float = DEFAULT_TIMEOUT_SECONDS) -> list[DisclosureVerdict]:
    """Ask this organisation's consent service about ``asks``; raise GateUnavailable when it does not answer."""
    payload = orjson.dumps(AskBatch(phase=phase, asks=asks).model_dump(mode="json"))
    asked_at = datetime.now(UTC)
    try:
        reply = await connection.request(decide_subject(org), payload, timeout=timeout)
        verdicts = VerdictBatch.model_validate_json(reply.data).verdicts
    except Exception as exc:  # no responder, timeout, broker down, or a garbled answer: fail closed
        raise GateUnavailable(type(exc).__name__) from None
    if [verdict.event_id for verdict in verdicts] != [item.event_id for item in asks]:
        raise GateUnavailable("answers do not match the questions")
    # Counted from before the question, so the asker's limit falls before the consent service's.
    return [verdict.model_copy(update={"usable_until": asked_at + timedelta(seconds=verdict.lease_seconds
                                                                            * LEASE_SHARE)})
            if verdict.allowed and verdict.lease_seconds > 0 else verdict for verdict in verdicts]


async def settle(connection: Client, org: str, settlements: dict[str, Settlement]) -> None:
    """Tell the consent service what happened to permitted messages (best effort: leases expire anyway)."""
    if not settlements:
        return
    try:
        await connection.publish(settle_subject(org), orjson.dumps({"settlements": settlements}))
    except Exception:  # a lost report only makes a withdrawal wait out the lease
        return
