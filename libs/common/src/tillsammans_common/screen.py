"""Screen free text for anything that identifies a child before it leaves an organisation anonymously.

Without consent the only way across an organisation boundary is an anonymous consultation, so its free
text must carry no identity. The screen reads the text after :func:`normalise` (so full-width or
Arabic-Indic digits, zero-width characters and exotic dashes or spaces change nothing) and refuses:

``identity_number``
    A personnummer or samordningsnummer. Digits count as one number when only separators lie between
    them (whitespace, dashes, dots, slashes, underscores, ``+``, at most three such marks between two
    digit groups); a letter, a unit (``%``, ``€``) or one of ``, ; : ! ?`` ends a number. Every run of
    10 or 12 digits that starts and ends at a digit group and holds a plausible date (``YYMMDD`` or
    ``YYYYMMDD`` with a century of 18, 19 or 20, a real month and day, the day plus 60 for a
    samordningsnummer) is a candidate.

    The check digit (Luhn) decides only for numbers broken up in odd places:

    *Written the usual way* (the last four digits in one group, the date whole or split only into year,
    month and day: ``20130412-1237``, ``130412+1237``, ``2013 04 12 - 1237``, ``201304121237``) the run
    is refused whether or not its check digit is right: people mistype numbers, and a mistyped
    personnummer still identifies the child. The one exception is a "serial" that is itself the year of
    a second date, as in the range ``2024-05-12 – 2024-06-12``.

    *Broken up any other way* (``13.04.12.12.37``, ``1 3 0 4 1 2 1 2 3 7``) the run is refused when it
    stands alone (no other digits run into it) and its check digit is right. Someone who breaks a
    number up on purpose copies a real one, while without the check digit ordinary runs of numbers
    (a date followed by a time, a list of small numbers) would be refused one time in ten rather than
    never. For the same reason an ISO date followed by a space and a clock time or one small number
    (``2024-05-12 10.30``, ``2011-05-12. 12 syskon``) never counts.

``email``
    ``name@domain.se`` (also with a full-width ``@``), ``name@domain``, ``name (at) domain``,
    ``name [at] domain``, ``name snabel-a domain`` and ``name at domain dot se`` / ``punkt se``.

``phone``
    A Swedish number: ``+46`` or ``0046`` and 7-9 digits (an extra ``(0)`` allowed), or 8-10 digits
    starting with ``0`` (``070-123 45 67``, ``08-123 456 78``), digits separated as for identity
    numbers. It must start a number of its own (after a letter, a break or a space) and not start like
    a date (``05.12.2024``) or a time (``08.30``). Ten digits in a row such as ``0701234567`` can be
    both a mobile number and the number of a child born in 2007; they are reported as an identity number.

``name``
    One of the given names (each part of a name of two letters or more, particles such as ``von``
    aside) as a whole word, matched after normalising so case and diacritics do not matter
    (``Åsa``, ``asa``, ``ÅSA``); a trailing genitive ``s`` is allowed. A name inside another word
    never counts ("Li" in "lite", "Bo" in "boken", "Erik" in "Amerika"). Names of four letters or more
    are also found spelled out across separators (``T e s t b a r n``, ``T.e.s.t.b.a.r.n``,
    ``Test-barn``, ``Te st ba rn``) when the pieces start and end on word boundaries and either there are
    three pieces or more or no whitespace lies between them: two ordinary words side by side ("i sak",
    "dag mår", "hen rik") must not read as "Isak", "Dagmar" or "Henrik", so "Test barn" passes.
    Look-alike letters from other scripts (a Cyrillic "а" in "Аnna") are not folded.

UUIDs that this system generates are not screened: their digit runs can look like an identity number.
The screen never quotes what it found; callers pass only the free-text fields.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from tillsammans_common.errors import InvalidField
from tillsammans_common.personnummer import luhn_check_digit

Finding = Literal["identity_number", "email", "phone", "name"]

REFUSAL: Final = "must not contain an identity number, e-mail address, phone number or the child's name"
_FOUND: Final[dict[Finding, str]] = {
    "identity_number": "an identity number",
    "email": "an e-mail address",
    "phone": "a phone number",
    "name": "the child's name",
}

# Characters that separate like a dash, dot or slash but are not in the obvious Unicode category.
_DASHES: Final = "\u2212\u2043\u02d7\u2796\ufe63\uff0d"
_DOTS: Final = ".\u00b7\u0387\u0589\u06d4\u16eb\u2022\u2024\u2027\u2219\u22c5\u2e31\u2e33\u3002\u30fb\uff61"
_SLASHES: Final = "/\\\u2044\u2215\u2571\u2572\u29f8\u29f9\uff0f"
# Letters and symbols that render as nothing, so they can hide between digits like a space.
_BLANKS: Final = "\u115f\u1160\u2800\u3164\uffa0"
# Letters that carry a stroke rather than a combining mark, so stripping marks leaves them as they are.
_LETTERS: Final = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
                                 "ı": "i", "ħ": "h", "ŧ": "t"})
# A letter or one of these ends a number: lists ("3, 4"), clock times ("10:30") and units ("5 %", "12 €") are
# not one number with what follows.
_HARD_BREAKS: Final = frozenset(",;:!?\"\u060c\u061b\u061f%\u2030\u00b0\u00a7#&=<>@")
_MAX_MARKS_IN_GAP: Final = 3

_UUID = re.compile(r"(?<![^\W_])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![^\W_])")

# The local part starts only where a token starts, so a long run of letters is scanned once, not once per letter.
_LOCAL = r"(?<![\w.%+-])[^\W_](?:[\w.%+-]*[^\W_])?"
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_DOT = r"(?:\.|\s\.\s|\s?[(\[{<]\s?(?:dot|punkt)\s?[)\]}>]\s?|\s(?:dot|punkt)\s)"
_DOMAIN = rf"{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}[^\W\d_]{{2,}}(?![^\W_])"
_EMAIL = re.compile("|".join((
    rf"{_LOCAL}\s?@\s?{_DOMAIN}",                                           # name@domain.se, name @ domain . se
    rf"{_LOCAL}@{_LABEL}",                                                   # name@domain
    rf"{_LOCAL}\s?[(\[{{<]\s?(?:at|snabel-?a)\s?[)\]}}>]\s?{_LABEL}",        # name(at)domain, name [at] domain
    rf"{_LOCAL}\s?(?:\(snabel-?a\)|snabel-?a)\s?{_LABEL}",                  # name snabel-a domain
    rf"{_LOCAL}\s(?:at)\s{_DOMAIN}",                                         # name at domain dot se
)))

# Particles of family names are ordinary words elsewhere ("de", "af"), so they never match alone.
_PARTICLES: Final = frozenset({"af", "al", "ben", "bin", "da", "de", "del", "della", "den", "der", "di", "du",
                               "el", "ibn", "la", "le", "mac", "mc", "van", "von", "zu"})
_MIN_SPELLED_NAME: Final = 4


def normalise(text: str) -> str:
    """Return text as the screen reads it: NFKC, casefolded, no diacritics or invisible characters, ASCII digits."""
    # Separators keep their kind (email needs "." and "@") but not their script: every dash becomes "-", every dot
    # ".", every slash "/", every connector "_", and every run of whitespace one space.
    text = unicodedata.normalize("NFKC", text).casefold().translate(_LETTERS)
    out: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        category = unicodedata.category(char)
        if category in ("Mn", "Me", "Cf"):  # diacritics, zero-width spaces and joiners, soft hyphens, BOMs
            continue
        if char.isdecimal():
            out.append(str(unicodedata.decimal(char)))
        elif char.isspace() or category in ("Zs", "Zl", "Zp", "Cc") or char in _BLANKS:
            out.append(" ")
        elif category == "Pd" or char in _DASHES:
            out.append("-")
        elif char in _DOTS:
            out.append(".")
        elif char in _SLASHES:
            out.append("/")
        elif category == "Pc":
            out.append("_")
        else:
            out.append(char)
    return re.sub(" +", " ", unicodedata.normalize("NFC", "".join(out))).strip()


def find_identifying(text: str, *, names: Iterable[str] = ()) -> Finding | None:
    """Return what kind of identifying thing ``text`` holds ("identity_number", "email", "phone", "name"), or None."""
    return _find(text, _Names.of(names))


def screen_fields(fields: Mapping[str, str | Iterable[str] | None], *, names: Iterable[str] = ()) -> None:
    """Raise InvalidField for the first free-text field that identifies a child; the reason never quotes it."""
    prepared = _Names.of(names)
    for field, value in fields.items():
        texts = [] if value is None else [value] if isinstance(value, str) else value
        for text in texts:
            found = _find(text, prepared)
            if found is not None:
                raise InvalidField(field, f"{REFUSAL}: found {_FOUND[found]}")


def _find(text: str, names: _Names) -> Finding | None:
    screened = _UUID.sub(";", normalise(text))
    chains = list(_chains(screened))
    # Written the usual way an identity number is reported as one even when it could also be a phone number.
    if any(_usual_identity_number(chain) for chain in chains):
        return "identity_number"
    if _EMAIL.search(screened):
        return "email"
    # A number that is all phone number is one; a run that starts mid-number is more likely a spaced-out identity.
    if any(_phone_number(chain, whole=True) for chain in chains):
        return "phone"
    if any(_broken_up_identity_number(chain) for chain in chains):
        return "identity_number"
    if any(_phone_number(chain, whole=False) for chain in chains):
        return "phone"
    if names.found_in(screened):
        return "name"
    return None


@dataclass(frozen=True)
class _Chain:
    """Digit groups read as one number: ``gaps[k]`` lies between ``groups[k]`` and ``groups[k + 1]``."""

    groups: tuple[str, ...]
    gaps: tuple[str, ...]
    lead: str  # the few characters before the first group, where a "+" of "+46" would be

    def gap_before(self, index: int) -> str:
        return self.lead if index == 0 else self.gaps[index - 1]

    def windows(self, longest: int) -> Iterator[tuple[int, int, str]]:
        """Runs of whole groups ``i..j`` and their digits, up to ``longest`` digits."""
        for i in range(len(self.groups)):
            digits = ""
            for j in range(i, len(self.groups)):
                digits += self.groups[j]
                if len(digits) > longest:
                    break
                yield i, j, digits


def _joins(gap: str) -> bool:
    marks = [char for char in gap if not char.isspace()]
    return (len(marks) <= _MAX_MARKS_IN_GAP
            and not any(char.isalnum() or char in _HARD_BREAKS or unicodedata.category(char) == "Sc" for char in marks))


def _chains(text: str) -> Iterator[_Chain]:
    groups: list[str] = []
    gaps: list[str] = []
    lead, end = "", 0
    for match in re.finditer("[0-9]+", text):
        gap = text[end:match.start()]
        if groups and _joins(gap):
            gaps.append(gap)
            groups.append(match.group())
        else:
            if groups:
                yield _Chain(tuple(groups), tuple(gaps), lead)
            groups, gaps, lead = [match.group()], [], text[max(0, match.start() - 3):match.start()]
        end = match.end()
    if groups:
        yield _Chain(tuple(groups), tuple(gaps), lead)


def _plausible_birth_date(digits: str) -> bool:
    if len(digits) == 8:
        if digits[:2] not in ("18", "19", "20"):
            return False
        years: tuple[int, ...] = (int(digits[:4]),)
    else:
        years = (1900 + int(digits[:2]), 2000 + int(digits[:2]))  # either century may make 29 February real
    month, day = int(digits[-4:-2]), int(digits[-2:])
    if day > 60:  # samordningsnummer
        day -= 60
    return 1 <= month <= 12 and any(1 <= day <= calendar.monthrange(year, month)[1] for year in years)


def _calendar_date(year: str, month: str, day: str) -> bool:
    if len(year) != 4 or not 1 <= len(month) <= 2 or not 1 <= len(day) <= 2 or not 1900 <= int(year) <= 2099:
        return False
    return 1 <= int(month) <= 12 and 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]


def _clock(hours: str, minutes: str) -> bool:
    return len(hours) <= 2 and len(minutes) == 2 and int(hours) < 24 and int(minutes) < 60


def _candidates(chain: _Chain) -> Iterator[tuple[int, int, str]]:
    for i, j, digits in chain.windows(12):
        if len(digits) in (10, 12) and _plausible_birth_date(digits[:-4]):
            yield i, j, digits


def _written_as_usual(chain: _Chain, i: int, j: int, length: int) -> bool:
    # Breaks only between year, month and day and before the last four digits.
    allowed = {2, 4, 6} if length == 10 else {2, 4, 6, 8}
    position = 0
    for group in chain.groups[i:j]:
        position += len(group)
        if position not in allowed:
            return False
    return True


def _usual_identity_number(chain: _Chain) -> bool:
    groups = chain.groups
    for i, j, digits in _candidates(chain):
        if not _written_as_usual(chain, i, j, len(digits)):
            continue
        # "2024-05-12 - 2024-06-12": the four digits after a date open a second date, as in a range.
        if len(groups[j]) == 4 and j + 2 < len(groups) and _calendar_date(*groups[j:j + 3]):
            continue
        return True
    return False


def _date_then_time_or_number(chain: _Chain) -> bool:
    # "2024-05-12 10.30", "2011-05-12. 12 syskon": an ISO date, a space, then a clock time or one small number.
    groups, gaps = chain.groups, chain.gaps
    if len(groups) < 4 or not _calendar_date(*groups[:3]) or gaps[0] != "-" or gaps[1] != "-" or " " not in gaps[2]:
        return False
    rest = groups[3:]
    return (len(rest) == 1 and len(rest[0]) <= 2) or (len(rest) == 2 and gaps[3] == "." and _clock(*rest))


def _broken_up_identity_number(chain: _Chain) -> bool:
    if _date_then_time_or_number(chain):
        return False
    whole = (0, len(chain.groups) - 1)
    return any((i, j) == whole and luhn_check_digit(digits[-10:-1]) == int(digits[-1])
               for i, j, digits in _candidates(chain))


def _starts_with_date_or_clock(chain: _Chain, i: int, j: int) -> bool:
    # No Swedish phone number is written like "05.12.2024" or "08.30": those are dates and times.
    groups, gaps = chain.groups[i:j + 1], chain.gaps[i:j]
    if (len(groups) >= 3 and len(groups[0]) == len(groups[1]) == 2 and gaps[0] == gaps[1] in (".", "/", "-")
            and _calendar_date(groups[2], groups[1], groups[0])):
        return True
    return len(groups) >= 2 and gaps[0] == "." and _clock(groups[0], groups[1])


def _phone_number(chain: _Chain, *, whole: bool) -> bool:
    last = len(chain.groups) - 1
    windows = [(0, last, "".join(chain.groups))] if whole else chain.windows(14)
    for i, j, digits in windows:
        if digits[0] != "0" and not digits.startswith("46"):
            continue
        gap = chain.gap_before(i)
        # A phone number starts a number of its own (after a letter, a break, a space or "+", not inside a
        # date) and does not start like a date or a clock time.
        if (i > 0 and "+" not in gap and " " not in gap) or _starts_with_date_or_clock(chain, i, j):
            continue
        if digits.startswith("0046") or ("+" in gap and digits.startswith("46")):
            national = digits[4:] if digits.startswith("0046") else digits[2:]
            national = national[1:] if national.startswith("0") else national  # "+46 (0)70 …"
            if 7 <= len(national) <= 9 and not national.startswith("0"):
                return True
        elif 8 <= len(digits) <= 10 and digits[0] == "0" and digits[1] != "0":
            return True
    return False


@dataclass(frozen=True)
class _Names:
    """Names prepared once for all fields: whole-word parts and the spelled-out forms worth looking for."""

    words: re.Pattern[str] | None
    spelled: frozenset[str]
    longest: int

    @classmethod
    def of(cls, names: Iterable[str]) -> _Names:
        parts: set[str] = set()
        spelled: set[str] = set()
        for name in names:
            pieces = re.findall(r"[^\W\d_]+", normalise(name))
            parts.update(piece for piece in pieces if len(piece) >= 2 and piece not in _PARTICLES)
            spelled.update(piece for piece in [*pieces, "".join(pieces)] if len(piece) >= _MIN_SPELLED_NAME)
        words = None
        if parts:
            alternatives = "|".join(re.escape(part) for part in sorted(parts, key=len, reverse=True))
            words = re.compile(rf"(?<![^\W_])(?:{alternatives})s?(?![^\W_])")
        spelled |= {name + "s" for name in spelled}  # genitive
        return cls(words, frozenset(spelled), max(map(len, spelled), default=0))

    def found_in(self, text: str) -> bool:
        if self.words is not None and self.words.search(text):
            return True
        return bool(self.spelled) and self._spelled_out(text)

    def _spelled_out(self, text: str) -> bool:
        tokens = list(re.finditer(r"[^\W\d_]+", text))
        for i, first in enumerate(tokens):
            joined, end, pieces, spaced = first.group(), first.end(), 1, False
            for token in tokens[i + 1:]:
                gap = text[end:token.start()]
                if any(char.isdigit() for char in gap) or len(gap.replace(" ", "")) > _MAX_MARKS_IN_GAP:
                    break
                joined, end, pieces, spaced = joined + token.group(), token.end(), pieces + 1, spaced or " " in gap
                if len(joined) > self.longest:
                    break
                if joined in self.spelled and (pieces >= 3 or not spaced):
                    return True
        return False
