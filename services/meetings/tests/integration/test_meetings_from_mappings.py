"""A meeting called from a completed mapping (decision 24): its areas and suggested organisations are carried over.

Mapping and meetings of one organisation run side by side on a real nats-server: meetings learns
the completed mapping from mapping's own event, as in production, and nobody retypes anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tillsammans_common.events import Envelope
from tillsammans_common.events.mapping import MappingCompleted
from tillsammans_common.events.meetings import InvitationSent
from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import Federation, bearer, count_rows, engine_of, seed_case, wait_for
from tillsammans_mapping.config import MappingSettings
from tillsammans_mapping.main import create_app as create_mapping_app
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import CompletedMapping, Meeting
from tillsammans_meetings.service import keep_completed_mapping

from ..conftest import CHILD

SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
OTHER_CHILD = {"personnummer": "20100101-0006", "name": "Annat Barn"}
ANSWERS = {"has_all_information": True, "obstacles": "Oro hemma.", "own_actions": "Samtal med mentor.",
           "organisation_actions": "Elevhälsan följer upp.", "help_needed": "Stöd från socialtjänst och BUP."}
Factory = Any


@contextmanager
def _school(federation: Federation, with_consent: Factory) -> Iterator[tuple[TestClient, TestClient]]:
    """School's mapping and meetings (with its consent service) on one broker account and data folder."""
    with (TestClient(create_mapping_app(MappingSettings(**federation.settings("school")))) as mapping,
          TestClient(create_app(MeetingsSettings(**federation.settings("school")))) as meetings,
          with_consent(meetings)):
        yield mapping, meetings


def _completed_mapping(mapping: TestClient, meetings: TestClient, *, case_id: str = "case-1",
                       personnummer: str = CHILD["personnummer"], flag: tuple[str, ...] = ("hemmet", "relationer"),
                       ) -> dict[str, Any]:
    """Map the child (Eskilstuna) with ``flag`` flagged, complete it, and wait until meetings knows of it."""
    seed_case(engine_of(mapping), mapping.app.state.settings,  # type: ignore[attr-defined]
              case_id=case_id, personnummer=personnummer, municipality_code="0484")
    opened = mapping.post("/mappings", json={"case_id": case_id}, headers=SCHOOL_BBA)
    assert opened.status_code == 201, opened.text
    mapping_id = opened.json()["id"]
    for area in ("larande", *flag):
        level = "no_concern" if area == "larande" else "serious_concern"
        put = mapping.put(f"/mappings/{mapping_id}/areas/{area}", json={"level": level}, headers=SCHOOL_BBA)
        assert put.status_code == 200, put.text
    assert mapping.put(f"/mappings/{mapping_id}/questions", json=ANSWERS, headers=SCHOOL_BBA).status_code == 200
    completed = mapping.post(f"/mappings/{mapping_id}/complete", json={"trappan_step": 2}, headers=SCHOOL_BBA)
    assert completed.status_code == 200, completed.text

    def known() -> bool:
        with Session(engine_of(meetings)) as session:
            return session.get(CompletedMapping, mapping_id) is not None

    wait_for(known, message="the completed mapping at meetings")
    body: dict[str, Any] = completed.json()
    return body


def _call(meetings: TestClient, mapping_id: str | None, **fields: Any) -> Any:
    body = {"case_id": "case-1", "kind": "samverkansmote", "scheduled_at": "2030-03-01T09:00:00+01:00",
            "child": CHILD, "mapping_id": mapping_id, "concern_summary": "Oro hemma.", **fields}
    return meetings.post("/meetings", json=body, headers=SCHOOL_BBA)


def test_a_meeting_called_with_only_the_mapping_carries_its_areas_and_organisations(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory) -> None:
    with _school(federation, with_consent) as (mapping, meetings):
        seed(meetings)
        completed = _completed_mapping(mapping, meetings)
        assert completed["suggested_orgs"] == ["social", "region"]
        grant(meetings, receiving=["region", "social"])

        called = _call(meetings, completed["id"])
        assert called.status_code == 201, called.text
        meeting = called.json()
        assert meeting["mapping_id"] == completed["id"]
        assert meeting["flagged_areas"] == ["hemmet", "relationer"]
        assert sorted(i["to_org"] for i in meeting["invitations"]) == ["region", "social"]
        assert [(s["org"], s["kind"], s["roles"], s["areas"]) for s in meeting["suggestions"]] == [
            ("social", "social_services", ["social_worker", "family_therapist"], ["hemmet", "relationer"]),
            ("region", "health_care", ["bup"], ["relationer"])]
        assert meetings.get(f"/meetings/{meeting['id']}", headers=SCHOOL_BBA).json() == meeting

        # Explicit ones still win, and are checked as ever.
        narrowed = _call(meetings, completed["id"], invited_orgs=["region"], flagged_areas=["relationer"])
        assert narrowed.status_code == 201, narrowed.text
        assert [i["to_org"] for i in narrowed.json()["invitations"]] == ["region"]
        assert narrowed.json()["flagged_areas"] == ["relationer"]
        stranger = _call(meetings, completed["id"], invited_orgs=["polisen"])
        assert stranger.status_code == 422
        assert stranger.json()["errors"][0]["field"] == "invited_orgs"


def test_a_mapping_of_another_case_or_none_completed_is_refused_naming_mapping_id(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory) -> None:
    with _school(federation, with_consent) as (mapping, meetings):
        seed(meetings)
        seed(meetings, case_id="case-2", personnummer=OTHER_CHILD["personnummer"])
        grant(meetings, receiving=["region", "social"])
        others = _completed_mapping(mapping, meetings, case_id="case-2", personnummer=OTHER_CHILD["personnummer"])
        open_one = mapping.post("/mappings", json={"case_id": "case-2"}, headers=SCHOOL_BBA).json()

        for mapping_id in (others["id"], open_one["id"], "no-such-mapping"):
            refused = _call(meetings, mapping_id)
            assert refused.status_code == 422, refused.text
            assert refused.json()["errors"][0]["field"] == "mapping_id"
        # Without a mapping, the organisations and areas must be named.
        bare = _call(meetings, None)
        assert bare.status_code == 422 and bare.json()["errors"][0]["field"] == "invited_orgs"
        assert count_rows(meetings, Meeting) == 0

        # The other child's own case may be called from it: the mapping passes, and the consent service is
        # asked next (no consent is recorded in case-2, so that is where it stops).
        ok = _call(meetings, others["id"], case_id="case-2", child=OTHER_CHILD)
        assert ok.status_code == 403, ok.text
        assert ok.json()["type"].endswith("/consent-required")


def test_a_mapping_that_flags_nothing_needs_the_meeting_to_name_its_areas_and_organisations(
        federation: Federation, with_consent: Factory, seed: Factory) -> None:
    with _school(federation, with_consent) as (mapping, meetings):
        seed(meetings)
        calm = _completed_mapping(mapping, meetings, flag=())
        assert calm["suggested_orgs"] == [] and calm["suggestions"] == []
        refused = _call(meetings, calm["id"])
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "invited_orgs"
        refused = _call(meetings, calm["id"], invited_orgs=["region"])
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "flagged_areas"


def test_a_mapping_announced_before_suggestions_existed_is_called_from_by_its_org_ids(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory) -> None:
    with (TestClient(create_app(MeetingsSettings(**federation.settings("school")))) as meetings,
          with_consent(meetings)):
        seed(meetings)
        grant(meetings, receiving=["region"])
        older = MappingCompleted.model_validate({  # as mapping wrote it before decision 24: no suggestions
            "mapping_id": "mapping-before-24", "case_id": "case-1", "wheel_id": "sormland", "wheel_version": 1,
            "flagged_areas": ["halsa"], "suggested_orgs": ["region"], "trappan_step": 1})
        with Session(engine_of(meetings)) as session:
            keep_completed_mapping(session, event=older)
            keep_completed_mapping(session, event=older)  # a redelivery changes nothing
            session.commit()
        called = _call(meetings, "mapping-before-24")
        assert called.status_code == 201, called.text
        assert [i["to_org"] for i in called.json()["invitations"]] == ["region"]
        assert (called.json()["flagged_areas"], called.json()["suggestions"]) == (["halsa"], [])


def test_each_invited_organisation_learns_the_roles_the_mapping_asks_of_it(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory) -> None:
    with (_school(federation, with_consent) as (mapping, meetings),
          TestClient(create_app(MeetingsSettings(**federation.settings("region")))) as region):
        seed(meetings)
        completed = _completed_mapping(mapping, meetings)
        grant(meetings, receiving=["region", "social"])
        called = _call(meetings, completed["id"])
        assert called.status_code == 201, called.text

        coordinator = bearer("region", "coordinator", "samordnare.bvc")
        received = wait_for(lambda: region.get("/received-invitations", headers=coordinator).json(),
                            message="the invitation at region")
        assert [(item["meeting_id"], item["requested_roles"], item["flagged_areas"]) for item in received] == [
            (called.json()["id"], ["bup"], ["hemmet", "relationer"])]


def test_a_reviewed_invitation_about_a_protected_child_asks_for_the_same_roles_and_purpose(
        federation: Federation, with_consent: Factory, seed: Factory, grant: Factory) -> None:
    with _school(federation, with_consent) as (mapping, meetings):
        seed(meetings)
        completed = _completed_mapping(mapping, meetings)
        grant(meetings, receiving=["region"], purpose="sip")
        called = _call(meetings, completed["id"], kind="sip", invited_orgs=["region"],
                       child={**CHILD, "protected_identity": True})
        assert called.status_code == 201, called.text
        assert [i["status"] for i in called.json()["invitations"]] == ["awaiting_review"]
        reviewed = meetings.post(f"/meetings/{called.json()['id']}/disclosure-review", json={"decision": "approve"},
                                 headers=bearer("school", "reviewer", "registrator.per"))
        assert reviewed.status_code == 200, reviewed.text
        with Session(engine_of(meetings)) as session:
            [body] = [row.body for row in session.exec(select(OutboxMessage)).all() if row.stream == "INBOX"
                      and Envelope.from_bytes(row.body).type == InvitationSent.type]
        sent = Envelope.from_bytes(body).data
        assert (sent["kind"], sent["purpose"], sent["requested_roles"]) == ("sip", "sip", ["bup"])
