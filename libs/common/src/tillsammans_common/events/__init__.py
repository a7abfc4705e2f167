"""Event contracts: the CloudEvents envelope and one module of typed events per producing service.

Producers and consumers import the same frozen models from here, so a contract changes in one
place. A breaking change gets a new model with the next ``.vN`` type; the old one stays readable.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tillsammans_common.db import utcnow

EVENT_TYPES: dict[str, type[Event]] = {}


class Event(BaseModel):
    """Base of every event payload (CloudEvents ``data``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: ClassVar[str]
    identifying: ClassVar[bool] = False
    """True when the payload identifies a child: it may cross an organisation only under consent.
    Such an event has a ``child_key`` field and names the ``consent_categories`` and the purpose it needs
    (``consent_purpose``, or per message ``disclosure_purpose()``)."""
    consent_categories: ClassVar[tuple[str, ...]] = ()
    consent_purpose: ClassVar[str] = ""
    """The consent purpose every message of the type needs; a type whose purpose follows its content (an
    invitation: the meeting's kind) leaves it empty and overrides ``disclosure_purpose`` instead."""
    sender_fields: ClassVar[tuple[str, ...]] = ()
    """Fields naming the organisation that authored the event (e.g. ``disclosing_org``). A receiver
    refuses the event from another organisation unless each names the sender its inbox subject proves."""
    receiver_fields: ClassVar[tuple[str, ...]] = ()
    """Fields naming the organisation(s) the event is meant for (an id or a list of ids). A receiver
    refuses the event from another organisation unless each names (or lists) the receiver itself."""
    statutory_basis: ClassVar[str] = ""
    """The provision of law that obliges the sender to disclose an identifying event without consent (e.g.
    "SoL 14 kap. 1 §" for an orosanmälan). Such an event leaves only through ``egress.file_statutory_report``,
    to the receivers the law names, and never through a consent (docs/decisions/0023)."""

    def disclosure_purpose(self) -> str:
        """The consent purpose this very message needs: what the sender's consent service is asked for, what
        its decision records and what the receiver checks again (decision 24)."""
        return self.consent_purpose

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("type")
        if isinstance(event_type, str):
            if event_type in EVENT_TYPES:
                raise TypeError(f"event type {event_type} is defined twice")
            EVENT_TYPES[event_type] = cls


class Envelope(BaseModel):
    """A CloudEvents 1.0 structured-mode event; ``subject`` is an opaque case id, never an identity."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    consentid: str | None = Field(None, description="Extension: the consent a disclosure rests on.")
    data: dict[str, Any]

    @classmethod
    def wrap(cls, event: Event, *, source: str, subject: str, consent_id: str | None = None,
             event_id: str | None = None) -> Envelope:
        """Wrap a typed event for sending (with a given id when it was decided on before it was wrapped)."""
        return cls(id=event_id or str(uuid.uuid4()), source=source, type=event.type, subject=subject,
                   consentid=consent_id, data=event.model_dump(mode="json"))

    @property
    def source_org(self) -> str:
        """The organisation in ``/orgs/<org>/<service>``."""
        parts = self.source.split("/")
        return parts[2] if len(parts) > 2 and parts[1] == "orgs" else ""

    def event(self) -> Event:
        """The typed payload; raises KeyError for an unknown type, ValidationError for bad data."""
        return EVENT_TYPES[self.type].model_validate(self.data)

    def to_bytes(self) -> bytes:
        """Serialise for the wire."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse from the wire."""
        return cls.model_validate_json(raw)


def internal_subject(org: str, event_type: str) -> str:
    """NATS subject of an event inside its organisation: ``<org>.<type>``."""
    return f"{org}.{event_type}"


def inbox_subject(to_org: str, from_org: str, event_type: str) -> str:
    """NATS subject of a message to another organisation: ``inbox.<to>.<from>.<type>``.

    The broker lets an account publish only ``inbox.*.<itself>.>``, so the subject proves the sender.
    """
    return f"inbox.{to_org}.{from_org}.{event_type}"


EVENTS_STREAM = "EVENTS"
INBOX_STREAM = "INBOX"
