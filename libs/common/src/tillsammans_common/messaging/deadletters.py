"""Dead letters and parked messages in JetStream streams of their own (decision 14).

A dead letter is written to the organisation's ``DEADLETTER`` stream (``deadletter.<org>.<service>.<durable>``)
before the message it stands for is acknowledged, so it never depends on the database whose failure
may have caused it; an operator lists, inspects, replays and discards it there. A message that waits
for something still on its way (an invitation whose consent has not arrived) is parked in the
``PARKED`` stream (``parked.<org>.<service>.<durable>``), retried whenever a consent arrives, and
dead-lettered after ``parking_timeout_seconds``.

The metadata travels in headers; the body is the message as received only when it may be kept
(``data_kept``), else its CloudEvents attributes without ``data``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RawStreamMsg, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

DEADLETTER_STREAM = "DEADLETTER"
PARKED_STREAM = "PARKED"
DUPLICATE_WINDOW_SECONDS = 120.0
_H = "Tillsammans-"
# The most letters one listing returns: an operator pages by asking for those after the last id.
LIST_LIMIT = 500
MAX_SEQUENCE = 2**63 - 1
"""The highest letter id asked for: a stream sequence is 64 bits, and the broker refuses what does not fit."""


def dead_letter_stream_configs(org: str, *, dead_letter_max_age_seconds: float, dead_letter_max_bytes: int,
                               parked_max_age_seconds: float) -> tuple[StreamConfig, StreamConfig]:
    """The organisation's DEADLETTER stream (by age and size) and PARKED stream (no longer than the INBOX keeps)."""
    return (
        StreamConfig(name=DEADLETTER_STREAM, subjects=[f"deadletter.{org}.>"], storage=StorageType.FILE,
                     retention=RetentionPolicy.LIMITS, max_age=dead_letter_max_age_seconds,
                     max_bytes=dead_letter_max_bytes, discard=DiscardPolicy.OLD,
                     duplicate_window=min(DUPLICATE_WINDOW_SECONDS, dead_letter_max_age_seconds)),
        # A parked message holds what the INBOX held: never kept longer than the INBOX would have.
        StreamConfig(name=PARKED_STREAM, subjects=[f"parked.{org}.>"], storage=StorageType.FILE,
                     retention=RetentionPolicy.LIMITS, max_age=parked_max_age_seconds,
                     duplicate_window=min(DUPLICATE_WINDOW_SECONDS, parked_max_age_seconds)),
    )


def letter_subject(stream: str, org: str, service: str, durable: str = "*") -> str:
    """The subject of a service's consumer's letters in ``stream`` (``*``: all of the service's)."""
    space = "deadletter" if stream == DEADLETTER_STREAM else "parked"
    return f"{space}.{org}.{service}.{durable}"


@dataclass(frozen=True)
class Letter:
    """A dead or parked message: where it came from, why it is here, and (maybe) the message itself."""

    consumer: str
    durable: str
    subject: str
    """The subject the message arrived on (``<org>.<type>`` or ``inbox.<to>.<from>.<type>``): no data."""
    event_id: str | None
    event_type: str | None
    case_id: str | None
    reason: str
    reason_code: str
    deliveries: int
    data_kept: bool
    body: bytes
    at: datetime
    source_sequence: int
    sequence: int = 0
    """Its sequence in its stream, the id operators use (0 before it is written)."""

    def headers(self) -> dict[str, str]:
        """The letter's metadata as NATS headers."""
        headers = {_H + "Consumer": self.consumer, _H + "Durable": self.durable, _H + "Subject": self.subject,
                   _H + "Reason": self.reason, _H + "Reason-Code": self.reason_code,
                   _H + "Deliveries": str(self.deliveries), _H + "Data-Kept": "true" if self.data_kept else "false",
                   _H + "At": self.at.isoformat(), _H + "Source-Sequence": str(self.source_sequence)}
        for name, value in ((_H + "Event-Id", self.event_id), (_H + "Event-Type", self.event_type),
                            (_H + "Case-Id", self.case_id)):
            if value:
                headers[name] = value
        return headers

    @classmethod
    def from_stream(cls, message: RawStreamMsg) -> Letter:
        """Read a letter back from its stream."""
        headers = message.headers or {}
        return cls(consumer=headers.get(_H + "Consumer", ""), durable=headers.get(_H + "Durable", ""),
                   subject=headers.get(_H + "Subject", ""), event_id=headers.get(_H + "Event-Id"),
                   event_type=headers.get(_H + "Event-Type"), case_id=headers.get(_H + "Case-Id"),
                   reason=headers.get(_H + "Reason", ""), reason_code=headers.get(_H + "Reason-Code", ""),
                   deliveries=int(headers.get(_H + "Deliveries", "0")),
                   data_kept=headers.get(_H + "Data-Kept") == "true", body=bytes(message.data or b""),
                   at=datetime.fromisoformat(headers.get(_H + "At", "1970-01-01T00:00:00+00:00")),
                   source_sequence=int(headers.get(_H + "Source-Sequence", "0")), sequence=message.seq or 0)


def attributes_of(body: bytes) -> dict[str, str]:
    """The CloudEvents ``id``, ``subject`` (an opaque case id) and ``consentid`` of a message, when it has them."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {name: parsed[name] for name in ("id", "subject", "consentid")
            if isinstance(parsed.get(name), str) and len(parsed[name]) <= 64}


async def write(js: JetStreamContext, stream: str, org: str, service: str, letter: Letter) -> int:
    """Store a letter and wait for the broker's acknowledgement; its sequence in the stream."""
    headers = letter.headers()
    # The same message's letter written twice (its acknowledgement was lost and it came again) is one.
    headers["Nats-Msg-Id"] = f"{stream}:{letter.consumer}:{letter.source_sequence}:{letter.event_id or ''}"
    ack = await js.publish(letter_subject(stream, org, service, letter.durable), letter.body, stream=stream,
                           headers=headers)
    return int(ack.seq)


async def read_all(js: JetStreamContext, stream: str, org: str, service: str, *, after: int = 0,
                   limit: int = LIST_LIMIT) -> list[Letter]:
    """The service's letters in ``stream`` with a sequence above ``after``, oldest first."""
    letters: list[Letter] = []
    sequence = after + 1
    subject = letter_subject(stream, org, service)
    while len(letters) < limit:
        try:
            # The next message at or after ``sequence`` on the service's subjects: one round trip each.
            message = await js.get_msg(stream, seq=sequence, subject=subject, next=True)
        except NotFoundError:
            break
        letters.append(Letter.from_stream(message))
        sequence = (message.seq or sequence) + 1
    return letters


async def read(js: JetStreamContext, stream: str, org: str, service: str, sequence: int) -> Letter | None:
    """One of the service's letters, or None when there is none with that id."""
    try:
        message = await js.get_msg(stream, seq=sequence)
    except NotFoundError:
        return None
    prefix = letter_subject(stream, org, service, "")
    return Letter.from_stream(message) if (message.subject or "").startswith(prefix) else None


async def remove(js: JetStreamContext, stream: str, sequence: int) -> bool:
    """Delete a letter from its stream; False when it was gone already."""
    try:
        return bool(await js.delete_msg(stream, sequence))
    except NotFoundError:
        return False


def now() -> datetime:
    """The time a letter is written, in UTC."""
    return datetime.now(UTC)
