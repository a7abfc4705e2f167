"""Swedish personal identity numbers (personnummer) and coordination numbers (samordningsnummer).

Accepted forms: ``YYYYMMDD-NNNC``, ``YYYYMMDDNNNC``, ``YYMMDD-NNNC`` and ``YYMMDD+NNNC`` (100 years
or older), in any script's digits and with any dash (read as ASCII first), always stored as the
ASCII ``YYYYMMDDNNNC``, so one child never gets two keys. The check digit is Luhn over the ten
digits ``YYMMDDNNN``. A samordningsnummer adds 60 to the day. Sex is never derived from the number,
and callers must not assume it never changes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import date
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

_FORM = re.compile(r"^(?P<century>\d{2})?(?P<yymmdd>\d{6})(?P<sep>[-+]?)(?P<serial>\d{3})(?P<check>\d)$", re.ASCII)
# Every dash and minus sign a keyboard or a word processor produces, read as the hyphen.
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"), "-")


def _ascii_form(value: str) -> str:
    """The number with every Unicode digit as ASCII and every dash as '-', so one child has one form."""
    text = unicodedata.normalize("NFKC", value).translate(_DASHES).strip()
    return "".join(str(unicodedata.decimal(char)) if char.isdecimal() else char for char in text)


class InvalidIdentityNumber(ValueError):
    """The value is not a valid personnummer or samordningsnummer; the message names only the rule."""


def luhn_check_digit(nine_digits: str) -> int:
    """Return the Luhn check digit for nine digits, as used in Swedish identity numbers."""
    total = 0
    for index, char in enumerate(nine_digits):
        product = int(char) * (2 if index % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def normalize(value: str, *, today: date | None = None) -> str:
    """Validate and return the 12-digit form ``YYYYMMDDNNNC``; raise InvalidIdentityNumber otherwise."""
    if not isinstance(value, str):
        raise InvalidIdentityNumber("must be a string")
    match = _FORM.match(_ascii_form(value))
    if not match:
        raise InvalidIdentityNumber("must look like YYYYMMDD-NNNC")
    yymmdd, serial, check = match["yymmdd"], match["serial"], match["check"]
    if luhn_check_digit(yymmdd + serial) != int(check):
        raise InvalidIdentityNumber("check digit does not match")
    today = today or date.today()
    if match["century"]:
        if match["sep"] == "+":
            raise InvalidIdentityNumber("'+' is only used with a two-digit year")
        year = int(match["century"] + yymmdd[:2])
    else:
        year = _expand_year(int(yymmdd[:2]), centenarian=match["sep"] == "+", today=today)
    month, day = int(yymmdd[2:4]), int(yymmdd[4:6])
    if day > 60:  # samordningsnummer
        day -= 60
    try:
        born = date(year, month, day)
    except ValueError:
        raise InvalidIdentityNumber("date part is not a calendar date") from None
    if born > today:
        raise InvalidIdentityNumber("date part lies in the future")
    return f"{year:04d}{yymmdd[2:]}{serial}{check}"


def _expand_year(yy: int, *, centenarian: bool, today: date) -> int:
    year = today.year // 100 * 100 + yy
    if year > today.year:
        year -= 100
    if centenarian:
        year -= 100
    return year


def is_coordination_number(normalized: str) -> bool:
    """Whether a normalized number is a samordningsnummer (day + 60)."""
    return int(normalized[6:8]) > 60


def birth_date(normalized: str) -> date:
    """The birth date encoded in a normalized number."""
    day = int(normalized[6:8])
    return date(int(normalized[:4]), int(normalized[4:6]), day - 60 if day > 60 else day)


def age_on(normalized: str, on: date) -> int:
    """Age in whole years on a given date."""
    born = birth_date(normalized)
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def child_key(normalized: str, secret: str) -> str:
    """This organisation's own pseudonymous key for a child: HMAC-SHA256 of the normalized number.

    Its services match consents and meetings on it; the secret never leaves the organisation.
    """
    return hmac.new(secret.encode(), normalized.encode(), hashlib.sha256).hexdigest()


def pair_key(normalized: str, pair_secret: str) -> str:
    """The key two organisations (and only they) share for a child: HMAC-SHA256 under their pair secret.

    A third member holds neither the secret nor the number, so it can neither compute the key nor
    try every number of a birth year against it (docs/decisions/0009).
    """
    return hmac.new(pair_secret.encode(), b"tillsammans.child.v1:" + normalized.encode(), hashlib.sha256).hexdigest()


def _validate(value: str) -> str:
    try:
        return normalize(value)
    except InvalidIdentityNumber as exc:
        raise ValueError(f"invalid personnummer: {exc}") from None


def _reject_non_string(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("invalid personnummer: must be a string")
    return value


# The OpenAPI schema states the canonical shape so a generated client checks it before sending; the schema
# only, since the server also reads other scripts' digits and dashes (and the check digit is no pattern).
SHAPE = r"^([0-9]{2})?[0-9]{6}[-+]?[0-9]{4}$"

Personnummer = Annotated[str, BeforeValidator(_reject_non_string), AfterValidator(_validate),
                         Field(json_schema_extra={"pattern": SHAPE, "examples": ["20130412-1237"]})]
"""A pydantic field type: accepts the usual forms and stores ``YYYYMMDDNNNC``."""
