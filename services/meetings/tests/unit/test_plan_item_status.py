"""The moves an item of the plan may make, as a table: planned -> in progress -> done, or cancelled."""

from __future__ import annotations

import pytest

from tillsammans_common.errors import Conflict
from tillsammans_meetings.models import PlanItemStatus
from tillsammans_meetings.sip import check_transition

P, G, D, C = PlanItemStatus.PLANNED, PlanItemStatus.IN_PROGRESS, PlanItemStatus.DONE, PlanItemStatus.CANCELLED

# P planned, G going (in progress), D done, C cancelled. (from, to): allowed? Written out by hand, every
# pair, so a change of ITEM_TRANSITIONS must change this too.
TABLE: dict[tuple[PlanItemStatus, PlanItemStatus], bool] = {
    (P, P): False, (P, G): True, (P, D): True, (P, C): True,
    (G, P): False, (G, G): False, (G, D): True, (G, C): True,
    (D, P): False, (D, G): False, (D, D): False, (D, C): False,
    (C, P): False, (C, G): False, (C, D): False, (C, C): False,
}


def test_the_table_covers_every_pair() -> None:
    assert set(TABLE) == {(a, b) for a in PlanItemStatus for b in PlanItemStatus}


@pytest.mark.parametrize(("current", "new"), sorted(TABLE))
def test_item_status_transitions(current: PlanItemStatus, new: PlanItemStatus) -> None:
    if TABLE[(current, new)]:
        check_transition(current, new)
    else:
        with pytest.raises(Conflict):
            check_transition(current, new)
