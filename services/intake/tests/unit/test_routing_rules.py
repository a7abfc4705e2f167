"""Decision 20's routing rules without a database: the table and the ties, on a made-up directory."""

from __future__ import annotations

import pytest

from tillsammans_intake.models import ChildStage, RoutedBy, Unit, UnitKind
from tillsammans_intake.routing import KIND_AGES, RULES, route


def unit(unit_id: str, kind: UnitKind, ages: range | None = None, municipality: str = "0484") -> Unit:
    """A directory unit serving ``ages`` (default: its kind's)."""
    span = ages or KIND_AGES[kind]
    return Unit(id=unit_id, name=unit_id, kind=kind, bba_user="bba." + unit_id, bba_name=unit_id,
                municipality_code=municipality, min_age=span[0], max_age=span[-1])


DIRECTORY = [
    unit("bvc", UnitKind.CHILD_HEALTH), unit("f6", UnitKind.SCHOOL, range(6, 13)),
    unit("hogstadiet", UnitKind.SCHOOL, range(13, 16)), unit("gymnasiet", UnitKind.UPPER_SECONDARY),
    unit("kaa", UnitKind.KAA), unit("desk", UnitKind.INTAKE_DESK), unit("ifo", UnitKind.OTHER),
    unit("grannskolan", UnitKind.SCHOOL, municipality="0482"),
]
S = ChildStage


@pytest.mark.parametrize(("age", "stage", "municipality", "expected"), [
    (0, None, "0484", ("bvc", RoutedBy.AGE)),
    (3, S.PRESCHOOL_AGE, "0484", ("bvc", RoutedBy.STAGE)),
    (6, None, "0484", ("f6", RoutedBy.AGE)),
    (9, S.COMPULSORY_SCHOOL, "0484", ("f6", RoutedBy.STAGE)),
    (14, S.COMPULSORY_SCHOOL, "0484", ("hogstadiet", RoutedBy.STAGE)),
    (9, S.COMPULSORY_SCHOOL, "0482", ("grannskolan", RoutedBy.STAGE)),
    (16, S.COMPULSORY_SCHOOL, "0482", ("grannskolan", RoutedBy.STAGE)),  # older than usual: the one school
    (16, S.COMPULSORY_SCHOOL, "0484", (None, RoutedBy.FALLBACK_AMBIGUOUS)),  # older than usual: which school?
    (18, S.UPPER_SECONDARY, "0484", ("gymnasiet", RoutedBy.STAGE)),
    (18, S.OUTSIDE_UPPER_SECONDARY, "0484", ("kaa", RoutedBy.STAGE)),
    (18, None, "0484", (None, RoutedBy.FALLBACK_AMBIGUOUS)),
    (4, S.PRESCHOOL_AGE, "0482", (None, RoutedBy.FALLBACK_NO_UNIT)),
    (21, None, "0484", (None, RoutedBy.FALLBACK_NO_RULE)),
    (9, S.COMPULSORY_SCHOOL, None, (None, RoutedBy.FALLBACK_NO_MUNICIPALITY)),
])
def test_rules(age: int, stage: ChildStage | None, municipality: str | None,
               expected: tuple[str | None, RoutedBy]) -> None:
    decision = route(DIRECTORY, stage=stage, age=age, municipality=municipality)
    assert (decision.unit_id, decision.routed_by) == expected


def test_every_stage_has_one_row_and_every_age_of_a_child_a_row() -> None:
    assert sorted(rule.stage for rule in RULES) == sorted(ChildStage)
    assert all(any(age in rule.usual_ages for rule in RULES) for age in range(0, 20))


def test_the_desk_and_other_units_are_never_chosen_by_a_rule() -> None:
    kinds = {kind for rule in RULES for kind in rule.kinds}
    assert UnitKind.INTAKE_DESK not in kinds and UnitKind.OTHER not in kinds
