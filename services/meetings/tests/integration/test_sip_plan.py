"""The SIP at its holder, against a real nats-server and a real SQLite file: the four things a SIP states, the
printed plan, own items only, the plan shared under purpose sip, the follow-up as a meeting of its own, and the
overdue scheduler on a clock the test controls (across a restart, and two instances on one database)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from tillsammans_common.db import make_engine
from tillsammans_common.events import Envelope
from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import bearer, engine_of
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.follow_ups import mark_overdue
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import Meeting
from tillsammans_meetings.scheduler import FollowUpScheduler

BBA = bearer("school", "bba", "bba.norrskolan")
Factory = Callable[..., Any]
SIP_CATEGORIES = ["identity", "concern", "mapping_summary"]  # the invitations to a SIP meeting need all three


@pytest.fixture
def client(tmp_path: Path, nats_url: str, with_consent: Factory) -> Any:
    settings = MeetingsSettings(org="school", nats_url=nats_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as c, with_consent(c):
        yield c


def _events(client: TestClient, event_type: str) -> list[Envelope]:
    with Session(engine_of(client)) as session:
        rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.seq))).all()
    return [Envelope.from_bytes(row.body) for row in rows if row.nats_subject.endswith("." + event_type)]


def _sip(client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory, *,
         coordinator: dict[str, str] | None = None) -> dict[str, Any]:
    seed(client)
    # A SIP meeting's invitations and plan rest on a consent for purpose sip (decision 24).
    client.app.state.sip_consent = grant(  # type: ignore[attr-defined]
        client, receiving=["region"], categories=SIP_CATEGORIES, purpose="sip", share=False)
    called = client.post("/meetings", json=meeting_body("region", kind="sip"), headers=BBA)
    assert called.status_code == 201, called.text
    meeting: dict[str, Any] = called.json()
    appointed = coordinator or {"org": "school", "user": "bba.norrskolan"}
    response = client.put(f"/meetings/{meeting['id']}/coordinator", headers=BBA, json={
        "child_wish": {"org": appointed["org"], "person": appointed["user"]}, "appointed": appointed})
    assert response.status_code == 200, response.text
    return meeting


def _item(client: TestClient, meeting_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/meetings/{meeting_id}/plan-items", headers=BBA, json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_plan_states_the_four_things_is_shared_under_sip_and_prints_for_the_family(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory,
        caplog: pytest.LogCaptureFixture) -> None:
    meeting_id = _sip(client, seed, grant, meeting_body)["id"]
    outside = client.put(f"/meetings/{meeting_id}/overall-responsibility", headers=BBA, json={"org": "social"})
    assert outside.status_code == 422 and outside.json()["errors"][0]["field"] == "org"
    overall = client.put(f"/meetings/{meeting_id}/overall-responsibility", headers=BBA, json={"org": "region"})
    assert overall.status_code == 200, overall.text

    _item(client, meeting_id, action="<b>Närvaroplan</b>", responsible_org="school",
          responsible_person="mentor.anna", due="2030-01-31")
    _item(client, meeting_id, action="Utredning hos BUP", responsible_org="region", responsible_person="BUP-läkare")
    nameless = client.post(f"/meetings/{meeting_id}/plan-items", headers=BBA,
                           json={"action": "Läxhjälp", "responsible_org": "others"})
    assert nameless.status_code == 422 and nameless.json()["errors"][0]["field"] == "responsible_party"
    misplaced = client.post(f"/meetings/{meeting_id}/plan-items", headers=BBA, json={
        "action": "Samtal", "responsible_org": "region", "responsible_party": "vårdnadshavare"})
    assert misplaced.status_code == 422 and misplaced.json()["errors"][0]["field"] == "responsible_party"
    _item(client, meeting_id, action="Läxhjälp", responsible_org="others", responsible_party="Föreningen Läxis")

    plan = client.get(f"/meetings/{meeting_id}/plan", headers=BBA).json()
    assert plan["kind"] == "sip" and plan["overall_responsible_org"] == "region"
    assert (plan["coordinator_org"], plan["coordinator_user"]) == ("school", "bba.norrskolan")
    assert [(i["responsible_org"], i["responsible_party"], i["status"]) for i in plan["items"]] == [
        ("school", None, "planned"), ("region", None, "planned"), ("others", "Föreningen Läxis", "planned")]
    # Coordinator, overall responsibility and three items: each a change, each a new version shared.
    assert plan["version"] == 5
    shared = _events(client, "meetings.sip.plan.v1")
    assert [e.data["version"] for e in shared] == [1, 2, 3, 4, 5]
    newest = shared[-1]
    sip_consent = plan["shared_with"][0]["consent_id"]
    assert plan["shared_with"] == [{"org": "region", "version": 5, "consent_id": sip_consent, "refused": None}]
    assert newest.consentid == sip_consent and newest.subject == meeting_id
    assert newest.data["participants"] == ["region", "school"] and len(newest.data["items"]) == 3
    assert "case-1" not in newest.to_bytes().decode()

    caplog.set_level(logging.DEBUG)
    printed = client.get(f"/meetings/{meeting_id}/plan.html", headers=BBA)
    assert printed.status_code == 200 and printed.headers["content-type"].startswith("text/html")
    page = printed.text
    # The four things (SoL 2 kap. 7 §, HSL 16 kap. 4 §), for the family, who may read their child's name.
    assert "Testbarn Testsson" in page
    assert "Insatser och ansvarig huvudman" in page and "Utredning hos BUP" in page
    assert "Insatser av andra" in page and "Föreningen Läxis" in page
    assert "Huvudman med övergripande ansvar</h2><p>region" in page
    assert "Samordningsperson</h2><p>bba.norrskolan (school)" in page
    assert "&lt;b&gt;Närvaroplan&lt;/b&gt;" in page and "<b>Närvaroplan" not in page
    assert not [r for r in caplog.records if "Testbarn" in r.getMessage() or "Testbarn" in str(r.__dict__)]
    assert client.get(f"/meetings/{meeting_id}/plan.html",
                      headers=bearer("school", "professional", "mentor.anna")).status_code == 403


def test_once_the_sip_consent_is_withdrawn_the_plan_stays_home_and_says_why(
        client: TestClient, seed: Factory, grant: Factory, withdraw: Factory, meeting_body: Factory) -> None:
    meeting_id = _sip(client, seed, grant, meeting_body)["id"]
    shared_before = len(_events(client, "meetings.sip.plan.v1"))  # the plan as it stood at the appointment
    withdraw(client, client.app.state.sip_consent)  # type: ignore[attr-defined]
    _item(client, meeting_id, action="Närvaroplan", responsible_org="school")
    plan = client.get(f"/meetings/{meeting_id}/plan", headers=BBA).json()
    assert plan["shared_with"][0]["org"] == "region" and plan["shared_with"][0]["consent_id"] is None
    assert plan["shared_with"][0]["refused"]
    assert len(_events(client, "meetings.sip.plan.v1")) == shared_before


def test_each_principal_moves_only_its_own_items(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    meeting_id = _sip(client, seed, grant, meeting_body)["id"]
    own = _item(client, meeting_id, action="Närvaroplan", responsible_org="school")
    regions = _item(client, meeting_id, action="Utredning", responsible_org="region")
    others = _item(client, meeting_id, action="Läxhjälp", responsible_org="others", responsible_party="Läxis")

    def move(item: dict[str, Any], status: str) -> Any:
        return client.post(f"/meetings/{meeting_id}/plan-items/{item['id']}/status", headers=BBA,
                           json={"status": status})

    assert move(own, "in_progress").json()["status"] == "in_progress"
    assert move(own, "done").json()["status"] == "done"
    reopened = move(own, "in_progress")
    assert reopened.status_code == 409 and "done" in reopened.json()["detail"]
    refused = move(regions, "done")
    assert refused.status_code == 403 and "region" in refused.json()["detail"]
    assert move(others, "done").status_code == 200  # the holder records what others did
    assert client.post(f"/meetings/{meeting_id}/plan-items/nope/status", headers=BBA,
                       json={"status": "done"}).status_code == 404
    items = {i["id"]: i["status"] for i in client.get(f"/meetings/{meeting_id}/plan", headers=BBA).json()["items"]}
    assert items == {own["id"]: "done", regions["id"]: "planned", others["id"]: "done"}
    changed = [e.data for e in _events(client, "meetings.plan_item.status_changed.v1")]
    assert [(c["plan_item_id"], c["status"]) for c in changed] == [
        (own["id"], "in_progress"), (own["id"], "done"), (others["id"], "done")]
    # A cancelled meeting's plan no longer changes (the cancel reached every invited organisation).
    assert client.post(f"/meetings/{meeting_id}/cancel", headers=BBA,
                       json={"reason": "Familjen flyttar"}).status_code == 200
    assert client.put(f"/meetings/{meeting_id}/overall-responsibility", headers=BBA,
                      json={"org": "school"}).status_code == 409
    stopped = client.post(f"/meetings/{meeting_id}/plan-items/{others['id']}/status", headers=BBA,
                          json={"status": "planned"})
    assert stopped.status_code == 409 and "cancelled" in stopped.json()["detail"]


def test_a_follow_up_is_a_meeting_of_its_own_held_once(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    meeting_id = _sip(client, seed, grant, meeting_body)["id"]
    at = datetime(2030, 2, 1, 9, tzinfo=UTC)
    booked = client.post(f"/meetings/{meeting_id}/follow-up", headers=BBA, json={"follow_up_at": at.isoformat()})
    assert booked.status_code == 200, booked.text
    follow_up_id = booked.json()["follow_up_id"]
    follow_up = client.get(f"/meetings/{follow_up_id}", headers=BBA).json()
    assert follow_up["kind"] == "follow_up" and follow_up["follow_up_of"] == meeting_id
    assert datetime.fromisoformat(follow_up["scheduled_at"]) == at and follow_up["invitations"] == []
    moved = client.post(f"/meetings/{meeting_id}/follow-up", headers=BBA,
                        json={"follow_up_at": (at + timedelta(days=7)).isoformat()})
    assert moved.json()["follow_up_id"] == follow_up_id
    assert datetime.fromisoformat(client.get(f"/meetings/{follow_up_id}", headers=BBA).json()["scheduled_at"]) == \
        at + timedelta(days=7)
    held = client.post(f"/meetings/{follow_up_id}/held", headers=BBA)
    assert held.status_code == 200 and held.json()["held_at"] is not None
    assert client.post(f"/meetings/{follow_up_id}/held", headers=BBA).status_code == 409


def _overdue_events(client: TestClient) -> list[dict[str, Any]]:
    return [e.data for e in _events(client, "meetings.plan_item.overdue.v1")
            + _events(client, "meetings.follow_up.overdue.v1")]


def test_overdue_once_across_a_restart_and_listed_to_those_who_need_to_know(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    meeting_id = _sip(client, seed, grant, meeting_body, coordinator={"org": "school", "user": "samordnare.eva"})["id"]
    early = _item(client, meeting_id, action="Närvaroplan", responsible_org="school", due="2030-01-10")
    late = _item(client, meeting_id, action="Utredning", responsible_org="region", due="2030-03-01")
    _item(client, meeting_id, action="Samtal", responsible_org="school")  # no due date: never overdue
    follow_up_id = client.post(f"/meetings/{meeting_id}/follow-up", headers=BBA, json={
        "follow_up_at": "2030-02-01T09:00:00+00:00"}).json()["follow_up_id"]
    settings = client.app.state.settings  # type: ignore[attr-defined]
    clock = [datetime(2030, 1, 10, 23, 59, tzinfo=UTC)]
    first = FollowUpScheduler(engine_of(client), settings, now=lambda: clock[0])

    def run(scheduler: FollowUpScheduler) -> int:
        marked: int = client.portal.call(scheduler.run_once)  # type: ignore[union-attr]
        return marked

    assert run(first) == 0  # due the 10th: overdue once the day has passed, not during it
    clock[0] = datetime(2030, 1, 11, 0, 1, tzinfo=UTC)
    assert run(first) == 1 and run(first) == 0
    assert [(e["plan_item_id"], e["due"]) for e in _overdue_events(client)] == [(early["id"], "2030-01-10")]

    # A restart: a new scheduler on its own connection to the same database carries on from what it holds.
    restarted_engine = make_engine(str(engine_of(client).url))
    restarted = FollowUpScheduler(restarted_engine, settings, now=lambda: clock[0])
    assert run(restarted) == 0
    clock[0] = datetime(2030, 2, 1, 9, 1, tzinfo=UTC)
    assert run(restarted) == 1 and run(first) == 0
    overdue = _overdue_events(client)
    assert len(overdue) == 2 and overdue[1]["meeting_id"] == follow_up_id
    assert overdue[1]["follow_up_of"] == meeting_id

    listed = client.get("/follow-ups?overdue=true", headers=BBA).json()
    assert [f["id"] for f in listed["follow_ups"]] == [follow_up_id]
    assert [i["id"] for i in listed["overdue_plan_items"]] == [early["id"]]
    coordinator = client.get("/follow-ups?overdue=true", headers=bearer("school", "coordinator", "samordnare.eva"))
    assert [f["id"] for f in coordinator.json()["follow_ups"]] == [follow_up_id]
    stranger = client.get("/follow-ups?overdue=true", headers=bearer("school", "coordinator", "annan.samordnare"))
    assert stranger.json() == {"follow_ups": [], "overdue_plan_items": [], "overdue_in_received_plans": []}

    # Done and held: no longer overdue, and nothing is announced again.
    client.post(f"/meetings/{meeting_id}/plan-items/{early['id']}/status", headers=BBA, json={"status": "done"})
    client.post(f"/meetings/{follow_up_id}/held", headers=BBA)
    assert client.get("/follow-ups?overdue=true", headers=BBA).json() == {
        "follow_ups": [], "overdue_plan_items": [], "overdue_in_received_plans": []}
    clock[0] = datetime(2030, 3, 2, tzinfo=UTC)
    assert run(restarted) == 1  # only the late item, due the 1st of March
    assert [e.data["plan_item_id"] for e in _events(client, "meetings.plan_item.overdue.v1")] == [
        early["id"], late["id"]]
    assert len(_events(client, "meetings.follow_up.overdue.v1")) == 1
    restarted_engine.dispose()


def test_two_scheduler_instances_on_one_database_announce_each_row_once(
        client: TestClient, seed: Factory, grant: Factory, meeting_body: Factory) -> None:
    meeting_id = _sip(client, seed, grant, meeting_body)["id"]
    items = [_item(client, meeting_id, action=f"Insats {n}", responsible_org="school",
                   due=(date(2030, 1, 1) + timedelta(days=n)).isoformat())["id"] for n in range(12)]
    settings = client.app.state.settings  # type: ignore[attr-defined]
    now = datetime(2030, 6, 1, tzinfo=UTC)
    engines = [make_engine(str(engine_of(client).url)) for _ in range(2)]
    start = threading.Barrier(2)
    marked: list[int] = []

    def instance(index: int) -> None:
        start.wait()
        marked.append(mark_overdue(engines[index], settings=settings, now=now))

    threads = [threading.Thread(target=instance, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(marked) == 12
    announced = [e["plan_item_id"] for e in _overdue_events(client)]
    assert sorted(announced) == sorted(items)
    with Session(engine_of(client)) as session:
        assert session.get(Meeting, meeting_id) is not None
    for engine in engines:
        engine.dispose()
