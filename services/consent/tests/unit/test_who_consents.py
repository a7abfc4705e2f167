"""Who consents, as a table: custody, the child's age against the organisation's mature age, the child's view.

Pure rules (``check_grant``), no database: each row is a consent and the field a refusal names (None: valid).
"""

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
VALID_FROM = datetime(NOW.year + 1, 6, 15, 10, 0, tzinfo=UTC)
SETTINGS = ConsentSettings(org="school", peers=["school", "region", "social"], mature_age=15)


def pnr(age: int) -> str:
    """A personnummer of a child who is ``age`` on VALID_FROM (born in March)."""
    born = date(VALID_FROM.year - age, 3, 1)
    return f"{born:%Y%m%d}-238{luhn_check_digit(born.strftime('%y%m%d') + '238')}"


MOTHER = {"role": "guardian", "name": "Vårdnadshavare Ett", "given_at": "2026-01-10T09:00:00+01:00"}
FATHER = {"role": "guardian", "name": "Vårdnadshavare Två", "given_at": "2026-01-10T09:05:00+01:00"}
CHILD = {"role": "child", "name": "Barnet", "given_at": "2026-01-10T09:10:00+01:00"}
YES = {"heard": True, "agrees": True}
NO = {"heard": True, "agrees": False, "note": "Vill inte att BUP får veta."}
UNDECIDED = {"heard": True}
NOT_HEARD = {"heard": False, "note": "Barnet är två år."}

RULES: list[tuple[str, int, str, list[dict[str, Any]], dict[str, Any] | None, str | None]] = [
    # what the row shows,                                   age, custody, grantors,      child_view, refused field
    ("joint custody: both guardians", 10, "joint", [MOTHER, FATHER], YES, None),
    ("joint custody: one guardian is not enough", 10, "joint", [MOTHER], YES, "grantors"),
    ("joint custody: the same guardian twice is one", 10, "joint", [MOTHER, {**MOTHER, "name": "vårdnadshavare ETT"}],
     YES, "grantors"),
    ("sole custody: the one guardian", 10, "sole", [MOTHER], YES, None),
    ("other custody: a guardian", 10, "other", [MOTHER], YES, None),
    ("younger child: no guardian, no consent", 10, "sole", [CHILD], YES, "grantors"),
    ("younger child's no is recorded, the guardians decide", 10, "joint", [MOTHER, FATHER], NO, None),
    ("younger child heard without an answer", 10, "joint", [MOTHER, FATHER], UNDECIDED, None),
    ("younger child not heard, with the reason", 2, "sole", [MOTHER], NOT_HEARD, None),
    ("younger child: the view must be recorded", 10, "sole", [MOTHER], None, "child_view"),
    ("younger child not heard needs a reason", 10, "sole", [MOTHER], {"heard": False}, "child_view.note"),
    ("the day before the mature age counts as younger", 14, "sole", [MOTHER], YES, None),
    ("mature child consents alone", 15, "joint", [CHILD], None, None),
    ("mature child alone, view recorded", 16, "joint", [CHILD], YES, None),
    ("mature child with the guardians too", 17, "joint", [MOTHER, FATHER, CHILD], None, None),
    ("mature child: the guardians cannot consent instead", 16, "joint", [MOTHER, FATHER], None, "grantors"),
    ("mature child's no is a no, even with a child grantor", 16, "joint", [CHILD], NO, "child_view.agrees"),
    ("mature child's no is a no over the guardians' yes", 16, "joint", [MOTHER, FATHER], NO, "child_view.agrees"),
]


def _consent(age: int, custody: str, grantors: list[dict[str, Any]], view: dict[str, Any] | None) -> ConsentCreate:
    return ConsentCreate.model_validate({
        "case_id": "case-1", "child": {"personnummer": pnr(age)}, "custody": custody, "grantors": grantors,
        "child_view": view, "receiving_orgs": ["region"], "categories": ["concern"], "purpose": "coordination_meeting",
        "valid_from": VALID_FROM.isoformat(), "valid_until": (VALID_FROM + timedelta(days=90)).isoformat(),
    })


@pytest.mark.parametrize(("shows", "age", "custody", "grantors", "view", "refused"), RULES,
                         ids=[row[0] for row in RULES])
def test_who_consents(shows: str, age: int, custody: str, grantors: list[dict[str, Any]],
                      view: dict[str, Any] | None, refused: str | None) -> None:
    data = _consent(age, custody, grantors, view)
    if refused is None:
        check_grant(data, settings=SETTINGS, now=NOW)
        return
    with pytest.raises(InvalidField) as excinfo:
        check_grant(data, settings=SETTINGS, now=NOW)
    assert excinfo.value.extra["errors"][0]["field"] == refused


def test_the_organisation_sets_the_mature_age() -> None:
    twelve_alone = _consent(12, "joint", [CHILD], None)
    with pytest.raises(InvalidField):
        check_grant(twelve_alone, settings=SETTINGS, now=NOW)
    check_grant(twelve_alone, settings=ConsentSettings(org="school", peers=["school", "region"], mature_age=12),
                now=NOW)
