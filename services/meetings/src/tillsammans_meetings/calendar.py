"""iCalendar (RFC 5545, with RFC 5546's METHOD) for meetings, follow-ups and forums: one builder for all.

What goes in is chosen so that a calendar file can sit in any mail client or calendar server: a
neutral summary by kind, the room, the organising organisation, the invited organisations and the
times. Never the child's name or number, the concern, a forum's name or agenda, or a person's name:
the inputs here have no field for them. Organisations, not people, are organiser and attendees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress, vRecur

from tillsammans_common.timestamps import as_utc
from tillsammans_meetings.models import ForumPublic
from tillsammans_meetings.recurrence import FORUM_TIMEZONE

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
    "forum:elevhalsoteam": "Elevhälsoteam",
    "forum:barnhalsogrupp": "Barnhälsogrupp",
    "forum:other": "Samverkansforum",
}
"""The only summaries a calendar entry has: by kind, never about the child (a forum's by its kind, not its name)."""


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


def uid_of(record_id: str, *, part: str = "meeting", org: str | None = None) -> str:
    """A stable UID from a server-made id: the same at the inviter and at every invited organisation.

    With ``org`` the owning organisation is in the domain (``forum-<id>@school.tillsammans``).
    """
    domain = f"{org}.{UID_DOMAIN}" if org else UID_DOMAIN
    return f"{part}-{record_id}@{domain}"


def summary_of(kind: str) -> str:
    """The neutral summary of an entry's kind ("Samverkansmöte", "SIP-möte", "Uppföljning")."""
    return SUMMARIES.get(kind, "Möte")


def _org_address(org: str) -> vCalAddress:
    # A calendar address must be a URI; an organisation has no mailbox of its own here, so it is named by a URN.
    return vCalAddress(f"urn:{UID_DOMAIN}:org:{org}")


def build(entry: CalendarEntry, *, stamp: datetime, attendee_orgs: Sequence[str] = (),
          zone: ZoneInfo | None = None) -> bytes:
    """The entry as an iCalendar object: METHOD:REQUEST, or METHOD:CANCEL with STATUS:CANCELLED.

    ``attendee_orgs`` are the invited organisations (ATTENDEE, CUTYPE=GROUP); ``zone`` writes DTSTART
    as wall-clock time there, with its VTIMEZONE, so that a series keeps its hour across summer time
    (otherwise DTSTART is UTC). A series (an RRULE) states its length as DURATION, a single entry DTEND.
    """
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if entry.cancelled else "REQUEST")
    event = Event()
    event.add("uid", entry.uid)
    event.add("dtstamp", as_utc(stamp))
    start = as_utc(entry.start)
    event.add("dtstart", start.astimezone(zone) if zone else start)
    if entry.rrule:
        event.add("duration", entry.length)
    else:
        event.add("dtend", start + entry.length)
    # RFC 5546: a higher SEQUENCE tells the calendar this request replaces the one it holds.
    event.add("sequence", entry.sequence)
    event.add("summary", summary_of(entry.kind))
    if entry.location:
        event.add("location", entry.location)
    organizer = _org_address(entry.organizer_org)
    organizer.params["cn"] = entry.organizer_name
    event.add("organizer", organizer)
    for org in attendee_orgs:
        # Organisations are invited, not people: who attends is each organisation's own business.
        attendee = _org_address(org)
        attendee.params["cutype"] = "GROUP"
        attendee.params["role"] = "REQ-PARTICIPANT"
        event.add("attendee", attendee, encode=False)
    event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
    if entry.rrule:
        event.add("rrule", vRecur.from_ical(entry.rrule))
    calendar.add_component(event)
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())


# --- forums: the thin mapping from a forum to the one builder --------------------------------------


def forum_uid(forum: ForumPublic) -> str:
    """The forum series' UID: the same for every download, so a calendar updates the series instead of adding one."""
    return uid_of(forum.id, part="forum", org=forum.owner_org)


def forum_calendar(forum: ForumPublic, *, organiser_name: str, now: datetime) -> bytes:
    """The forum's series as a METHOD:REQUEST calendar with its RRULE, in Europe/Stockholm time.

    The summary is the forum's kind ("Elevhälsoteam"), never its name or agenda; the members are
    invited as organisations; SEQUENCE follows the forum's revision.
    """
    return build(CalendarEntry(
        uid=forum_uid(forum), kind=f"forum:{forum.kind.value}", start=forum.starts_at,
        organizer_org=forum.owner_org, organizer_name=organiser_name, sequence=forum.revision - 1,
        length=timedelta(minutes=forum.duration_minutes), location=forum.location, rrule=forum.rrule,
    ), stamp=now, attendee_orgs=forum.member_orgs, zone=FORUM_TIMEZONE)
