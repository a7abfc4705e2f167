"""The rules a consent must meet before it is recorded (pure: no database, no broker)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tillsammans_common.errors import InvalidField
from tillsammans_common.personnummer import luhn_check_digit
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.models import ConsentCreate
from tillsammans_consent.service import check_grant

NOW = datetime.now(UTC)
# A fixed date next year, so the age boundary does not depend on the day the tests run.
VALID_FROM = datetime(NOW.year + 1, 6, 15, 10, 0, tzinfo=UTC)
SETTINGS = ConsentSettings(org="school", peers=["school", "region", "social"])


def pnr(born: date, serial: str = "238") -> str:
    """A valid personnummer for a birth date."""
    return f"{born:%Y%m%d}-{serial}{luhn_check_digit(born.strftime('%y%m%d') + serial)}"


YOUNG = pnr(date(VALID_FROM.year - 10, 3, 1))
MATURE = pnr(date(VALID_FROM.year - 16, 3, 1))
GUARDIANS = [{"role": "guardian", "name": "Vårdnadshavare Ett", "given_at": "2026-01-10T09:00:00+01:00"},
             {"role": "guardian", "name": "Vårdnadshavare Två", "given_at": "2026-01-10T09:05:00+01:00"}]
CHILD_GRANT = {"role": "child", "name": "Barnet", "given_at": "2026-01-10T09:10:00+01:00"}


def consent(**changes: Any) -> ConsentCreate:
    """A valid consent for a ten-year-old under joint custody, with ``changes`` applied."""
    body: dict[str, Any] = {
        "case_id": "case-1", "child": {"personnummer": YOUNG}, "custody": "joint", "grantors": GUARDIANS,
        "child_view": {"heard": True, "agrees": True}, "receiving_orgs": ["region"],
        "categories": ["concern", "mapping_summary"], "purpose": "coordination_meeting",
        "valid_from": VALID_FROM.isoformat(), "valid_until": (VALID_FROM + timedelta(days=180)).isoformat(),
    }
    return ConsentCreate.model_validate({**body, **changes})


def broken_field(data: ConsentCreate, settings: ConsentSettings = SETTINGS) -> str:
    """The field check_grant names for ``data``."""
    with pytest.raises(InvalidField) as excinfo:
        check_grant(data, settings=settings, now=NOW)
    return str(excinfo.value.extra["errors"][0]["field"])


def test_a_complete_consent_passes() -> None:
    check_grant(consent(), settings=SETTINGS, now=NOW)
    check_grant(consent(custody="sole", grantors=GUARDIANS[:1]), settings=SETTINGS, now=NOW)


@pytest.mark.parametrize("receiving_orgs", [["school"], ["region", "police"]])
def test_receiving_orgs_must_be_other_members_of_the_federation(receiving_orgs: list[str]) -> None:
    assert broken_field(consent(receiving_orgs=receiving_orgs)) == "receiving_orgs"


def test_joint_custody_needs_two_distinct_guardians() -> None:
    assert broken_field(consent(grantors=GUARDIANS[:1])) == "grantors"
    same_person_twice = [GUARDIANS[0], {**GUARDIANS[1], "name": " vårdnadshavare  ETT "}]
    assert broken_field(consent(grantors=same_person_twice)) == "grantors"


def test_some_guardian_must_consent_whatever_the_custody() -> None:
    assert broken_field(consent(custody="other", grantors=[CHILD_GRANT])) == "grantors"


def test_from_the_mature_age_the_child_must_consent() -> None:
    assert broken_field(consent(child={"personnummer": MATURE})) == "grantors"
    check_grant(consent(child={"personnummer": MATURE}, grantors=[*GUARDIANS, CHILD_GRANT], child_view=None),
                settings=SETTINGS, now=NOW)


def test_the_mature_age_is_reached_on_the_birthday_in_sweden() -> None:
    born = VALID_FROM.date().replace(year=VALID_FROM.year - 15)
    fifteen_that_day = consent(child={"personnummer": pnr(born)})
    assert broken_field(fifteen_that_day) == "grantors"
    fourteen_that_day = consent(child={"personnummer": pnr(born + timedelta(days=1))})
    check_grant(fourteen_that_day, settings=SETTINGS, now=NOW)
    lower_age = ConsentSettings(org="school", mature_age=10)
    assert broken_field(consent(), settings=lower_age) == "grantors"


def test_a_younger_childs_view_must_be_recorded() -> None:
    assert broken_field(consent(child_view=None)) == "child_view"
    assert broken_field(consent(child_view={"heard": False})) == "child_view.note"
    assert broken_field(consent(child_view={"heard": False, "note": "   "})) == "child_view.note"
    check_grant(consent(child_view={"heard": False, "note": "Barnet är för litet för att tillfrågas."}),
                settings=SETTINGS, now=NOW)


def test_the_period_must_be_forward_bounded_and_not_over() -> None:
    assert broken_field(consent(valid_until=VALID_FROM.isoformat())) == "valid_until"
    too_long = (VALID_FROM + timedelta(days=SETTINGS.max_validity_days, seconds=1)).isoformat()
    assert broken_field(consent(valid_until=too_long)) == "valid_until"
    longest = (VALID_FROM + timedelta(days=SETTINGS.max_validity_days)).isoformat()
    check_grant(consent(valid_until=longest), settings=SETTINGS, now=NOW)
    past = consent(valid_from=(NOW - timedelta(days=30)).isoformat(), valid_until=(NOW - timedelta(days=1)).isoformat())
    assert broken_field(past) == "valid_until"


def test_a_case_id_must_not_be_an_identity_number() -> None:
    assert broken_field(consent(case_id=YOUNG.replace("-", ""))) == "case_id"
    assert broken_field(consent(case_id=f"case-{YOUNG[2:]}")) == "case_id"
    check_grant(consent(case_id="0b8f0d4e-5a4c-4b9e-9d1c-201304121234"), settings=SETTINGS, now=NOW)


def test_form_rules_are_enforced_by_the_model() -> None:
    from pydantic import ValidationError

    for changes in ({"categories": []}, {"categories": ["everything"]}, {"receiving_orgs": []},
                    {"purpose": "research"}, {"custody": "shared"}, {"valid_from": "2027-06-15T10:00:00"},
                    {"grantors": [{"role": "neighbour", "name": "X", "given_at": "2026-01-10T09:00:00Z"}]}):
        with pytest.raises(ValidationError):
            consent(**changes)
