"""A forum's recurrence (RFC 5545 RRULE): which rules are accepted and when a forum meets.

Pure rules, no database. Forums recur on the wall clock of the federation (Europe/Stockholm): an
elevhälsoteam on the first Tuesday at 09:00 stays at 09:00 across daylight saving time, so the rule
is expanded in local time and each occurrence converted to UTC afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, HOURLY, MINUTELY, SECONDLY, rrule, rrulestr

from tillsammans_common.errors import InvalidField

FORUM_TIMEZONE = ZoneInfo("Europe/Stockholm")
MAX_RRULE_LENGTH = 300
# A forum meets at most once a week (seeds 001/004: monthly in school, every other month in preschool).
MIN_GAP = timedelta(days=7)
# How far ahead a rule must show its first meeting, and how far its rhythm is checked.
PROBE = timedelta(days=2 * 366)
# The widest window one listing may ask for, and how far ahead anything is ever expanded.
MAX_WINDOW = timedelta(days=366)
HORIZON = timedelta(days=5 * 366)
_TOO_FINE = {SECONDLY, MINUTELY, HOURLY, DAILY}
_NOT_ALLOWED = ("DTSTART", "RDATE", "EXDATE", "EXRULE", "\n", "\r")


@dataclass(frozen=True)
class Occurrence:
    """One meeting of a forum: its local date (the agenda's key) and its start and end in UTC."""

    date: date
    starts_at: datetime
    ends_at: datetime


def _local(moment: datetime) -> datetime:
    # dateutil expands naive wall-clock times; the zone is put back on each occurrence.
    return moment.astimezone(FORUM_TIMEZONE).replace(tzinfo=None)


def _utc(local: datetime) -> datetime:
    return local.replace(tzinfo=FORUM_TIMEZONE).astimezone(UTC)


def parse(text: str, *, starts_at: datetime) -> rrule:
    """The rule, anchored at ``starts_at``; 422 naming ``rrule`` if it is not one accepted rule.

    Accepted: one RRULE (an ``RRULE:`` prefix allowed) at most weekly, whose first occurrence comes
    within two years and whose occurrences lie at least a week apart. UNTIL is read as local time.
    """
    body = text.strip().removeprefix("RRULE:")
    if not body or len(body) > MAX_RRULE_LENGTH or any(part in body.upper() for part in _NOT_ALLOWED):
        raise InvalidField("rrule", "must be one RFC 5545 RRULE value, such as FREQ=MONTHLY;BYDAY=1TU")
    anchor = _local(starts_at)
    try:
        rule = rrulestr(body, dtstart=anchor, ignoretz=True)
    except (ValueError, TypeError, KeyError, IndexError):
        raise InvalidField("rrule", "is not a valid RFC 5545 RRULE") from None
    if not isinstance(rule, rrule):
        raise InvalidField("rrule", "must be a single RRULE")
    if rule._freq in _TOO_FINE:  # noqa: SLF001 - dateutil exposes the frequency only this way
        raise InvalidField("rrule", "a forum meets at most once a week (FREQ=WEEKLY, MONTHLY or YEARLY)")
    # Probe a bounded copy: a rule that can never match (31 February) would otherwise be searched to year 9999.
    until = anchor + PROBE
    if rule._until is not None:  # noqa: SLF001
        until = min(until, rule._until)  # noqa: SLF001
    probe = rule.replace(count=None, until=until)
    first = probe.after(anchor, inc=True)
    if first is None:
        raise InvalidField("rrule", "has no occurrence within two years of starts_at")
    previous = first
    for moment in probe.xafter(first, count=120, inc=False):
        if moment - previous < MIN_GAP:
            raise InvalidField("rrule", "a forum meets at most once a week: occurrences must be 7 days apart")
        previous = moment
    return rule


def _bounded(rule: rrule, until_local: datetime) -> rrule:
    # Never expand past the caller's window, whatever the rule says (COUNT still ends it earlier).
    if rule._until is not None and rule._until <= until_local:  # noqa: SLF001
        return rule
    if rule._count is not None:  # noqa: SLF001 - COUNT and UNTIL may not be combined
        return rule
    return rule.replace(until=until_local)


def occurrences(rule: rrule, *, duration: timedelta, start: datetime, end: datetime) -> list[Occurrence]:
    """The occurrences that start in ``[start, end]`` (UTC), in order."""
    end_local = _local(end)
    found = _bounded(rule, end_local).between(_local(start), end_local, inc=True)
    return [Occurrence(date=moment.date(), starts_at=_utc(moment), ends_at=_utc(moment) + duration)
            for moment in found]


def occurrence_on(rule: rrule, *, duration: timedelta, day: date) -> Occurrence | None:
    """The forum's occurrence on local date ``day``, if it meets that day."""
    start = datetime(day.year, day.month, day.day, tzinfo=FORUM_TIMEZONE)
    found = occurrences(rule, duration=duration, start=start.astimezone(UTC),
                        end=(start + timedelta(days=1)).astimezone(UTC) - timedelta(microseconds=1))
    return found[0] if found else None


def check_window(start: datetime, end: datetime, *, now: datetime) -> None:
    """A listing window must be ordered, at most a year wide and within five years of now (422 otherwise)."""
    if end < start:
        raise InvalidField("to", "must not be before from")
    if end - start > MAX_WINDOW:
        raise InvalidField("to", "a window spans at most 366 days")
    if abs(start - now) > HORIZON or abs(end - now) > HORIZON:
        raise InvalidField("from", "must lie within five years of today")
