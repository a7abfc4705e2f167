"""Consent across organisations: one nats-server with an account per organisation, as in production."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from tillsammans_common.models import DeadLetter, OutboxMessage
from tillsammans_common.personnummer import luhn_check_digit, pair_key
from tillsammans_common.testing import Federation, bearer, seed_case, wait_for
from tillsammans_consent.config import ConsentSettings

Serve = Callable[[ConsentSettings], AbstractContextManager[TestClient]]
NOW = datetime.now(UTC)
BORN = date(NOW.year - 12, 9, 3)
PERSONNUMMER = f"{BORN:%Y%m%d}-{'471'}{luhn_check_digit(BORN.strftime('%y%m%d') + '471')}"
# The key school and region share for this child (each pair of organisations has its own).
SCHOOL_REGION_KEY = pair_key(PERSONNUMMER.replace("-", ""), ConsentSettings(org="school").pair_secret("region"))


def consent_naming(*receiving_orgs: str, case_id: str) -> dict[str, Any]:
    """A valid consent for a twelve-year-old under sole custody."""
    return {
        "case_id": case_id, "child": {"personnummer": PERSONNUMMER}, "custody": "sole",
        "grantors": [{"role": "guardian", "name": "Cecilia Vårdnadshavare", "given_at": NOW.isoformat()}],
        "child_view": {"heard": True, "agrees": True}, "receiving_orgs": list(receiving_orgs),
        "categories": ["concern", "mapping_summary"], "purpose": "coordination_meeting",
        "valid_from": (NOW - timedelta(minutes=1)).isoformat(), "valid_until": (NOW + timedelta(days=90)).isoformat(),
    }


def ask(disclosing_org: str, receiving_org: str, *, key: str | None = None) -> dict[str, Any]:
    """A decision request by the child's number, or by a key as another organisation would ask it."""
    child: dict[str, Any] = {"child_key": key} if key else {"child": {"personnummer": PERSONNUMMER}}
    return {"disclosing_org": disclosing_org, "receiving_org": receiving_org, **child,
            "categories": ["concern"], "purpose": "coordination_meeting"}


def _settings(federation: Federation, org: str) -> ConsentSettings:
    return ConsentSettings(**federation.settings(org))  # type: ignore[arg-type]


def _engine(client: TestClient) -> Engine:
    return client.app.state.infra.engine  # type: ignore[attr-defined,no-any-return]


def _seed(client: TestClient, case_id: str, *, unit_id: str, bba_user: str) -> None:
    """The child's case in one organisation, as that organisation's intake announces it to its consent service."""
    seed_case(_engine(client), client.app.state.settings,  # type: ignore[attr-defined]
              case_id=case_id, personnummer=PERSONNUMMER, unit_id=unit_id, bba_user=bba_user)


def test_a_consent_reaches_the_organisations_it_names_and_its_withdrawal_follows(
        federation: Federation, serve: Serve) -> None:
    with serve(_settings(federation, "school")) as school, serve(_settings(federation, "region")) as region, \
            serve(_settings(federation, "social")) as social:
        _seed(school, "case-school-1", unit_id="norrskolan", bba_user="bba.norrskolan")
        granted = school.post("/consents", json=consent_naming("region", case_id="case-school-1"),
                              headers=bearer("school", "bba", "bba.norrskolan"))
        assert granted.status_code == 201, granted.text
        consent_id = granted.json()["id"]

        def region_decision() -> dict[str, Any]:
            response = region.post("/decisions", json=ask("school", "region", key=SCHOOL_REGION_KEY),
                                   headers=bearer("region", "professional"))
            return dict(response.json())

        decision = wait_for(lambda: region_decision()["allowed"] and region_decision(), message="replica in region")
        assert decision["consent_id"] == consent_id
        replicas = region.get("/replicas", headers=bearer("region", "bba")).json()
        assert [(r["consent_id"], r["disclosing_org"], r["status"]) for r in replicas] == [
            (consent_id, "school", "active")]
        assert PERSONNUMMER[:8] not in str(replicas)
        assert replicas[0]["child_key"] == SCHOOL_REGION_KEY and "case_id" not in replicas[0]
        assert region.post("/decisions", json=ask("school", "region"), headers=bearer("region", "bba")).json()[
            "allowed"] is True

        # Social is not named: school refuses it, and social never received the consent at all.
        not_named = school.post("/decisions", json=ask("school", "social"), headers=bearer("school", "bba")).json()
        assert not_named == {"allowed": False, "consent_id": None,
                             "reason": "consent does not name the receiving organisation"}
        at_social = social.post("/decisions", json=ask("school", "social"), headers=bearer("social", "bba")).json()
        assert at_social == {"allowed": False, "consent_id": None, "reason": "no consent recorded"}
        with Session(_engine(school)) as session:
            to_social = session.exec(select(func.count()).select_from(OutboxMessage)
                                     .where(col(OutboxMessage.nats_subject).startswith("inbox.social."))).one()
        assert to_social == 0
        assert social.get("/replicas", headers=bearer("social", "bba")).json() == []

        withdrawn = school.post(f"/consents/{consent_id}/withdraw", json={"withdrawn_by": "guardian"},
                                headers=bearer("school", "bba", "bba.norrskolan"))
        assert withdrawn.status_code == 200, withdrawn.text
        refused = wait_for(lambda: not region_decision()["allowed"] and region_decision(),
                           message="withdrawal in region")
        # Region keeps that the consent was withdrawn, and forgets the key that linked it to the child.
        assert refused == {"allowed": False, "consent_id": None, "reason": "no consent recorded"}
        replica = region.get("/replicas", headers=bearer("region", "bba")).json()[0]
        assert (replica["consent_id"], replica["status"], replica["child_key"]) == (consent_id, "withdrawn", "")
        for client in (school, region, social):
            with Session(_engine(client)) as session:
                assert session.exec(select(func.count()).select_from(DeadLetter)).one() == 0


def test_each_organisation_records_its_own_consent_and_lists_only_others_as_replicas(
        federation: Federation, serve: Serve) -> None:
    with serve(_settings(federation, "school")) as school, serve(_settings(federation, "region")) as region:
        # The same child has a case in each organisation, each with its own BBA.
        _seed(school, "case-s", unit_id="norrskolan", bba_user="bba.norrskolan")
        _seed(region, "case-r", unit_id="bvc-centrum", bba_user="bba.bvc")
        from_school = school.post("/consents", json=consent_naming("region", case_id="case-s"),
                                  headers=bearer("school", "bba", "bba.norrskolan")).json()["id"]
        from_region = region.post("/consents", json=consent_naming("school", "social", case_id="case-r"),
                                  headers=bearer("region", "bba", "bba.bvc")).json()["id"]
        at_school = wait_for(lambda: school.post("/decisions", json=ask("region", "school"),
                                                 headers=bearer("school", "bba")).json()["allowed"],
                             message="region's consent replicated to school")
        assert at_school is True
        wait_for(lambda: region.get("/replicas", headers=bearer("region", "bba")).json(),
                 message="school's consent replicated to region")
        assert [r["consent_id"] for r in region.get("/replicas", headers=bearer("region", "bba")).json()] == [
            from_school]
        assert [r["consent_id"] for r in school.get("/replicas", headers=bearer("school", "bba")).json()] == [
            from_region]
        # Each disclosing organisation needs its own consent: region's, which names social, does not cover school.
        school_to_social = school.post("/decisions", json=ask("school", "social"), headers=bearer("school", "bba"))
        assert school_to_social.json() == {"allowed": False, "consent_id": None,
                                           "reason": "consent does not name the receiving organisation"}
        region_to_social = region.post("/decisions", json=ask("region", "social"), headers=bearer("region", "bba"))
        assert region_to_social.json()["consent_id"] == from_region


def test_an_amendment_reaches_the_receivers_as_the_old_revision_withdrawn_and_the_new_one_granted(
        federation: Federation, serve: Serve) -> None:
    bba = bearer("school", "bba", "bba.norrskolan")
    with serve(_settings(federation, "school")) as school, serve(_settings(federation, "region")) as region:
        _seed(school, "case-school-3", unit_id="norrskolan", bba_user="bba.norrskolan")
        first = school.post("/consents", json=consent_naming("region", case_id="case-school-3"), headers=bba).json()

        def at_region(categories: list[str]) -> dict[str, Any]:
            response = region.post("/decisions", headers=bearer("region", "professional"),
                                   json={**ask("school", "region", key=SCHOOL_REGION_KEY), "categories": categories})
            return dict(response.json())

        wait_for(lambda: at_region(["mapping_summary"])["allowed"], message="the first revision in region")
        terms = consent_naming("region", case_id="case-school-3")
        amended = school.post(f"/consents/{first['id']}/amend", headers=bba, json={
            **{k: terms[k] for k in ("grantors", "child_view", "receiving_orgs", "valid_from", "valid_until")},
            "categories": ["concern"]})
        assert amended.status_code == 201, amended.text
        second = amended.json()

        # Region holds the old revision withdrawn (its key forgotten) and the new one with the narrowed terms.
        wait_for(lambda: at_region(["concern"]).get("consent_id") == second["id"], message="the amendment in region")
        assert at_region(["mapping_summary"]) == {"allowed": False, "consent_id": None,
                                                  "reason": "consent does not cover mapping_summary"}
        replicas = {r["consent_id"]: r for r in region.get("/replicas", headers=bearer("region", "bba")).json()}
        assert (replicas[first["id"]]["status"], replicas[first["id"]]["child_key"]) == ("withdrawn", "")
        assert (replicas[second["id"]]["status"], replicas[second["id"]]["categories"]) == ("active", ["concern"])

        # Withdrawn through the first revision, the one in force is withdrawn at region too.
        assert school.post(f"/consents/{first['id']}/withdraw", json={"withdrawn_by": "guardian"},
                           headers=bba).status_code == 200
        wait_for(lambda: not at_region(["concern"])["allowed"], message="the withdrawal in region")
        for client in (school, region):
            with Session(_engine(client)) as session:
                assert session.exec(select(func.count()).select_from(DeadLetter)).one() == 0
