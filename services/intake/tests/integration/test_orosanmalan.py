"""The orosanmälan across organisations: school files, social services' intake receives and acknowledges, with no
consent anywhere (no consent service even runs), while social's intake is down too; region never accepts one.

School, region and social each run their own intake with its own database, over one nats-server with an
account each, as in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import nats
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from tillsammans_common.db import utcnow
from tillsammans_common.events import Envelope, inbox_subject
from tillsammans_common.events.intake import OROSANMALAN_BASIS, ReportAcknowledged, ReportFiled
from tillsammans_common.events.mapping import MappingCompleted
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.models import AuditRecord, DeadLetter, OutboxMessage
from tillsammans_common.testing import (
    Federation,
    bearer,
    count_rows,
    engine_of,
    stream_containing,
    tables_containing,
    wait_for,
)
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app
from tillsammans_intake.models import CaseMapping, ReceivedReport, Report

CHILD = {"personnummer": "20130412-1237", "name": "Testbarn Testsson"}
CONCERN = {"unit_id": "norrskolan", "home_municipality": "0484", "child": CHILD,
           "wheel_areas": ["trygghet", "hemmet"], "description": "Frånvaron har ökat."}
GROUNDS = "Eleven har blåmärken på armarna och säger att hon inte vågar gå hem."
MENTOR = bearer("school", "professional", "mentor.anna")
SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
# Social services' intake desk is the directory's unit "mottagning", whose BBA is mottagning.ifo.
DESK = bearer("social", "bba", "mottagning.ifo")


@contextmanager
def _intake(federation: Federation, org: str) -> Iterator[TestClient]:
    with TestClient(create_app(IntakeSettings(**federation.settings(org)))) as client:  # type: ignore[arg-type]
        yield client


def _raise_concern(school: TestClient, **overrides: Any) -> dict[str, Any]:
    raised = school.post("/concerns", json={**CONCERN, **overrides}, headers=MENTOR)
    assert raised.status_code == 201, raised.text
    concern: dict[str, Any] = raised.json()
    return concern


def _received(social: TestClient) -> list[dict[str, Any]]:
    listed = social.get("/received-reports", headers=DESK)
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()
    return items


def _status(school: TestClient, report_id: str, headers: dict[str, str] = MENTOR) -> dict[str, Any]:
    read = school.get(f"/reports/{report_id}", headers=headers)
    assert read.status_code == 200, read.text
    report: dict[str, Any] = read.json()
    return report


def test_orosanmalan_reaches_social_services_without_any_consent_and_is_acknowledged(
        federation: Federation) -> None:
    with ExitStack() as running:
        school = running.enter_context(_intake(federation, "school"))
        region = running.enter_context(_intake(federation, "region"))
        social = running.enter_context(_intake(federation, "social"))
        concern = _raise_concern(school)
        assert "POST /concerns/{id}/report" in concern["orosanmalan"]

        filed = school.post(f"/concerns/{concern['id']}/report", json={"grounds": GROUNDS, "urgent": True},
                            headers=MENTOR)
        assert filed.status_code == 201, filed.text
        report = filed.json()
        assert (report["to_org"], report["municipality_code"], report["legal_basis"]) == (
            "social", "0484", OROSANMALAN_BASIS)
        assert report["status"] in ("queued", "sent") and report["concern_id"] == concern["id"]
        assert report["wheel_areas"] == ["trygghet", "hemmet"]

        found = wait_for(lambda: _received(social), message="the report at social services' intake desk")
        assert len(found) == 1
        summary = found[0]
        assert (summary["from_org"], summary["urgent"], summary["child_name"]) == ("school", True, "Testbarn Testsson")
        detail = social.get(f"/received-reports/{summary['id']}", headers=DESK).json()
        assert detail["child_personnummer"] == "201304121237" and detail["grounds"] == GROUNDS
        assert detail["report_id"] == report["id"] and detail["legal_basis"] == OROSANMALAN_BASIS
        assert (detail["reporting_unit"], detail["contact_user"], detail["reported_by_role"]) == (
            "Norrskolan F-6", "mentor.anna", "professional")

        acknowledged = wait_for(lambda: (r := _status(school, report["id"]))["status"] == "acknowledged" and r,
                                message="social's receipt at school")
        assert acknowledged["receiver_reference"] == summary["id"]
        assert acknowledged["sent_at"] is not None and acknowledged["acknowledged_at"] is not None

        # It went without a consent and without asking for one: its outbox row carries no gate.
        with Session(engine_of(school)) as session:
            row = session.exec(select(OutboxMessage).where(
                col(OutboxMessage.nats_subject) == "inbox.social.school.intake.report.filed.v1")).one()
            assert row.gate is None
            audited = session.exec(select(AuditRecord).where(
                col(AuditRecord.action) == "disclose.statutory:intake.report.filed.v1")).one()
            assert (audited.purpose, audited.user, audited.basis) == (OROSANMALAN_BASIS, "mentor.anna", "raiser")
        # Only the reporting and the receiving organisation hold it: region received nothing.
        assert count_rows(social, ReceivedReport) == 1
        assert count_rows(region, ReceivedReport) == 0 and count_rows(region, DeadLetter) == 0
        assert tables_containing(engine_of(region), "20130412", "Testbarn", "blåmärken") == []

        # Who sees it: the reporter and the case's BBA at school; the intake desk at social.
        assert school.get(f"/reports/{report['id']}", headers=SCHOOL_BBA).status_code == 200
        for outsider in (bearer("school", "bba", "bba.vasterskolan", units=["vasterskolan"]),
                         bearer("school", "auditor", "granskare"), bearer("school", "professional", "lärare")):
            assert school.get(f"/reports/{report['id']}", headers=outsider).status_code == 403
        at_social = f"/received-reports/{summary['id']}"
        assert social.get(at_social, headers=bearer("social", "professional", "handläggare",
                                                    units=["mottagning"])).status_code == 200
        for outsider in (bearer("social", "auditor", "granskare"), bearer("social", "admin", "drift"),
                         bearer("social", "bba", "bba.ifo", units=["ifo-barn"])):
            assert social.get(at_social, headers=outsider).status_code == 403
            assert social.get("/received-reports", headers=outsider).status_code == 403
        # Another organisation's user, even with the desk BBA's user id, is not social services' desk.
        assert social.get(at_social, headers=bearer("school", "bba", "mottagning.ifo")).status_code == 403
        with Session(engine_of(social)) as session:
            reads = session.exec(select(AuditRecord).where(col(AuditRecord.action) == "received_report.read",
                                                           col(AuditRecord.outcome) == "ok")).all()
        assert {(r.user, r.record_id, r.purpose) for r in reads} == {
            ("mottagning.ifo", summary["id"], "orosanmalan"), ("handläggare", summary["id"], "orosanmalan")}


def test_a_report_filed_while_social_services_intake_is_down_arrives_once_when_it_returns(
        federation: Federation) -> None:
    with _intake(federation, "social"):
        pass  # social's intake ran once (its inbox and consumers exist) and is now down
    with _intake(federation, "school") as school:
        case = _raise_concern(school)["case_id"]
        filed = school.post(f"/cases/{case}/reports", json={"grounds": GROUNDS}, headers=SCHOOL_BBA)
        assert filed.status_code == 201, filed.text
        report = filed.json()
        # In social's inbox stream, not yet received by anyone.
        wait_for(lambda: _status(school, report["id"], SCHOOL_BBA)["status"] == "sent",
                 message="the report in social's inbox")
        assert _status(school, report["id"], SCHOOL_BBA)["acknowledged_at"] is None

        with _intake(federation, "social") as social:
            found = wait_for(lambda: _received(social), message="the report once social's intake is back")
            wait_for(lambda: _status(school, report["id"], SCHOOL_BBA)["status"] == "acknowledged",
                     message="the receipt")
            assert [item["urgent"] for item in found] == [False]
        with _intake(federation, "social") as social:  # started again: nothing is received twice
            assert count_rows(social, ReceivedReport) == 1
            with Session(engine_of(social)) as session:
                acks = session.exec(select(OutboxMessage).where(
                    col(OutboxMessage.nats_subject) == "inbox.school.social.intake.report.acknowledged.v1")).all()
            assert len(acks) == 1
        with Session(engine_of(school)) as session:
            stored = session.exec(select(Report)).one()
        assert stored.receiver_reference == found[0]["id"]


def _forge(federation: Federation, *, to_org: str, payload: ReportFiled | ReportAcknowledged,
           sender: str = "school") -> None:
    """Publish straight into ``to_org``'s inbox with ``sender``'s real broker credentials (no egress at all)."""
    envelope = Envelope.wrap(payload, source=f"/orgs/{sender}/intake", subject=payload.report_id)

    async def publish() -> None:
        connection = await nats.connect(federation.url, user=sender, password=federation.passwords[sender])
        try:
            await connection.jetstream().publish(inbox_subject(to_org, sender, payload.type), envelope.to_bytes(),
                                                 stream="INBOX", headers={"Nats-Msg-Id": envelope.id})
        finally:
            await connection.close()

    asyncio.run(publish())


def test_region_refuses_a_forged_report_and_keeps_no_data_of_it(federation: Federation) -> None:
    forged = ReportFiled(
        report_id="7d0b8c1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f", reporting_org="school", receiving_org="region",
        municipality_code="0484", child_personnummer="201304121237", child_name="Testbarn Testsson",
        protected_identity=False, grounds=GROUNDS, wheel_id="sormland", wheel_areas=["trygghet"],
        reporting_unit="Norrskolan F-6", reported_by_role="bba", contact_user="bba.norrskolan", urgent=True,
        legal_basis=OROSANMALAN_BASIS, filed_at=utcnow())
    with _intake(federation, "region") as region:
        _forge(federation, to_org="region", payload=forged)
        letter = wait_for(lambda: (rows := _dead_letters(region)) and rows[0], message="the refusal at region")
        assert letter.reason.startswith("Reject") and letter.event_type == "intake.report.filed.v1"
        assert b"201304121237" not in letter.body and b"Testbarn" not in letter.body
        assert count_rows(region, ReceivedReport) == 0
        assert tables_containing(engine_of(region), "20130412", "Testbarn", "blåmärken") == []
        assert asyncio.run(stream_containing(federation.url, user="region", password=federation.passwords["region"],
                                             stream="INBOX", needles=["201304121237"])) == []
        with Session(engine_of(region)) as session:
            refused = session.exec(select(AuditRecord).where(col(AuditRecord.outcome) == "refused")).one()
        assert refused.reason == "not_statutory_receiver"


def _dead_letters(client: TestClient) -> list[DeadLetter]:
    with Session(engine_of(client)) as session:
        return list(session.exec(select(DeadLetter)).all())


def test_a_report_needs_a_known_municipality_served_by_social_services(federation: Federation) -> None:
    with _intake(federation, "school") as school:
        admin = bearer("school", "admin", "drift")
        put = school.put("/units/fritids", headers=admin, json={
            "name": "Fritids utan kommunkod", "kind": "other", "bba_user": "bba.fritids", "bba_name": "BBA Fritids"})
        assert put.status_code == 200, put.text
        unknown = _raise_concern(school, unit_id="fritids", home_municipality=None,
                                 child={"personnummer": "20150101-0001", "name": "Annat Barn"})
        fritids_bba = bearer("school", "bba", "bba.fritids")
        concern = _raise_concern(school)
        outbox_before = count_rows(school, OutboxMessage)
        for path, body, headers, field in (
                (f"/concerns/{unknown['id']}/report", {"grounds": GROUNDS}, fritids_bba, "home_municipality"),
                (f"/concerns/{concern['id']}/report", {"grounds": GROUNDS, "home_municipality": "0180"}, MENTOR,
                 "home_municipality"),
                (f"/cases/{concern['case_id']}/reports", {"grounds": GROUNDS, "mapping_id": "no-such"}, SCHOOL_BBA,
                 "mapping_id"),
                (f"/cases/{concern['case_id']}/reports", {"grounds": GROUNDS, "concern_id": unknown["id"]},
                 SCHOOL_BBA, "concern_id")):
            refused = school.post(path, json=body, headers=headers)
            assert refused.status_code == 422, refused.text
            assert [error["field"] for error in refused.json()["errors"]] == [field]
        assert count_rows(school, Report) == 0 and count_rows(school, OutboxMessage) == outbox_before

        # Only those with a need to act on the case (or who raised the concern) may file.
        for outsider in (bearer("school", "professional", "lärare"), bearer("school", "auditor", "granskare")):
            assert school.post(f"/concerns/{concern['id']}/report", json={"grounds": GROUNDS},
                               headers=outsider).status_code == 403
            assert school.post(f"/cases/{concern['case_id']}/reports", json={"grounds": GROUNDS},
                               headers=outsider).status_code == 403
        assert count_rows(school, Report) == 0


def test_a_report_from_a_mapping_carries_its_flagged_areas(federation: Federation) -> None:
    with _intake(federation, "school") as school:
        case = _raise_concern(school)["case_id"]
        # Mapping's own event, on school's stream, as the mapping service would publish it on completion.
        settings: IntakeSettings = school.app.state.settings  # type: ignore[attr-defined]
        with Session(engine_of(school)) as session:
            record_event(session, MappingCompleted(
                mapping_id="c3d4e5f6-0000-4000-8000-00000000000a", case_id=case, wheel_id="sormland", wheel_version=1,
                flagged_areas=["omsorg", "trygghet"], suggested_orgs=["social"], trappan_step=2),
                source="/orgs/school/mapping", org=settings.org, subject=case)
            session.commit()
        wait_for(lambda: count_rows(school, CaseMapping) == 1, message="intake to learn the mapping")
        headers = {**SCHOOL_BBA, "Idempotency-Key": "report-1"}
        body = {"grounds": GROUNDS, "mapping_id": "c3d4e5f6-0000-4000-8000-00000000000a", "urgent": True}
        filed = school.post(f"/cases/{case}/reports", json=body, headers=headers)
        assert filed.status_code == 201, filed.text
        assert filed.json()["wheel_areas"] == ["omsorg", "trygghet"]
        assert filed.json()["mapping_id"] == body["mapping_id"]
        again = school.post(f"/cases/{case}/reports", json=body, headers=headers)
        assert again.json() == filed.json() and count_rows(school, Report) == 1


def test_a_protected_child_is_reported_without_the_unit_and_shown_protected(federation: Federation) -> None:
    with _intake(federation, "school") as school, _intake(federation, "social") as social:
        concern = _raise_concern(school, child={**CHILD, "protected_identity": True})
        filed = school.post(f"/concerns/{concern['id']}/report", json={"grounds": GROUNDS, "urgent": True},
                            headers=MENTOR)
        assert filed.status_code == 201, filed.text  # no manual review holds back the duty to report
        found = wait_for(lambda: _received(social), message="the protected child's report at social")
        assert [(item["child_name"], item["protected_identity"]) for item in found] == [("(skyddad identitet)", True)]
        detail = social.get(f"/received-reports/{found[0]['id']}", headers=DESK).json()
        # The reporting unit would tell where the child is: social services call the contact instead.
        assert detail["reporting_unit"] is None and detail["contact_user"] == "mentor.anna"
        assert detail["child_personnummer"] == "201304121237"
        with Session(engine_of(social)) as session:
            shown = session.exec(select(AuditRecord).where(col(AuditRecord.action) == "received_report.read")).one()
        assert shown.protected is True
        assert tables_containing(engine_of(social), "norrskolan", "Norrskolan") == []


def test_a_receipt_from_an_organisation_the_report_did_not_go_to_is_refused(federation: Federation) -> None:
    with _intake(federation, "school") as school:
        case = _raise_concern(school)["case_id"]
        report = school.post(f"/cases/{case}/reports", json={"grounds": GROUNDS}, headers=SCHOOL_BBA).json()
        # Region, a real member with its real credentials, claims to have received school's report to social.
        _forge(federation, to_org="school", sender="region", payload=ReportAcknowledged(
            report_id=report["id"], reporting_org="school", receiving_org="region",
            receiver_reference="9a8b7c6d-0000-4000-8000-000000000000", received_at=utcnow()))
        letter = wait_for(lambda: (rows := _dead_letters(school)) and rows[0], message="the refusal at school")
        assert letter.event_type == "intake.report.acknowledged.v1" and "Reject" in letter.reason
        read = _status(school, report["id"], SCHOOL_BBA)
        assert read["status"] != "acknowledged" and read["receiver_reference"] is None
        with Session(engine_of(school)) as session:
            refused = session.exec(select(AuditRecord).where(col(AuditRecord.outcome) == "refused")).one()
        assert refused.reason == "unknown_report"
