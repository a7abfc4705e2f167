"""Operator tools every service mounts: list, inspect, replay and discard its dead letters (decision 14).

Role ``admin`` only. What is shown is the letter's metadata (consumer, subject, event id and type,
reason, deliveries, times), never the message's ``data``. Every call is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from pydantic import BaseModel
from sqlalchemy import Engine, delete
from sqlmodel import Session, col

from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal, Role, require
from tillsammans_common.errors import Conflict, NotFound
from tillsammans_common.messaging import deadletters
from tillsammans_common.messaging.deadletters import DEADLETTER_STREAM, PARKED_STREAM, Letter
from tillsammans_common.models import DeadLetter
from tillsammans_common.settings import ServiceSettings
from tillsammans_common.web import run_query


@dataclass(frozen=True)
class AdminContext:
    """What the operator routes work on: this service's settings, database and broker."""

    settings: ServiceSettings
    engine: Engine
    broker: NatsBroker

    @property
    def js(self) -> JetStreamContext:
        """The broker's JetStream context."""
        js: JetStreamContext = self.broker.config.connection_state.stream
        return js


def admin_context(request: Request) -> AdminContext:
    """The service's ``AdminContext``, set by ``build_app``."""
    context: AdminContext = request.app.state.admin
    return context


Context = Annotated[AdminContext, Depends(admin_context)]
Admin = Annotated[Principal, require(Role.ADMIN)]
# Bounded so a negative or oversized id is a 422 here, not an error of the broker (a 503).
LetterId = Annotated[int, Path(ge=1, le=deadletters.MAX_SEQUENCE, description="The letter's sequence in its stream.")]


class DeadLetterPublic(BaseModel):
    """A dead (or parked) message as an operator sees it: metadata and reason, never the message's data."""

    id: int
    state: str
    consumer: str
    subject: str
    event_id: str | None
    event_type: str | None
    case_id: str | None
    reason: str
    reason_code: str
    deliveries: int
    at: datetime
    data_kept: bool
    replayable: bool


class DeadLetterList(BaseModel):
    """A page of letters, oldest first; ask again with ``after`` = the last id for the next."""

    items: list[DeadLetterPublic]


class Replayed(BaseModel):
    """A dead letter sent again: its message is on ``subject`` once more and the letter is gone."""

    id: int
    subject: str
    event_id: str | None


def public(letter: Letter, *, org: str, state: str = "dead") -> DeadLetterPublic:
    """The operator's view of a letter."""
    return DeadLetterPublic(id=letter.sequence, state=state, consumer=letter.consumer, subject=letter.subject,
                            event_id=letter.event_id, event_type=letter.event_type, case_id=letter.case_id,
                            reason=letter.reason, reason_code=letter.reason_code, deliveries=letter.deliveries,
                            at=letter.at, data_kept=letter.data_kept,
                            replayable=state == "dead" and replay_refusal(letter, org=org) is None)


def replay_refusal(letter: Letter, *, org: str) -> str | None:
    """Why a letter cannot be replayed from here, or None when it can."""
    if not letter.data_kept:
        return ("the message's data was not kept (it came from another organisation or identifies a child): "
                "the sender must send it again")
    if not letter.subject.startswith(f"{org}."):
        return "only this organisation's own events can be published again from here"
    return None


router = APIRouter(prefix="/admin", tags=["operations"])


async def _audited(context: AdminContext, principal: Principal, action: str, *, case_id: str | None = None,
                   outcome: str = "ok") -> None:
    # Written (and committed) before the action: no operator action goes unrecorded.
    await run_query(context.engine, lambda session: audit(session, principal, action, case_id=case_id,
                                                           outcome=outcome))


async def _letter(context: AdminContext, letter_id: int) -> Letter | None:
    settings = context.settings
    return await deadletters.read(context.js, DEADLETTER_STREAM, settings.org, settings.service_name, letter_id)


@router.get("/dead-letters", summary="This service's dead letters, oldest first (without data)")
async def list_dead_letters(context: Context, principal: Admin,
                            after: Annotated[int, Query(ge=0, le=deadletters.MAX_SEQUENCE - 1,
                                                        description="only ids above this")] = 0,
                            limit: Annotated[int, Query(ge=1, le=deadletters.LIST_LIMIT)] = 100) -> DeadLetterList:
    """List the dead letters of this service."""
    await _audited(context, principal, "dead_letters.list")
    settings = context.settings
    letters = await deadletters.read_all(context.js, DEADLETTER_STREAM, settings.org, settings.service_name,
                                         after=after, limit=limit)
    return DeadLetterList(items=[public(letter, org=settings.org) for letter in letters])


@router.get("/parked", summary="This service's parked messages, waiting for their consent (without data)")
async def list_parked(context: Context, principal: Admin) -> DeadLetterList:
    """List the messages this service has parked."""
    await _audited(context, principal, "parked.list")
    settings = context.settings
    letters = await deadletters.read_all(context.js, PARKED_STREAM, settings.org, settings.service_name)
    return DeadLetterList(items=[public(letter, org=settings.org, state="parked") for letter in letters])


@router.get("/dead-letters/{letter_id}", summary="One dead letter (without data)")
async def get_dead_letter(letter_id: LetterId, context: Context, principal: Admin) -> DeadLetterPublic:
    """Inspect one dead letter."""
    letter = await _letter(context, letter_id)
    await _audited(context, principal, "dead_letter.show", case_id=letter.case_id if letter else None,
                   outcome="ok" if letter else "not_found")
    if letter is None:
        raise NotFound(f"no dead letter {letter_id} of this service")
    return public(letter, org=context.settings.org)


@router.post("/dead-letters/{letter_id}/replay", summary="Publish the message again and remove its dead letter",
             responses={409: {"description": "The message's data was not kept: the sender must send it again"}})
async def replay_dead_letter(letter_id: LetterId, context: Context, principal: Admin) -> Replayed:
    """Publish a dead letter's message to its subject again, then remove the letter."""
    letter = await _letter(context, letter_id)
    refusal = replay_refusal(letter, org=context.settings.org) if letter else None
    await _audited(context, principal, "dead_letter.replay", case_id=letter.case_id if letter else None,
                   outcome="not_found" if letter is None else "refused" if refusal else "ok")
    if letter is None:
        raise NotFound(f"no dead letter {letter_id} of this service")
    if refusal is not None:
        raise Conflict(refusal)
    # A message id of its own: the original's id may still be inside the stream's duplicate window.
    await context.js.publish(letter.subject, letter.body,
                             headers={"Nats-Msg-Id": f"replay:{letter.sequence}:{letter.event_id or ''}"})
    await _forget(context, letter)
    return Replayed(id=letter.sequence, subject=letter.subject, event_id=letter.event_id)


@router.delete("/dead-letters/{letter_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Discard a dead letter for good")
async def discard_dead_letter(letter_id: LetterId, context: Context, principal: Admin) -> Response:
    """Remove a dead letter without sending its message again."""
    letter = await _letter(context, letter_id)
    await _audited(context, principal, "dead_letter.discard", case_id=letter.case_id if letter else None,
                   outcome="ok" if letter else "not_found")
    if letter is None:
        raise NotFound(f"no dead letter {letter_id} of this service")
    await _forget(context, letter)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _forget(context: AdminContext, letter: Letter) -> None:
    await deadletters.remove(context.js, DEADLETTER_STREAM, letter.sequence)
    if letter.event_id is None:
        return

    def drop_copy(session: Session) -> None:
        # The local copy follows the stream (decision 14).
        session.connection().execute(delete(DeadLetter).where(col(DeadLetter.consumer) == letter.consumer,
                                                              col(DeadLetter.event_id) == letter.event_id))

    await run_query(context.engine, drop_copy)
