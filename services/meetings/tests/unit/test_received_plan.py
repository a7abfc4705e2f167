"""A received plan: only a newer version replaces it, and one the holder could not have written is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, SQLModel, create_engine

from tillsammans_common.events import Envelope
from tillsammans_common.events.meetings import ChildIdentity, SharedPlanItem, SipPlanShared
from tillsammans_common.messaging.refusals import Reject
from tillsammans_meetings.models import ReceivedPlan
from tillsammans_meetings.sip import receive_plan

PLAN_ID = str(uuid.uuid4())


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine, tables=[ReceivedPlan.__table__])
    with Session(engine) as session:
        yield session


def _plan(version: int, status: str = "planned", action: str = "Närvaroplan") -> SipPlanShared:
    return SipPlanShared(
        plan_id=PLAN_ID, version=version, kind="sip", scheduled_at=datetime(2030, 1, 1, tzinfo=UTC),
        child_key="k", child=ChildIdentity(personnummer="201304121237", name="Testbarn"),
        participants=["region", "school"],
        items=[SharedPlanItem(item_id="i-1", action=action, responsible_org="region", status=status)])


def _envelope(event: SipPlanShared, sender: str = "school") -> Envelope:
    return Envelope.wrap(event, source=f"/orgs/{sender}/meetings", subject=PLAN_ID, consent_id="c-1")


def test_only_a_newer_version_replaces_the_copy(session: Session) -> None:
    receive_plan(session, envelope=_envelope(_plan(2, action="v2")), event=_plan(2, action="v2"))
    receive_plan(session, envelope=_envelope(_plan(1, action="v1")), event=_plan(1, action="v1"))
    receive_plan(session, envelope=_envelope(_plan(2, action="again")), event=_plan(2, action="again"))
    row = session.get(ReceivedPlan, PLAN_ID)
    assert row is not None and row.version == 2 and row.items[0]["action"] == "v2"
    receive_plan(session, envelope=_envelope(_plan(3, action="v3")), event=_plan(3, action="v3"))
    assert row.version == 3 and row.items[0]["action"] == "v3"


def test_another_holder_cannot_overwrite_the_plan(session: Session) -> None:
    receive_plan(session, envelope=_envelope(_plan(1)), event=_plan(1))
    with pytest.raises(Reject) as refused:
        receive_plan(session, envelope=_envelope(_plan(9), sender="social"), event=_plan(9))
    assert refused.value.code == "other_holder"


def test_an_unknown_item_status_is_refused(session: Session) -> None:
    with pytest.raises(Reject) as refused:
        receive_plan(session, envelope=_envelope(_plan(1, status="bogus")), event=_plan(1, status="bogus"))
    assert refused.value.code == "invalid_status"
    assert session.get(ReceivedPlan, PLAN_ID) is None
