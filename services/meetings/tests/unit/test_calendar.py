"""The calendar builder: what a real iCalendar parser reads back, and that nothing about a child is in it."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from icalendar import Calendar

from tillsammans_meetings.calendar import DEFAULT_LENGTH, MEDIA_TYPE, CalendarEntry, build, uid_of

START = datetime(2030, 2, 4, 8, 30, tzinfo=UTC)
STAMP = datetime(2030, 1, 20, 12, 0, tzinfo=UTC)
MEETING_ID = "0b7c6a52-6f0e-4c39-9d0a-3c1c2a7f5e11"


def entry(**changes: object) -> CalendarEntry:
    fields: dict[str, object] = {"uid": uid_of(MEETING_ID), "kind": "samverkansmote", "start": START,
                                 "organizer_org": "school", "organizer_name": "Norrskolan", "sequence": 0,
                                 "location": "Rum 12, Norrskolan"}
    fields.update(changes)
    return CalendarEntry(**fields)  # type: ignore[arg-type]


def parsed(body: bytes) -> tuple[Calendar, dict[str, object]]:
    calendar = Calendar.from_ical(body)
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return calendar, events[0]


def test_a_request_names_the_time_room_organiser_and_sequence() -> None:
    calendar, event = parsed(build(entry(sequence=2), stamp=STAMP))
    assert str(calendar["method"]) == "REQUEST" and str(calendar["version"]) == "2.0"
    assert str(event["uid"]) == f"meeting-{MEETING_ID}@tillsammans"
    assert event.decoded("dtstart") == START  # type: ignore[attr-defined]
    assert event.decoded("dtend") == START + DEFAULT_LENGTH  # type: ignore[attr-defined]
    assert event.decoded("dtstamp") == STAMP  # type: ignore[attr-defined]
    assert int(event["sequence"]) == 2  # type: ignore[call-overload]
    assert str(event["summary"]) == "Samverkansmöte"
    assert str(event["location"]) == "Rum 12, Norrskolan"
    assert str(event["status"]) == "CONFIRMED"
    organizer = event["organizer"]
    assert str(organizer) == "urn:tillsammans:org:school" and organizer.params["cn"] == "Norrskolan"  # type: ignore[attr-defined]
    assert MEDIA_TYPE == "text/calendar"


def test_a_cancel_is_method_cancel_with_status_cancelled_and_the_same_uid() -> None:
    calendar, event = parsed(build(entry(sequence=3, cancelled=True), stamp=STAMP))
    assert str(calendar["method"]) == "CANCEL"
    assert str(event["status"]) == "CANCELLED"
    assert str(event["uid"]) == uid_of(MEETING_ID) and int(event["sequence"]) == 3  # type: ignore[call-overload]


@pytest.mark.parametrize(("kind", "summary"), [
    ("samverkansmote", "Samverkansmöte"),
    ("sip", "SIP-möte"),
    ("follow_up", "Uppföljning"),
    ("forum", "Forum"),
    ("something new", "Möte"),
])
def test_the_summary_is_neutral_by_kind(kind: str, summary: str) -> None:
    _, event = parsed(build(entry(kind=kind), stamp=STAMP))
    assert str(event["summary"]) == summary


def test_a_recurrence_rule_is_read_back_and_expands() -> None:
    _, event = parsed(build(entry(kind="forum", rrule="FREQ=MONTHLY;BYDAY=1TU;COUNT=3"), stamp=STAMP))
    rule = event["rrule"].to_ical().decode()  # type: ignore[attr-defined]
    assert "FREQ=MONTHLY" in rule and "BYDAY=1TU" in rule and "COUNT=3" in rule
    occurrences = list(rrulestr(rule, dtstart=START))
    assert [o.date().isoformat() for o in occurrences] == ["2030-02-05", "2030-03-05", "2030-04-02"]


def test_without_a_room_there_is_no_location_and_the_length_can_be_set() -> None:
    _, event = parsed(build(entry(location=None, length=timedelta(minutes=90)), stamp=STAMP))
    assert "location" not in event
    assert event.decoded("dtend") == START + timedelta(minutes=90)  # type: ignore[attr-defined]


def test_the_builder_has_no_field_for_a_person_or_the_concern() -> None:
    # The guarantee is structural: an entry cannot carry a child's name, number or concern.
    fields = set(CalendarEntry.__dataclass_fields__)
    assert fields == {"uid", "kind", "start", "organizer_org", "organizer_name", "sequence", "length", "location",
                      "cancelled", "rrule"}
    body = build(entry(), stamp=STAMP)
    for property_name in (b"DESCRIPTION", b"ATTENDEE", b"COMMENT", b"CONTACT"):
        assert property_name not in body


def test_a_series_in_a_zone_invites_organisations_with_its_duration_and_timezone() -> None:
    body = build(entry(kind="forum:elevhalsoteam", rrule="FREQ=MONTHLY;BYDAY=1TU", length=timedelta(minutes=90)),
                 stamp=STAMP, attendee_orgs=["region", "social"], zone=ZoneInfo("Europe/Stockholm"))
    calendar, event = parsed(body)
    assert str(event["summary"]) == "Elevhälsoteam"
    assert event.decoded("dtstart") == START  # type: ignore[attr-defined]
    assert str(event["dtstart"].params["TZID"]) == "Europe/Stockholm"  # type: ignore[attr-defined]
    assert event.decoded("duration") == timedelta(minutes=90) and "dtend" not in event  # type: ignore[attr-defined]
    assert calendar.walk("VTIMEZONE")
    attendees = event["attendee"]
    assert [str(a) for a in attendees] == ["urn:tillsammans:org:region", "urn:tillsammans:org:social"]  # type: ignore[attr-defined]
    assert all(a.params["cutype"] == "GROUP" for a in attendees)  # type: ignore[attr-defined]


def test_the_builder_takes_nothing_beside_the_entry_but_the_stamp_organisations_and_a_zone() -> None:
    assert list(inspect.signature(build).parameters) == ["entry", "stamp", "attendee_orgs", "zone"]
