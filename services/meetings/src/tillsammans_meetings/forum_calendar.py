"""A forum as an iCalendar file (RFC 5545/5546): one recurring event, no personal data.

The summary is the forum's kind ("Elevhälsoteam"), never its name or agenda: a calendar is synced to
phones and mail servers outside the organisation's control. The organiser is the organisation.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from icalendar import Calendar, Event, vCalAddress, vRecur, vText

from tillsammans_meetings.models import ForumKind, ForumPublic
from tillsammans_meetings.recurrence import FORUM_TIMEZONE

SUMMARIES = {
    ForumKind.ELEVHALSOTEAM: "Elevhälsoteam",
    ForumKind.BARNHALSOGRUPP: "Barnhälsogrupp",
    ForumKind.OTHER: "Samverkansforum",
}


def forum_uid(forum: ForumPublic) -> str:
    """The event's UID: the same for every download, so a calendar updates the series instead of adding one."""
    return f"forum-{forum.id}@{forum.owner_org}.tillsammans"


def forum_calendar(forum: ForumPublic, *, organiser_name: str, now: datetime) -> bytes:
    """The forum's series as a METHOD:REQUEST calendar with its RRULE, in Europe/Stockholm time."""
    calendar = Calendar()
    calendar.add("prodid", "-//Tillsammans//forum//SV")
    calendar.add("version", "2.0")
    calendar.add("method", "REQUEST")
    event = Event()
    event.add("uid", forum_uid(forum))
    event.add("dtstamp", now)
    # RFC 5546: a higher SEQUENCE tells the calendar this request replaces the one it holds.
    event.add("sequence", forum.revision - 1)
    event.add("summary", SUMMARIES[forum.kind])
    event.add("location", forum.location)
    event.add("dtstart", forum.starts_at.astimezone(FORUM_TIMEZONE))
    event.add("duration", timedelta(minutes=forum.duration_minutes))
    event.add("rrule", vRecur.from_ical(forum.rrule))
    organiser = vCalAddress(f"urn:tillsammans:org:{forum.owner_org}")
    organiser.params["cn"] = vText(organiser_name)
    event.add("organizer", organiser)
    for org in forum.member_orgs:
        # Organisations are invited, not people: who attends is each organisation's own business.
        attendee = vCalAddress(f"urn:tillsammans:org:{org}")
        attendee.params["cutype"] = vText("GROUP")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        event.add("attendee", attendee, encode=False)
    calendar.add_component(event)
    calendar.add_missing_timezones()
    ical: bytes = calendar.to_ical()
    return ical
