"""A forum's RRULE: which rules are accepted, when the forum meets, and its calendar file."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from icalendar import Calendar

from tillsammans_common.errors import InvalidField
from tillsammans_meetings import recurrence
from tillsammans_meetings.calendar import forum_calendar, forum_uid
from tillsammans_meetings.models import ForumKind, ForumPublic

# Tuesday 5 January 2027, 09:00 in Stockholm (winter time, UTC+1).
START = datetime(2027, 1, 5, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(("rule", "first_dates"), [
    ("FREQ=MONTHLY;BYDAY=1TU", [date(2027, 1, 5), date(2027, 2, 2), date(2027, 3, 2)]),  # elevhälsoteam
    ("FREQ=MONTHLY;INTERVAL=2;BYDAY=1TU", [date(2027, 1, 5), date(2027, 3, 2), date(2027, 5, 4)]),  # barnhälsogrupp
    ("RRULE:FREQ=WEEKLY", [date(2027, 1, 5), date(2027, 1, 12), date(2027, 1, 19)]),
    ("FREQ=MONTHLY;COUNT=2", [date(2027, 1, 5), date(2027, 2, 5)]),
    ("FREQ=YEARLY", [date(2027, 1, 5), date(2028, 1, 5)]),
])
def test_accepted_rules_and_their_first_meetings(rule: str, first_dates: list[date]) -> None:
    parsed = recurrence.parse(rule, starts_at=START)
    found = recurrence.occurrences(parsed, duration=HOUR, start=START, end=START + timedelta(days=366))
    assert [item.date for item in found[:3]] == first_dates


@pytest.mark.parametrize(("rule", "why"), [
    ("FREQ=DAILY", "at most once a week"),
    ("FREQ=HOURLY;INTERVAL=200", "at most once a week"),
    ("FREQ=SECONDLY", "at most once a week"),
    ("FREQ=WEEKLY;BYDAY=MO,TU", "7 days apart"),
    ("FREQ=MONTHLY;BYMONTHDAY=1,2", "7 days apart"),
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "no occurrence"),
    ("FREQ=MONTHLY;UNTIL=20260101T000000Z", "no occurrence"),
    ("FREQ=FORTNIGHTLY", "not a valid"),
    ("not a rule", "not a valid"),
    ("", "one RFC 5545 RRULE"),
    ("FREQ=MONTHLY\nRDATE:20270301T090000", "one RFC 5545 RRULE"),
    ("DTSTART:20270105T090000\nRRULE:FREQ=MONTHLY", "one RFC 5545 RRULE"),
    ("FREQ=MONTHLY;" + "BYMONTHDAY=1;" * 40, "one RFC 5545 RRULE"),
])
def test_refused_rules_name_the_rrule_field(rule: str, why: str) -> None:
    with pytest.raises(InvalidField) as refused:
        recurrence.parse(rule, starts_at=START)
    assert str(refused.value).startswith("rrule: ")
    assert why in str(refused.value)


def test_the_wall_clock_time_holds_across_daylight_saving_time() -> None:
    rule = recurrence.parse("FREQ=MONTHLY;BYDAY=1TU", starts_at=START)
    found = recurrence.occurrences(rule, duration=HOUR, start=START, end=START + timedelta(days=200))
    by_date = {item.date: item for item in found}
    assert by_date[date(2027, 3, 2)].starts_at == datetime(2027, 3, 2, 8, tzinfo=UTC)  # 09:00 CET
    assert by_date[date(2027, 4, 6)].starts_at == datetime(2027, 4, 6, 7, tzinfo=UTC)  # 09:00 CEST
    assert by_date[date(2027, 4, 6)].ends_at == datetime(2027, 4, 6, 8, tzinfo=UTC)


def test_occurrence_on_a_day_the_forum_meets_and_on_one_it_does_not() -> None:
    rule = recurrence.parse("FREQ=MONTHLY;BYDAY=1TU", starts_at=START)
    assert recurrence.occurrence_on(rule, duration=HOUR, day=date(2027, 7, 6)) is not None
    assert recurrence.occurrence_on(rule, duration=HOUR, day=date(2027, 7, 7)) is None


@pytest.mark.parametrize(("start", "end", "field"), [
    (START, START - timedelta(days=1), "to"),
    (START, START + timedelta(days=400), "to"),
    (START + timedelta(days=3000), START + timedelta(days=3010), "from"),
])
def test_a_listing_window_is_bounded(start: datetime, end: datetime, field: str) -> None:
    with pytest.raises(InvalidField) as refused:
        recurrence.check_window(start, end, now=START)
    assert str(refused.value).startswith(f"{field}: ")


def test_the_calendar_has_the_rrule_a_neutral_summary_and_no_personal_data() -> None:
    forum = ForumPublic(id="0b9f3f64-8a43-4d4a-9a4e-2f1d6c9b7e10", owner_org="school", name="EHT Norrskolan åk 4-6",
                        kind=ForumKind.ELEVHALSOTEAM, member_orgs=["region", "social"],
                        rrule="FREQ=MONTHLY;BYDAY=1TU", starts_at=START, duration_minutes=90,
                        location="Konferensrum 2, Norrskolan", revision=2)
    body = forum_calendar(forum, organiser_name="Eskilstuna kommun, förskola och skola", now=START)
    calendar = Calendar.from_ical(body)
    assert calendar["METHOD"] == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert event["UID"] == forum_uid(forum) == f"forum-{forum.id}@school.tillsammans"
    assert event["SUMMARY"] == "Elevhälsoteam"
    assert event["SEQUENCE"] == 1  # the second revision replaces the first
    assert event["LOCATION"] == "Konferensrum 2, Norrskolan"
    assert event["RRULE"].to_ical() == b"FREQ=MONTHLY;BYDAY=1TU"
    assert event.decoded("DTSTART") == START
    assert str(event["DTSTART"].params["TZID"]) == "Europe/Stockholm"
    assert event.decoded("DURATION") == timedelta(minutes=90)
    assert str(event["ORGANIZER"]) == "urn:tillsammans:org:school"
    assert [str(a) for a in event["ATTENDEE"]] == ["urn:tillsammans:org:region", "urn:tillsammans:org:social"]
    assert calendar.walk("VTIMEZONE"), "the zone of DTSTART travels with the file"
    # The forum's own name is not in the file: the summary says only what kind of forum it is.
    assert b"EHT Norrskolan" not in body
    # The same forum gives the same series (UID) on every download.
    assert forum_uid(forum) in forum_calendar(forum, organiser_name="x", now=START + HOUR).decode()
