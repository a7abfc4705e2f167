"""The anonymous channel's screen: identity numbers, e-mail, phone numbers and names, in any written form."""

import re
import unicodedata
from datetime import date

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tillsammans_common.errors import InvalidField
from tillsammans_common.personnummer import luhn_check_digit
from tillsammans_common.screen import REFUSAL, find_identifying, normalise, screen_fields

QUICK = settings(max_examples=200, deadline=None)

# --- normalise --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("٢٠١٣٠٤١٢-١٢٣٧", "20130412-1237"),
    ("２０１３０４１２－１２３７", "20130412-1237"),
    ("2\u200b0\u200d1\u20603\ufeff0\u00ad4", "201304"),
    ("13\u00a004\u202f12\u3000–\u20141237", "13 04 12 --1237"),
    ("a\u2024b\u00b7c\u30fbd\u2215e\u2044f\uff3fg", "a.b.c.d/e/f_g"),
    ("ÅSA Ørjan Zoë ﬁne", "asa orjan zoe fine"),
    ("  many \t\n spaces  ", "many spaces"),
])
def test_normalise_reads_every_script_and_separator_the_same_way(text: str, expected: str) -> None:
    assert normalise(text) == expected


@QUICK
@given(st.text())
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once


# --- identity numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "201304121237", "20130412-1237", "130412-1237", "1304121237", "130412+1237",
    "20130412 - 1237", "2013 04 12 1237", "2013-04-12-1237", "13.04.12.12.37", "1 3 0 4 1 2 1 2 3 7",
    "٢٠١٣٠٤١٢-١٢٣٧", "２０１３０４１２－１２３７", "\u200b".join("201304121237"),
    "20130412\u00a0\u20131237", "201304121237".translate({ord(d): chr(0x966 + int(d)) for d in "0123456789"}),
    "barnet (19811218-9876) har oro", "pnr: 811218-9876.", "samordningsnummer 20130472-1234",
])
def test_identity_numbers_in_any_written_form_are_refused(text: str) -> None:
    assert find_identifying(text) == "identity_number"


@pytest.mark.parametrize("text", ["20130412-1230", "130412-1231", "19811218 9870"])
def test_a_mistyped_check_digit_is_still_refused_when_written_the_usual_way(text: str) -> None:
    assert find_identifying(text) == "identity_number"


@pytest.mark.parametrize("text", [
    "möte 2024-05-12", "år 2019", "3 syskon", "klass 7B", "född 2013, har 2 syskon",
    "möte 2024-05-12 10.30", "möte 2024-05-12 kl 10:30-11:30", "möte 2024-05-12 08.30-09.30",
    "perioden 2024-05-12 – 2024-06-12", "2011-05-12 12 dagar frånvaro", "vecka 12 2013-04-12",
    "kostnad 12 500 kr", "org.nr 212000-1234", "se ärende 3f2c1e4a-1304-4121-8237-201304121237",
    "postnummer 702 10 Örebro", "5/12 2024", "frånvaro 10, 12, 13, 14 och 15 maj",
])
def test_ordinary_text_with_dates_and_numbers_passes(text: str) -> None:
    assert find_identifying(text) is None


def test_a_broken_up_number_with_a_wrong_check_digit_is_not_taken_for_an_identity_number() -> None:
    # 13.04.12.12.37 is valid; its neighbours with another last digit are ordinary runs of numbers.
    assert find_identifying("13.04.12.12.37") == "identity_number"
    assert find_identifying("13.04.12.12.38") is None


# --- e-mail and phone numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "maila anna.svensson@skolan.se", "anna＠skolan.se", "anna﹫skolan.se", "anna@skolan",
    "anna at skolan dot se", "anna at skolan.se", "anna(at)skolan.se", "anna (at) skolan (dot) se",
    "anna [at] skolan", "anna{at}skolan", "anna snabel-a skolan punkt se", "anna @ skolan . se",
    "ANNA.SVENSSON@SKOLAN.SE",
])
def test_email_addresses_also_obfuscated_are_refused(text: str) -> None:
    assert find_identifying(text) == "email"


@pytest.mark.parametrize("text", [
    "vi ses @ skolan. Sedan går vi hem", "en viktig punkt är sömnen", "e-post skickas inte",
])
def test_ordinary_text_with_at_signs_and_dots_passes(text: str) -> None:
    assert find_identifying(text) is None


@pytest.mark.parametrize("text", [
    "ring 070-123 45 67", "+46 70 123 45 67", "+46 (0)70-123 45 67", "0046 70 123 45 67", "0046701234567",
    "08-123 456 78", "08/12345678", "031-12 34 56", "0 7 3 1 2 3 4 5 6 7", "٠٧٠-١٢٣ ٤٥ ٦٧", "０７０１２３４５６７",
    "070\u200b123\u200b45\u200b67", "tel: 070.123.45.67", "3 barn, 073-123 45 67",
])
def test_phone_numbers_are_refused(text: str) -> None:
    assert find_identifying(text) in {"phone", "identity_number"}


@pytest.mark.parametrize("text", ["ring 070-123 45 67", "+46 70 123 45 67", "08-123 456 78"])
def test_phone_numbers_are_reported_as_phone_numbers(text: str) -> None:
    assert find_identifying(text) == "phone"


@pytest.mark.parametrize("text", ["datum 05.12.2024", "kl 08.30-09.30", "08.30 - 09.30", "0 syskon"])
def test_dates_and_times_starting_with_zero_are_not_phone_numbers(text: str) -> None:
    assert find_identifying(text) is None


# --- names ------------------------------------------------------------------------------------------------------

NAMES = ["Testbarn", "Åsa", "Bo", "Li", "Isak", "Ivar", "Dagmar", "Henrik", "Erik", "Anna-Karin", "von Essen"]


@pytest.mark.parametrize("text", [
    "Testbarn mår bra", "TESTBARN", "testbarns mamma", "Åsa", "asa kom", "ÅSA:s pappa", "Asa", "A\u030asa",
    "T e s t b a r n", "T.e.s.t.b.a.r.n", "T-e-s-t-b-a-r-n", "T\u200be\u200bs\u200bt\u200bb\u200ba\u200br\u200bn",
    "Test-barn", "Test.barn", "Te st ba rn", "Bo är glad", "hej li", "Anna Karin", "Karin", "karin", "Essen",
    "ｔｅｓｔｂａｒｎ", "Dagmar", "I.s.a.k",
])
def test_the_childs_names_are_refused(text: str) -> None:
    assert find_identifying(text, names=NAMES) == "name"


@pytest.mark.parametrize("text", [
    "Vi är överens i sak.", "Han bor i var sitt hem", "En dag mår hon bättre", "hen rik på idéer",
    "boken ligger på bordet", "de bor i en liten lägenhet", "Amerika", "han nalle", "Bolaget", "von der Leyen",
    "asatro", "lite oro",
])
def test_short_names_and_word_pairs_inside_ordinary_text_pass(text: str) -> None:
    assert find_identifying(text, names=NAMES) is None


def test_names_do_not_count_without_being_given() -> None:
    assert find_identifying("Testbarn mår bra") is None


# --- screen_fields ----------------------------------------------------------------------------------------------


def test_screen_fields_names_the_field_and_the_kind_but_never_the_value() -> None:
    fields = {"question": "Hur stöttar vi ett barn med hög frånvaro?", "context": "ring 070-123 45 67"}
    with pytest.raises(InvalidField) as refused:
        screen_fields(fields)
    problem = refused.value.problem()
    assert problem["errors"] == [{"field": "context", "reason": f"{REFUSAL}: found a phone number"}]
    assert "070" not in str(problem) and "123" not in str(problem)


@pytest.mark.parametrize(("value", "kind"), [
    ("20130412-1237", "an identity number"), ("a@b.se", "an e-mail address"), ("Testbarn", "the child's name"),
])
def test_screen_fields_says_what_kind_of_thing_it_found(value: str, kind: str) -> None:
    with pytest.raises(InvalidField, match=f"found {kind}$"):
        screen_fields({"text": value}, names=iter(["Testbarn"]))


def test_screen_fields_reads_lists_skips_none_and_passes_clean_text() -> None:
    screen_fields({"question": "Barnet har 3 syskon och går i klass 7B.", "note": None, "areas": ["skola", "hem"]},
                  names=["Testbarn"])
    with pytest.raises(InvalidField, match="^areas: "):
        screen_fields({"areas": ["skola", "Testbarn"]}, names=["Testbarn"])


# --- properties -------------------------------------------------------------------------------------------------

# Unicode decimal digit blocks: ASCII, Arabic-Indic, Persian, Devanagari, Bengali, Thai, Myanmar, full-width,
# and mathematical bold, double-struck and monospace (which NFKC folds to ASCII).
DIGIT_BASES = [0x30, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0x1040, 0xFF10, 0x1D7CE, 0x1D7D8, 0x1D7F6]
SEPARATORS = [
    " ", "\u00a0", "\u2009", "\u202f", "\u3000", "\t", "\n",  # spaces
    "-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212", "\ufe63", "\uff0d",  # dashes
    ".", "\u00b7", "\u2024", "\u2027", "\u30fb", "\uff0e",  # dots
    "/", "\\", "\u2044", "\u2215", "\uff0f", "_", "\uff3f", "+", "*", "~", "'",  # slashes, connectors, others
]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
WORDS = [
    "barnet", "eleven", "mår", "bra", "dåligt", "skolan", "hemma", "familjen", "mamma", "pappa", "möte", "samtal",
    "oro", "frånvaro", "stöd", "behov", "elevhälsan", "kurator", "psykolog", "socialtjänsten", "BUP", "BVC", "vi",
    "de", "i", "på", "och", "att", "har", "är", "var", "sak", "dag", "punkt", "en", "ett", "med", "om", "för",
    "inte", "sover", "äter", "vill", "kan", "ska", "klass", "lärare", "mentor", "rektor", "fritids", "läxor",
    "kamrater", "konflikt", "trött", "ledsen", "glad", "orolig", "ibland", "ofta", "sällan", "hösten", "våren",
    "hen", "rik", "bor", "lite", "Amerika", "han", "nalle", "e-post", "SIP", "Barnets", "bästa",
]
NOUNS = ["syskon", "år", "dagar", "veckor", "lektioner", "timmar", "kr", "%", "gånger", "elever"]
# Names that no two of the words above spell when run together, and that are none of those words.
SCREENED_NAMES = ["Testbarn", "Isak", "Ivar", "Dagmar", "Henrik", "Li", "Åsa", "Märta", "Zoë", "Björn", "Sixten"]

words = st.sampled_from(WORDS)
text_around = st.lists(words, max_size=6).map(" ".join)


def _render(digits: str, bases: list[int], gaps: list[str]) -> str:
    return "".join(chr(base + int(d)) + gap for d, base, gap in zip(digits, bases, [*gaps, ""], strict=False))


@st.composite
def identity_numbers(draw: st.DrawFn) -> tuple[str, bool]:
    born = draw(st.dates(date(1920, 1, 1), date(2025, 12, 31)))
    day = born.day + (60 if draw(st.booleans()) else 0)  # samordningsnummer
    ten = f"{born:%y%m}{day:02d}{draw(st.integers(0, 999)):03d}"
    ten += str(luhn_check_digit(ten))
    twelve = draw(st.booleans())
    digits = f"{born.year // 100}{ten}" if twelve else ten
    return digits, twelve


@st.composite
def rendered(draw: st.DrawFn, digits: str) -> str:
    bases = draw(st.lists(st.sampled_from(DIGIT_BASES), min_size=len(digits), max_size=len(digits)))
    gap = st.one_of(st.just(""), st.text(st.sampled_from(SEPARATORS + INVISIBLE), min_size=1, max_size=2))
    gaps = draw(st.lists(gap, min_size=len(digits) - 1, max_size=len(digits) - 1))
    return _render(digits, bases, gaps)


@QUICK
@given(st.data(), identity_numbers(), text_around, text_around)
def test_generated_identity_numbers_are_always_refused(data: st.DataObject, number: tuple[str, bool],
                                                       before: str, after: str) -> None:
    digits, twelve = number
    text = f"{before} {data.draw(rendered(digits))} {after}"
    found = find_identifying(text)
    # A ten-digit number from the 2000s starts with 0 and may be read as a phone number first: refused either way.
    assert found == "identity_number" or (found == "phone" and not twelve), (text, found)


TIME_OR_DATE_FIRST = re.compile(r"0[0-9]\.[0-9]{2}(?![0-9])|0[0-9]([./-])[0-9]{2}\1(19|20)[0-9]{2}(?![0-9])")


@QUICK
@given(st.data(), st.sampled_from(["070", "072", "073", "076", "079"]), st.integers(0, 9_999_999), st.booleans(),
       text_around, text_around)
def test_generated_mobile_numbers_are_always_refused(data: st.DataObject, prefix: str, subscriber: int,
                                                     international: bool, before: str, after: str) -> None:
    digits = f"{prefix}{subscriber:07d}"
    number = "+" + data.draw(rendered("46" + digits[1:])) if international else data.draw(rendered(digits))
    # Digits that start like a time or a date ("07.30 …", "07.01.2012 …") are read as one, as in "kl 07.30 12 elever".
    assume(not TIME_OR_DATE_FIRST.match(normalise(number)))
    text = f"{before} {number} {after}"
    assert find_identifying(text) in {"phone", "identity_number"}, text


MARKS = ["\u0301", "\u0300", "\u0308", "\u030a", "\u0327", "\u0303"]


@st.composite
def obfuscated(draw: st.DrawFn, name: str) -> str:
    letters = []
    for char in name:
        char = char.upper() if draw(st.booleans()) else char.lower()
        if char.isascii() and char.isalpha() and draw(st.integers(0, 5)) == 0:
            char = chr(ord(char) - ord("A") + 0xFF21) if char.isupper() else chr(ord(char) - ord("a") + 0xFF41)
        letters.append(char + "".join(draw(st.lists(st.sampled_from(MARKS), max_size=1))))
    if len(name) < 4:
        return "".join(letters)  # short names are matched as whole words only
    style = draw(st.sampled_from(["whole", "every_letter", "marks_only"]))
    if style == "whole":
        gaps = [""] * (len(letters) - 1)
    elif style == "every_letter":  # spelled out: T e s t b a r n, T.e.s.t.b.a\u200br.n
        # At least one visible separator in each gap: invisible ones alone vanish, leaving e.g. "D agmar", two
        # pieces with a space between, which the screen leaves alone so that "i sak" does not read as "Isak".
        visible = st.builds(lambda sep, hidden, first: sep + hidden if first else hidden + sep,
                            st.sampled_from(SEPARATORS), st.sampled_from(["", *INVISIBLE]), st.booleans())
        gaps = draw(st.lists(visible, min_size=len(letters) - 1, max_size=len(letters) - 1))
    else:  # broken anywhere by marks that are no space: Test-barn, Te.stba_rn, Test\u200bbarn
        marks = [sep for sep in SEPARATORS + INVISIBLE if not sep.isspace()]
        gaps = draw(st.lists(st.one_of(st.just(""), st.sampled_from(marks)),
                             min_size=len(letters) - 1, max_size=len(letters) - 1))
    return "".join(letter + gap for letter, gap in zip(letters, [*gaps, ""], strict=False))


@QUICK
@given(st.data(), st.sampled_from(SCREENED_NAMES), st.booleans(), text_around, text_around)
def test_generated_name_variants_are_always_refused(data: st.DataObject, name: str, genitive: bool,
                                                    before: str, after: str) -> None:
    text = f"{before} {data.draw(obfuscated(name))}{'s' if genitive else ''} {after}"
    assert find_identifying(text, names=SCREENED_NAMES) == "name", text


def _iso(day: date) -> str:
    return f"{day:%Y-%m-%d}"


days = st.dates(date(1990, 1, 1), date(2030, 12, 31)).map(_iso)
small = st.integers(0, 99)
clock = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda hm: f"{hm[0]:02d}.{hm[1]:02d}")
phrases = st.one_of(
    words,
    st.builds("{} {}".format, small, st.sampled_from(NOUNS)),
    st.builds("klass {}{}".format, st.integers(1, 9), st.sampled_from("ABCDEF")),
    st.builds("år {}".format, st.integers(1990, 2030)),
    st.builds("vecka {}".format, st.integers(1, 52)),
    st.builds("möte {}".format, days),
    st.builds("{} – {}".format, days, days),
    st.builds("{}-{}".format, days, days),
    st.builds("{} {}".format, days, clock),
    st.builds("{} kl {}".format, days, clock),
    st.builds("{} {}-{}".format, days, clock, clock),
    st.builds("{}, {} {}".format, days, small, st.sampled_from(NOUNS)),
    st.builds("kostnad {} {:03d} kr".format, st.integers(1, 99), st.integers(0, 999)),
)
benign = st.lists(st.tuples(phrases, st.sampled_from([" ", ", ", ". ", "; ", "\n"])), min_size=1, max_size=12).map(
    lambda parts: "".join(phrase + sep for phrase, sep in parts))


@QUICK
@given(benign)
def test_generated_ordinary_text_is_never_refused(text: str) -> None:
    assert find_identifying(text, names=SCREENED_NAMES) is None, text


@QUICK
@given(st.text(st.characters(codec="utf-8")))
def test_the_screen_returns_a_known_kind_for_any_text(text: str) -> None:
    assert find_identifying(text, names=SCREENED_NAMES) in {None, "identity_number", "email", "phone", "name"}


def test_combining_and_precomposed_diacritics_match_alike() -> None:
    decomposed = unicodedata.normalize("NFD", "Märta")
    assert find_identifying(f"hej {decomposed}", names=["Märta"]) == "name"
    assert find_identifying("hej marta", names=[decomposed]) == "name"
