"""The SIP every principal holds: school holds it, region and social services each keep their own copy, each in
its own database, over one broker with an account per organisation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tillsammans_common.auth import Principal, Role
from tillsammans_common.events.meetings import ChildIdentity, SipItemStatusReported, SipPlanShared
from tillsammans_common.messaging.egress import disclose, prepare_disclosure, send_receipt
from tillsammans_common.messaging.gate import DisclosureVerdict
from tillsammans_common.models import DeadLetter
from tillsammans_common.personnummer import pair_key
from tillsammans_common.testing import Federation, bearer, engine_of, tables_containing, wait_for
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app

SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
# Received plans name a child who may have no case at the receiver yet: its coordinators read them.
REGION = bearer("region", "coordinator", "samordnare.bvc")
SOCIAL = bearer("social", "coordinator", "samordnare.ifo")
Factory = Callable[..., Any]


@contextmanager
def _orgs(federation: Federation, with_consent: Factory) -> Iterator[tuple[TestClient, TestClient, TestClient]]:
    school = MeetingsSettings(**federation.settings("school"))  # type: ignore[arg-type]
    region = MeetingsSettings(**federation.settings("region"))  # type: ignore[arg-type]
    social = MeetingsSettings(**federation.settings("social"))  # type: ignore[arg-type]
    with (TestClient(create_app(school)) as school_client, with_consent(school_client),
          TestClient(create_app(region)) as region_client, TestClient(create_app(social)) as social_client):
        yield school_client, region_client, social_client


def _copy(client: TestClient, headers: dict[str, str], plan_id: str,
          check: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    response = client.get(f"/received-plans/{plan_id}", headers=headers)
    if response.status_code != 200:
        return None
    plan: dict[str, Any] = response.json()
    return plan if check(plan) else None


def _wait_copy(client: TestClient, headers: dict[str, str], plan_id: str, check: Callable[[dict[str, Any]], bool],
               message: str) -> dict[str, Any]:
    org = client.app.state.settings.org  # type: ignore[attr-defined]
    found: dict[str, Any] = wait_for(lambda: _copy(client, headers, plan_id, check), message=f"{message} at {org}")
    return found


def _statuses(plan: dict[str, Any]) -> dict[str, str]:
    return {item["item_id"]: item["status"] for item in plan["items"]}


def test_the_sip_reaches_each_participant_each_moves_only_its_own_items_and_withdrawal_purges_it(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory, withdraw: Factory,
        meeting_body: Factory) -> None:
    with _orgs(federation, with_consent) as (school, region, social):
        seed(school)
        # A SIP meeting's invitations and its plan both rest on a consent for purpose sip (decision 24).
        sip_consent = grant(school, receiving=["region", "social"],
                            categories=["identity", "concern", "mapping_summary"], purpose="sip")
        called = school.post("/meetings", json=meeting_body("region", "social", kind="sip"), headers=SCHOOL_BBA)
        assert called.status_code == 201, called.text
        plan_id = called.json()["id"]
        url = f"/meetings/{plan_id}"
        assert school.put(f"{url}/coordinator", headers=SCHOOL_BBA, json={
            "child_wish": {"org": "school", "person": "bba.norrskolan"},
            "appointed": {"org": "school", "user": "bba.norrskolan"}}).status_code == 200
        assert school.put(f"{url}/overall-responsibility", headers=SCHOOL_BBA,
                          json={"org": "social"}).status_code == 200
        items = {}
        # Region's action is already past its due date: region's own list of follow-ups shows it.
        for org, action, due in [("school", "Närvaroplan", "2030-01-31"), ("region", "Utredning hos BUP", "2024-01-31"),
                                 ("social", "Familjebehandling", "2030-01-31")]:
            added = school.post(f"{url}/plan-items", headers=SCHOOL_BBA, json={
                "action": action, "responsible_org": org, "responsible_person": f"ansvarig.{org}", "due": due})
            assert added.status_code == 201, added.text
            items[org] = added.json()["id"]
        version = school.get(f"{url}/plan", headers=SCHOOL_BBA).json()["version"]

        # The whole plan, newest version, at both participants, under the SIP consent.
        for client, headers in ((region, REGION), (social, SOCIAL)):
            copy = _wait_copy(client, headers, plan_id, lambda plan: plan["version"] == version,
                              message=f"plan version {version}")
            assert copy["from_org"] == "school" and copy["consent_id"] == sip_consent.consent_id
            assert copy["child"]["name"] == "Testbarn Testsson"
            assert copy["overall_responsible_org"] == "social" and copy["coordinator_org"] == "school"
            assert [(i["responsible_org"], i["action"]) for i in copy["items"]] == [
                ("school", "Närvaroplan"), ("region", "Utredning hos BUP"), ("social", "Familjebehandling")]
            listed = client.get("/received-plans", headers=headers).json()
            assert [p["id"] for p in listed] == [plan_id] and "child" not in listed[0]
        assert region.get("/received-plans", headers=bearer("region", "bba", "bba.bvc")).status_code == 403
        overdue = region.get("/follow-ups?overdue=true", headers=REGION).json()["overdue_in_received_plans"]
        assert [(o["plan_id"], o["from_org"], o["item_id"], o["due"]) for o in overdue] == [
            (plan_id, "school", items["region"], "2024-01-31")]
        assert social.get("/follow-ups?overdue=true", headers=SOCIAL).json()["overdue_in_received_plans"] == []
        assert region.get("/follow-ups?overdue=true", headers=bearer("region", "professional", "lakare")).json()[
            "overdue_in_received_plans"] == []

        # Region moves its own item: accepted by school, which shares the plan again with both.
        moved = region.post(f"/received-plans/{plan_id}/items/{items['region']}/status", headers=REGION,
                            json={"status": "in_progress"})
        assert moved.status_code == 202, moved.text
        wait_for(lambda: {i["id"]: i["status"] for i in school.get(f"{url}/plan", headers=SCHOOL_BBA).json()
                          ["items"]}[items["region"]] == "in_progress", message="school to apply region's report")
        for client, headers in ((region, REGION), (social, SOCIAL)):
            _wait_copy(client, headers, plan_id, lambda plan: _statuses(plan)[items["region"]] == "in_progress",
                       message="the changed plan")

        # Region may not move social's item: refused at region before anything leaves ...
        refused = region.post(f"/received-plans/{plan_id}/items/{items['social']}/status", headers=REGION,
                              json={"status": "done"})
        assert refused.status_code == 403 and "social" in refused.json()["detail"]
        # ... and at school, when a region that skips its own check sends it anyway.
        region_settings: MeetingsSettings = region.app.state.settings  # type: ignore[attr-defined]
        with Session(engine_of(region)) as session:
            send_receipt(session, SipItemStatusReported(
                plan_id=plan_id, item_id=items["social"], status="done", reporting_org="region",
                holder_org="school"), settings=region_settings, to_org="school", subject=plan_id)
            session.commit()

        def dead_letters() -> list[DeadLetter]:
            with Session(engine_of(school)) as session:
                return list(session.exec(select(DeadLetter).where(
                    DeadLetter.event_type == "meetings.sip.item_status.v1")).all())

        letters = wait_for(dead_letters, message="school to refuse region's report on social's item")
        assert letters[0].reason == "Reject: the item is another principal's"
        statuses = {i["id"]: i["status"] for i in school.get(f"{url}/plan", headers=SCHOOL_BBA).json()["items"]}
        assert statuses == {items["school"]: "planned", items["region"]: "in_progress", items["social"]: "planned"}

        # Withdrawing the SIP consent purges the plan at both receivers: only that it arrived, and when, remains.
        withdraw(school, sip_consent)
        for client, headers in ((region, REGION), (social, SOCIAL)):
            purged = _wait_copy(client, headers, plan_id, lambda plan: plan["status"] == "withdrawn",
                                message="the plan purged")
            assert purged["child"] is None and purged["items"] == [] and purged["coordinator_user"] is None
            assert purged["withdrawn_at"] is not None
            stored = tables_containing(engine_of(client), "Utredning hos BUP", "Familjebehandling")
            assert stored == []
            # The invitation under the other consent (coordination_meeting) still stands; the plan holds nothing.
            assert [t for t in tables_containing(engine_of(client), "Testbarn", "20130412")
                    if t.startswith("received_plan.")] == []

        # The holder shows the plan no longer shared under the withdrawn consent ...
        wait_for(lambda: all(share["refused"] == "consent withdrawn" for share in school.get(
            f"{url}/plan", headers=SCHOOL_BBA).json()["shared_with"]), message="school to mark its shares withdrawn")
        # ... and a later change no longer leaves: the consent service refuses it for both.
        assert school.post(f"{url}/plan-items/{items['school']}/status", headers=SCHOOL_BBA,
                           json={"status": "done"}).status_code == 200
        shared = school.get(f"{url}/plan", headers=SCHOOL_BBA).json()["shared_with"]
        assert [(s["org"], s["consent_id"], bool(s["refused"])) for s in shared] == [
            ("region", None, True), ("social", None, True)]


def test_region_refuses_a_plan_about_another_child_or_not_meant_for_it(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory) -> None:
    with _orgs(federation, with_consent) as (school, region, _social):
        seed(school)
        consent = grant(school, receiving=["region"], categories=["identity", "concern"], purpose="sip")
        settings: MeetingsSettings = school.app.state.settings  # type: ignore[attr-defined]
        consented_key = pair_key("201304121237", settings.pair_secret("region"))

        def forged(name: str, participants: list[str], personnummer: str) -> SipPlanShared:
            return SipPlanShared(
                plan_id=str(uuid.uuid4()), version=1, kind="sip", scheduled_at=datetime.now(UTC),
                child_key=consented_key, child=ChildIdentity(personnummer=personnummer, name=name),
                participants=participants, items=[])

        # A sender bug or forgery, written past the first decision: the consented child's key with another
        # child's identity, and a plan that does not name region among its participants.
        plans = [forged("Annat Barn", ["region", "school"], "201001010006"),
                 forged("Testbarn Testsson", ["school", "social"], "201304121237")]
        with Session(engine_of(school)) as session:
            for plan in plans:
                disclosure = prepare_disclosure(plan, settings=settings, to_org="region", subject=plan.plan_id,
                                                principal=Principal(org="school", user="bba", role=Role.BBA),
                                                child_ref=consent.child_key)
                disclose(session, disclosure, DisclosureVerdict(
                    decision_id="none", event_id=disclosure.envelope_id, allowed=True, consent_id=consent.consent_id,
                    reason="test", decided_at=datetime.now(UTC)), settings=settings)
            session.commit()

        def dead_letters() -> list[DeadLetter] | None:
            with Session(engine_of(region)) as session:
                letters = list(session.exec(select(DeadLetter).where(
                    DeadLetter.event_type == "meetings.sip.plan.v1")).all())
            return letters if len(letters) == 2 else None

        reasons = sorted(letter.reason for letter in wait_for(dead_letters, message="region to refuse both plans"))
        assert reasons[0].startswith("Reject: child key does not match")
        assert reasons[1].startswith("Reject: participants does not name this organisation")
        assert region.get("/received-plans", headers=REGION).json() == []
