"""iCalendar (RFC 5545, with RFC 5546's METHOD) for meetings, follow-ups and forum occurrences.

One builder for every kind of entry. What goes in is chosen so that a calendar file can sit in any
mail client or calendar server: a neutral summary by kind, the room, the organising organisation
and the times. Never the child's name or number, the concern, or a person's name: the inputs here
have no field for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from icalendar import Calendar, Event, vCalAddress, vRecur

from tillsammans_common.timestamps import as_utc

MEDIA_TYPE = "text/calendar"
PRODID = "-//Tillsammans//Möten//SV"
UID_DOMAIN = "tillsammans"
DEFAULT_LENGTH = timedelta(hours=1)
"""How long an entry lasts when nothing says otherwise (a samverkansmöte is booked for an hour)."""

SUMMARIES = {
    "samverkansmote": "Samverkansmöte",
    "sip": "SIP-möte",
    "follow_up": "Uppföljning",
    "forum": "Forum",
}
"""The only summaries a calendar entry has: by kind, never about the child."""


@dataclass(frozen=True)
class CalendarEntry:
    """One meeting (or series) as the calendar shows it; every field is fit to leave the organisation."""

    uid: str
    kind: str
    start: datetime
    organizer_org: str
    organizer_name: str
    sequence: int = 0
    length: timedelta = DEFAULT_LENGTH
    location: str | None = None
    cancelled: bool = False
    rrule: str | None = None
    """An RFC 5545 recurrence rule (``FREQ=MONTHLY;BYDAY=1TU``), for forums that meet on a rhythm."""


def uid_of(record_id: str, *, part: str = "meeting") -> str:
    """A stable UID from a server-made id: the same at the inviter and at every invited organisation."""
    return f"{part}-{record_id}@{UID_DOMAIN}"


def summary_of(kind: str) -> str:
    """The neutral summary of an entry's kind ("Samverkansmöte", "SIP-möte", "Uppföljning")."""
    return SUMMARIES.get(kind, "Möte")


def build(entry: CalendarEntry, *, stamp: datetime) -> bytes:
    """The entry as an iCalendar object: METHOD:REQUEST, or METHOD:CANCEL with STATUS:CANCELLED."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if entry.cancelled else "REQUEST")
    event = Event()
    event.add("uid", entry.uid)
    event.add("dtstamp", as_utc(stamp))
    start = as_utc(entry.start)
    event.add("dtstart", start)
    event.add("dtend", start + entry.length)
    event.add("sequence", entry.sequence)
    event.add("summary", summary_of(entry.kind))
    if entry.location:
        event.add("location", entry.location)
    # A calendar address must be a URI; an organisation has no mailbox of its own here, so it is named by a URN.
    organizer = vCalAddress(f"urn:{UID_DOMAIN}:org:{entry.organizer_org}")
    organizer.params["cn"] = entry.organizer_name
    event.add("organizer", organizer)
    event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
    if entry.rrule:
        event.add("rrule", vRecur.from_ical(entry.rrule))
    calendar.add_component(event)
    return bytes(calendar.to_ical())
