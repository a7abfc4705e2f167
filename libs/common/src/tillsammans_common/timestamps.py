"""Timestamps at the edge: inputs must carry an offset and lie in a sane range; outputs are UTC.

A date in year 1 or 9999 is never a real meeting or consent, and turning it into UTC can overflow
(a 500 instead of a clear 422), so inputs are held to ``EARLIEST``-``LATEST`` before anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive value is taken to be UTC already (SQLite drops offsets)."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _sane(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must lie between 1900 and 2200") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError("must lie between 1900 and 2200")
    return utc


UtcInput = Annotated[AwareDatetime, AfterValidator(_sane),
                     Field(description="An ISO 8601 timestamp with offset, between 1900 and 2200; stored in UTC.")]
"""A timestamp from a client: with an offset, in a sane range, turned into UTC."""

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
"""A timestamp rendered in UTC with its offset, whatever the database returned."""
