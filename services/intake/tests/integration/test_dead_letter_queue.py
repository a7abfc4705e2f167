"""The DEADLETTER stream and the operator's tools on intake, served over real HTTP on a real nats-server.

Poison: a routed event for a concern that does not exist breaks the inbox's foreign key. Replaying it
after the concern exists applies it. The database fault is SQLite's own ``PRAGMA query_only``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import uvicorn
from fastapi import FastAPI
from nats.js.api import ConsumerConfig
from sqlalchemy import Engine
from sqlmodel import Session, select

from tillsammans_common.events import Envelope
from tillsammans_common.events.intake import ConcernRouted
from tillsammans_common.messaging.deadletters import DEADLETTER_STREAM
from tillsammans_common.models import AuditRecord, DeadLetter
from tillsammans_common.testing import bearer, free_port, wait_for, wait_for_port
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app
from tillsammans_intake.models import Concern, InboxItem
from tillsammans_stack import cli

SUBJECT = "school.intake.concern.routed.v1"
ADMIN = bearer("school", "admin", "operator.anna")
# What the orphan's concern is created with once an operator has fixed the cause: never in any output.
CHILD = ("20130412-1237", "Alva Exempelsson")


class Served:
    """Intake on a real port (the CLI needs one), with its database engine at hand."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def engine(self) -> Engine:
        """The service's database engine."""
        engine: Engine = self.app.state.infra.engine
        return engine

    def rows(self, table: type[Any]) -> list[Any]:
        """Every row of ``table``."""
        with Session(self.engine) as session:
            return list(session.exec(select(table)).all())

    def letters(self) -> list[dict[str, Any]]:
        """The dead letters as the admin API lists them."""
        response = httpx.get(self.url + "/admin/dead-letters", headers=ADMIN)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@pytest.fixture
def intake(tmp_path: Path, nats_url: str) -> Iterator[Served]:
    settings = IntakeSettings(org="school", nats_url=nats_url, data_dir=tmp_path, max_deliveries=2,
                              redelivery_backoff_seconds=[0.05], infrastructure_retry_initial_seconds=0.05,
                              infrastructure_retry_max_seconds=0.2)
    served = Served(create_app(settings))
    served.thread.start()
    wait_for_port(served.port, timeout=30)
    wait_for(lambda: httpx.get(served.url + "/health/ready").status_code == 200, timeout=30, message="intake ready")
    yield served
    served.server.should_exit = True
    served.thread.join(timeout=30)


async def _publish(nats_url: str, body: bytes) -> None:
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().publish(SUBJECT, body, stream="EVENTS", headers={"Nats-Msg-Id": str(uuid.uuid4())})
    finally:
        await client.close()


async def _stream_and_consumer(nats_url: str) -> tuple[int, int, int]:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        letters = (await js.stream_info(DEADLETTER_STREAM)).state.messages
        consumer = await js.consumer_info("EVENTS", "intake-bba-inbox")
        return letters, consumer.num_pending or 0, consumer.num_ack_pending or 0
    finally:
        await client.close()


def _orphan(nats_url: str, concern_id: str) -> Envelope:
    envelope = Envelope.wrap(ConcernRouted(concern_id=concern_id, case_id=f"case-{concern_id}", unit_id="norrskolan",
                                           bba_user="bba.norrskolan"), source="/orgs/school/intake",
                             subject=f"case-{concern_id}")
    asyncio.run(_publish(nats_url, envelope.to_bytes()))
    return envelope


def _create_concern(served: Served, concern_id: str) -> None:
    # The operator's fix of the cause: the concern the routed event names now exists.
    with Session(served.engine) as session:
        session.add(Concern(id=concern_id, case_id=f"case-{concern_id}", unit_id="norrskolan",
                            child_personnummer=CHILD[0].replace("-", ""), child_name=CHILD[1],
                            wheel_areas=["trygghet"], description="x", raised_by_user="mentor",
                            raised_by_role="professional", bba_user="bba.norrskolan"))
        session.commit()


def _cli(capsys: pytest.CaptureFixture[str], served: Served, *args: str) -> tuple[int, str]:
    code = cli.main(["dead-letters", *args, "--org", "school", "--service", "intake", "--url", served.url,
                     "--user", "operator.cli"])
    out, err = capsys.readouterr()
    assert not [value for value in CHILD if value in out + err], out + err
    return code, out + err


def _letter_of(served: Served, envelope: Envelope) -> dict[str, Any] | None:
    return next((item for item in served.letters() if item["event_id"] == envelope.id), None)


def test_list_inspect_replay_and_discard_through_the_api_and_the_cli(
        intake: Served, nats_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = _orphan(nats_url, "missing-1")
    letter = wait_for(lambda: _letter_of(intake, first), message="the first dead letter")
    assert letter["consumer"] == "intake-bba-inbox" and letter["subject"] == SUBJECT
    assert letter["reason"] == "IntegrityError" and letter["reason_code"] == "not_applied"
    assert letter["deliveries"] == 2 and letter["case_id"] == "case-missing-1"
    assert letter["data_kept"] and letter["replayable"] and letter["state"] == "dead"
    assert "data" not in letter and "body" not in letter
    # Only an admin of this organisation.
    assert httpx.get(intake.url + "/admin/dead-letters", headers=bearer("school", "bba")).status_code == 403
    assert httpx.get(intake.url + "/admin/dead-letters", headers=bearer("region", "admin")).status_code == 403
    assert httpx.get(intake.url + "/admin/dead-letters").status_code == 401

    # API: inspect, then replay once the cause is fixed: applied, and the letter is gone.
    shown = httpx.get(f"{intake.url}/admin/dead-letters/{letter['id']}", headers=ADMIN)
    assert shown.status_code == 200 and shown.json() == letter
    _create_concern(intake, "missing-1")
    replayed = httpx.post(f"{intake.url}/admin/dead-letters/{letter['id']}/replay", headers=ADMIN)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"id": letter["id"], "subject": SUBJECT, "event_id": first.id}
    wait_for(lambda: len(intake.rows(InboxItem)) == 1, message="the replayed event applied")
    assert _letter_of(intake, first) is None
    assert httpx.get(f"{intake.url}/admin/dead-letters/{letter['id']}", headers=ADMIN).status_code == 404
    assert [row.event_id for row in intake.rows(DeadLetter)] == []  # the local copy went with it

    # CLI: list, show, replay, discard.
    second, third = _orphan(nats_url, "missing-2"), _orphan(nats_url, "missing-3")
    wait_for(lambda: _letter_of(intake, second) and _letter_of(intake, third), message="two more dead letters")
    code, out = _cli(capsys, intake, "list")
    assert code == 0
    listed = json.loads(out)
    assert {item["event_id"] for item in listed["dead_letters"]} == {second.id, third.id}
    assert listed["parked"] == []
    second_id = next(item["id"] for item in listed["dead_letters"] if item["event_id"] == second.id)
    third_id = next(item["id"] for item in listed["dead_letters"] if item["event_id"] == third.id)
    code, out = _cli(capsys, intake, "show", str(second_id))
    assert code == 0 and json.loads(out)["event_id"] == second.id
    _create_concern(intake, "missing-2")
    code, out = _cli(capsys, intake, "replay", str(second_id))
    assert code == 0 and json.loads(out)["event_id"] == second.id
    wait_for(lambda: len(intake.rows(InboxItem)) == 2, message="the event replayed by the CLI applied")
    code, out = _cli(capsys, intake, "discard", str(third_id))
    assert code == 0 and json.loads(out) == {"discarded": third_id}
    assert intake.letters() == []
    code, out = _cli(capsys, intake, "show", str(third_id))
    assert code == 1 and "404" in out
    assert len(intake.rows(InboxItem)) == 2  # the discarded one was never applied

    audited = [(row.user, row.action, row.outcome) for row in intake.rows(AuditRecord)
               if row.action.startswith(("dead_letter", "parked"))]
    assert ("operator.anna", "dead_letter.replay", "ok") in audited
    assert ("operator.cli", "dead_letters.list", "ok") in audited
    assert ("operator.cli", "parked.list", "ok") in audited
    assert ("operator.cli", "dead_letter.show", "ok") in audited
    assert ("operator.cli", "dead_letter.replay", "ok") in audited
    assert ("operator.cli", "dead_letter.discard", "ok") in audited
    assert ("operator.cli", "dead_letter.show", "not_found") in audited


def test_a_dead_letter_is_kept_while_the_database_cannot_be_written(intake: Served, nats_url: str) -> None:
    with intake.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA query_only=1")
    # Not even an envelope: refused on its merits at once, without the database.
    asyncio.run(_publish(nats_url, b"{not json"))
    wait_for(lambda: asyncio.run(_stream_and_consumer(nats_url)) == (1, 0, 0), timeout=30,
             message="the dead letter in its stream and the message acknowledged")
    assert intake.rows(DeadLetter) == []  # the local copy could not be written; the stream holds the letter
    # The operator's tools audit every call, so they wait for the database too.
    assert httpx.get(intake.url + "/admin/dead-letters", headers=ADMIN).status_code == 503

    with intake.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA query_only=0")
    letters = intake.letters()
    assert [(item["event_id"], item["reason_code"], item["subject"]) for item in letters] == [
        (None, "invalid_message", SUBJECT)]


async def _exhaust_a_limited_consumer(nats_url: str, body: bytes) -> None:
    # What only a durable created by hand (or by an older version) can do: give up after one delivery.
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await js.publish("school.probe.v1", body, stream="EVENTS")
        subscription = await js.pull_subscribe("school.probe.v1", durable="intake-probe",
                                               config=ConsumerConfig(max_deliver=1, ack_wait=1))
        for message in await subscription.fetch(1, timeout=5):
            await message.nak()
        # The broker notices the limit when it would deliver the message again, i.e. on the next pull.
        with contextlib.suppress(nats.errors.TimeoutError):
            await subscription.fetch(1, timeout=1)
    finally:
        await client.close()


def test_a_message_the_broker_gave_up_on_is_dead_lettered_from_its_advisory_without_data(
        intake: Served, nats_url: str) -> None:
    body = Envelope(source="/orgs/school/intake", type="school.probe.v1", subject="case-probe",
                    data={"personnummer": CHILD[0], "name": CHILD[1]}).to_bytes()
    asyncio.run(_exhaust_a_limited_consumer(nats_url, body))
    letters = wait_for(intake.letters, message="the advisory's dead letter")
    assert [(item["consumer"], item["reason_code"], item["data_kept"], item["replayable"], item["subject"])
            for item in letters] == [("intake-probe", "max_deliveries", False, False, "school.probe.v1")]
    shown = httpx.get(f"{intake.url}/admin/dead-letters/{letters[0]['id']}", headers=ADMIN)
    assert shown.status_code == 200 and not [value for value in CHILD if value in shown.text]
    assert httpx.post(f"{intake.url}/admin/dead-letters/{letters[0]['id']}/replay", headers=ADMIN).status_code == 409
