"""Who is the child's BBA: the routing rules of decision 20, as a table and one pure function.

Seed 001 ("Who is the BBA") holds the BBA by the child's stage: BVC and preschool before school,
the school from förskoleklass to year 9, the upper secondary school, and KAA for young people not
in upper secondary. This module decides from the directory's units alone; it reads no database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tillsammans_intake.models import ChildStage, RoutedBy, Unit, UnitKind


@dataclass(frozen=True)
class StageRule:
    """One row of the table: a stage, the unit kinds that hold its BBA, and the ages it usually covers."""

    stage: ChildStage
    kinds: tuple[UnitKind, ...]
    usual_ages: range


RULES: tuple[StageRule, ...] = (
    StageRule(ChildStage.PRESCHOOL_AGE, (UnitKind.CHILD_HEALTH, UnitKind.PRESCHOOL), range(0, 6)),
    StageRule(ChildStage.FORSKOLEKLASS, (UnitKind.SCHOOL,), range(6, 7)),
    StageRule(ChildStage.COMPULSORY_SCHOOL, (UnitKind.SCHOOL,), range(7, 16)),
    StageRule(ChildStage.UPPER_SECONDARY, (UnitKind.UPPER_SECONDARY,), range(16, 20)),
    StageRule(ChildStage.OUTSIDE_UPPER_SECONDARY, (UnitKind.KAA,), range(16, 20)),
)
"""The stage table. Ages 16-19 match two rows on purpose: age alone cannot tell upper secondary from KAA."""

KIND_AGES: dict[UnitKind, range] = {
    UnitKind.CHILD_HEALTH: range(0, 6),
    UnitKind.PRESCHOOL: range(1, 6),
    UnitKind.SCHOOL: range(6, 16),
    UnitKind.UPPER_SECONDARY: range(16, 20),
    UnitKind.KAA: range(16, 20),
    UnitKind.INTAKE_DESK: range(0, 20),
    UnitKind.OTHER: range(0, 20),
}
"""The ages a unit of each kind serves unless the directory says otherwise (BVC 0-5, preschool 1-5, F-9, ...)."""


@dataclass(frozen=True)
class Decision:
    """Where the rules send a concern: a unit id, or None for the organisation's intake desk, and why."""

    unit_id: str | None
    routed_by: RoutedBy


def route(units: Iterable[Unit], *, stage: ChildStage | None, age: int,
          municipality: str | None) -> Decision:
    """The one unit whose kind holds the child's stage, in the child's home municipality; else the fallback.

    A named stage picks the kinds; without one, the child's age picks every row whose usual ages hold it.
    Age then narrows the candidates to units serving it (for a named stage only when that leaves one,
    as a child can be older or younger than usual for a school form). No unit, or more than one, is the
    intake desk's, which a person then routes: a guess would send a child's concern to the wrong BBA.
    """
    if municipality is None:
        return Decision(None, RoutedBy.FALLBACK_NO_MUNICIPALITY)
    rows = [rule for rule in RULES if rule.stage == stage] if stage is not None else [
        rule for rule in RULES if age in rule.usual_ages]
    kinds = {kind for rule in rows for kind in rule.kinds}
    if not kinds:
        return Decision(None, RoutedBy.FALLBACK_NO_RULE)
    candidates = [unit for unit in units if unit.kind in kinds and unit.municipality_code == municipality]
    serving = [unit for unit in candidates if unit.min_age <= age <= unit.max_age]
    if stage is None or len(serving) == 1:
        candidates = serving
    if len(candidates) == 1:
        return Decision(candidates[0].id, RoutedBy.STAGE if stage is not None else RoutedBy.AGE)
    return Decision(None, RoutedBy.FALLBACK_AMBIGUOUS if candidates else RoutedBy.FALLBACK_NO_UNIT)
