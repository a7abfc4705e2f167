"""Personnummer and samordningsnummer validation."""

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tillsammans_common.personnummer import (
    InvalidIdentityNumber,
    Personnummer,
    age_on,
    child_key,
    is_coordination_number,
    luhn_check_digit,
    normalize,
)

TODAY = date(2026, 11, 22)


def test_luhn_check_digit_of_a_known_number() -> None:
    # 811218-9876 is the classic example from the Swedish Tax Agency.
    assert luhn_check_digit("811218987") == 6


@pytest.mark.parametrize("value", ["19811218-9876", "198112189876", "811218-9876", "8112189876"])
def test_accepted_forms_normalize_to_twelve_digits(value: str) -> None:
    assert normalize(value, today=TODAY) == "198112189876"


def test_plus_separator_means_a_hundred_years_or_more() -> None:
    assert normalize("811218+9876", today=TODAY) == "188112189876"


def test_samordningsnummer_adds_sixty_to_the_day() -> None:
    number = "20130472" + "123"
    check = luhn_check_digit(number[2:])
    normalized = normalize(f"{number[:8]}-123{check}", today=TODAY)
    assert is_coordination_number(normalized)
    assert age_on(normalized, TODAY) == 13


@pytest.mark.parametrize(("value", "reason"), [
    ("19811218-9875", "check digit"),
    ("19811318-9876", "must look like|calendar|check digit"),
    ("2013-04-12", "must look like"),
    ("20990101-0000", "check digit|future"),
])
def test_invalid_numbers_are_refused_with_the_rule(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentityNumber, match=reason):
        normalize(value, today=TODAY)


def test_calendar_and_future_checks() -> None:
    bad_month = "19811318"
    with pytest.raises(InvalidIdentityNumber, match="calendar"):
        normalize(f"{bad_month}-123{luhn_check_digit(bad_month[2:] + '123')}", today=TODAY)
    future = "20991218"
    with pytest.raises(InvalidIdentityNumber, match="future"):
        normalize(f"{future}-123{luhn_check_digit(future[2:] + '123')}", today=TODAY)


def test_pydantic_field_type_names_the_problem_without_the_value() -> None:
    class Child(BaseModel):
        personnummer: Personnummer

    assert Child(personnummer="20130412-1237").personnummer == "201304121237"
    with pytest.raises(ValidationError) as info:
        Child(personnummer="20130412-1234")
    assert "check digit" in str(info.value.errors()[0]["msg"])
    with pytest.raises(ValidationError):
        Child(personnummer=201304121237)  # type: ignore[arg-type]


def test_child_key_is_stable_and_keyed() -> None:
    assert child_key("201304121237", "k1") == child_key("201304121237", "k1")
    assert child_key("201304121237", "k1") != child_key("201304121237", "k2")
    assert "201304121237" not in child_key("201304121237", "k1")


DIGIT_ZEROS = [0x30, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0xFF10, 0x1D7CE]
DASHES = ["-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", "\uff0d"]


@settings(max_examples=200, deadline=None)
@given(zero=st.sampled_from(DIGIT_ZEROS), dash=st.sampled_from(DASHES), pad=st.sampled_from(["", " ", "\u00a0"]))
def test_one_child_has_one_canonical_form_whatever_digits_and_dashes_are_written(zero: int, dash: str,
                                                                                  pad: str) -> None:
    written = "".join(chr(zero + int(c)) if c.isdigit() else c for c in "20130412") + dash + "".join(
        chr(zero + int(c)) for c in "1237")
    canonical = normalize(pad + written + pad)
    assert canonical == "201304121237" and canonical.isascii()
    assert child_key(canonical, "s") == child_key(normalize("20130412-1237"), "s")
