"""The follow-up scheduler on PostgreSQL: two instances on one database announce each overdue row once."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from sqlmodel import Session, col, select

from tillsammans_common.db import make_engine, migrate
from tillsammans_common.events import Envelope
from tillsammans_common.models import OutboxMessage
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.follow_ups import mark_overdue
from tillsammans_meetings.main import VERSIONS
from tillsammans_meetings.models import Meeting, MeetingKind, PlanItem

pytestmark = pytest.mark.postgres
SERVER = os.environ.get("TILLSAMMANS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"tillsammans_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield SERVER.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_instances_on_postgres_announce_each_overdue_row_once(database_url: str) -> None:
    settings = MeetingsSettings(org="school", database_url=database_url)
    engine = make_engine(database_url)
    migrate(engine, VERSIONS)
    plan = Meeting(id=str(uuid.uuid4()), case_id="case-1", kind=MeetingKind.SIP,
                   scheduled_at=datetime(2030, 1, 1, tzinfo=UTC), called_by="bba", child_personnummer="201304121237",
                   child_name="Testbarn", child_key="k", flagged_areas=["trygghet"], concern_summary="s")
    follow_up = Meeting(id=str(uuid.uuid4()), case_id="case-1", kind=MeetingKind.FOLLOW_UP,
                        scheduled_at=datetime(2030, 2, 1, tzinfo=UTC), called_by="bba",
                        child_personnummer="201304121237", child_name="Testbarn", child_key="k",
                        flagged_areas=["trygghet"], concern_summary="s", follow_up_of=plan.id)
    items = [PlanItem(id=str(uuid.uuid4()), meeting_id=plan.id, action=f"Insats {n}", responsible_org="school",
                      due=date(2030, 1, 2) + timedelta(days=n), created_by="bba") for n in range(20)]
    item_ids, follow_up_id = sorted(item.id for item in items), follow_up.id
    with Session(engine) as session:
        session.add(plan)
        session.add(follow_up)
        session.flush()
        session.add_all(items)
        session.commit()

    engines = [make_engine(database_url) for _ in range(2)]
    start = threading.Barrier(2)
    marked: list[int] = []

    def instance(index: int) -> None:
        start.wait()
        marked.append(mark_overdue(engines[index], settings=settings, now=datetime(2030, 6, 1, tzinfo=UTC)))

    threads = [threading.Thread(target=instance, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(marked) == 21
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.seq))).all()
    announced = [Envelope.from_bytes(row.body).data for row in rows]
    assert sorted(e["plan_item_id"] for e in announced if "plan_item_id" in e) == item_ids
    assert [e["meeting_id"] for e in announced if "plan_item_id" not in e] == [follow_up_id]
    # A restarted instance finds nothing left to announce.
    assert mark_overdue(engines[0], settings=settings, now=datetime(2030, 7, 1, tzinfo=UTC)) == 0
    for each in (engine, *engines):
        each.dispose()
