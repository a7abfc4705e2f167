"""The whole journey across three organisations, each on its own processes and databases."""

from __future__ import annotations

import sqlite3

import pytest
from icalendar import Calendar

from tests.otlp_collector import Collector
from tillsammans_common.testing import wait_for
from tillsammans_stack.demo import CHILD, JourneyResult
from tillsammans_stack.launcher import Stack

pytestmark = pytest.mark.stack
PERSONAL_DATA = ["201304121237", "20130412-1237", "130412-1237", "Alva", "Exempelsson",
                 "Frånvaron har ökat", "Ökad frånvaro"]


def _rows(stack: Stack, org: str, service: str, sql: str) -> list[tuple[object, ...]]:
    path = stack.config.root / "data" / org / f"{service}.db"
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def test_concern_is_routed_and_mapping_points_to_region_and_social(journey: JourneyResult) -> None:
    # Routed by the child's stage and home municipality: a 13-year-old in compulsory school -> the 7-9 school.
    assert (journey.concern["routed_by"], journey.concern["unit_id"], journey.concern["bba_user"]) == (
        "stage", "vasterskolan", "bba.vasterskolan")
    assert journey.mapping["status"] == "completed"
    # In wheel order: hemmet (social) comes before relationer (region).
    assert journey.mapping["suggested_orgs"] == ["social", "region"]


def test_the_orosanmalan_from_the_mapping_reaches_social_services_only_without_consent(
        stack: Stack, journey: JourneyResult) -> None:
    assert (journey.report["status"], journey.report["to_org"], journey.report["legal_basis"]) == (
        "acknowledged", "social", "SoL 14 kap. 1 §")
    assert journey.report["mapping_id"] == journey.mapping["id"]
    # Filed before any consent existed, naming the mapping it came from.
    rows = _rows(stack, "social", "intake", "SELECT from_org, report_id, legal_basis FROM received_report")
    assert ("school", journey.report["id"], "SoL 14 kap. 1 §") in rows
    assert journey.received_report["child_personnummer"] == CHILD["personnummer"].replace("-", "")
    assert _rows(stack, "region", "intake", "SELECT count(*) FROM received_report") == [(0,)]


def test_the_mapping_suggests_real_members_with_roles_and_the_meeting_carries_them(journey: JourneyResult) -> None:
    suggested = {s["org"]: s for s in journey.mapping["suggestions"]}
    assert suggested["region"]["kind"] == "health_care" and suggested["region"]["roles"]
    assert suggested["social"]["kind"] == "social_services"
    assert journey.meeting["mapping_id"] == journey.mapping["id"]
    assert sorted(i["to_org"] for i in journey.meeting["invitations"]) == ["region", "social"]


def test_the_anonymous_consultation_is_answered(journey: JourneyResult) -> None:
    assert [(a["org"], a["kind"]) for a in journey.consultation_answers] == [("social", "can_help")]


def test_each_invited_organisation_accepted_and_the_calendars_hold_no_identity(journey: JourneyResult) -> None:
    assert sorted((i["to_org"], i["answer"]) for i in journey.answers) == [("region", "accepted"),
                                                                           ("social", "accepted")]
    for raw in (journey.calendar, journey.received_calendar):
        calendar = Calendar.from_ical(raw)
        assert str(calendar["METHOD"]) == "REQUEST"
        event = calendar.walk("VEVENT")[0]
        assert str(event["UID"]) == f"meeting-{journey.meeting['id']}@tillsammans"
        text = raw.decode()
        assert not [value for value in PERSONAL_DATA if value in text]


def test_the_sip_reaches_region_which_moves_its_own_action_and_the_unheld_follow_up_turns_overdue(
        stack: Stack, journey: JourneyResult) -> None:
    plan = journey.sip_plan
    assert plan["overall_responsible_org"] == "school"
    assert sorted(item["responsible_org"] for item in plan["items"]) == ["others", "region", "school"]
    assert {item["responsible_org"]: item["status"] for item in plan["items"]}["region"] == "in_progress"
    rows = _rows(stack, "region", "meetings", "SELECT from_org, consent_id FROM received_plan "
                 f"WHERE id = '{journey.sip_meeting['id']}'")
    assert rows == [("school", journey.sip_consent["id"])]
    assert journey.overdue["id"] == journey.sip_follow_up["follow_up_id"] and journey.overdue["overdue_at"]
    assert journey.overdue["held_at"] is None


def test_without_consent_the_invitation_is_refused_with_a_reason(journey: JourneyResult) -> None:
    assert journey.refused["status"] == 403
    assert journey.refused["type"].endswith("/consent-required")
    assert "no consent" in journey.refused["detail"]


def test_anonymous_consultation_reaches_social_without_identity(stack: Stack, journey: JourneyResult) -> None:
    rows = _rows(stack, "social", "meetings", "SELECT * FROM receivedconsultation")
    assert len(rows) >= 1
    assert not any(CHILD["name"] in str(row) or "20130412" in str(row) for row in rows)


def test_each_organisation_stores_the_invitation_in_its_own_database(stack: Stack, journey: JourneyResult) -> None:
    for org in ("region", "social"):
        received = journey.received[org]
        assert received["from_org"] == "school"
        assert received["consent_id"] == journey.consent["id"]
        rows = _rows(stack, org, "meetings", "SELECT from_org, consent_id FROM receivedinvitation "
                     f"WHERE meeting_id = '{journey.meeting['id']}'")
        assert rows == [("school", journey.consent["id"])]
    # The school's own database holds no received invitation: nothing loops back.
    assert _rows(stack, "school", "meetings", "SELECT count(*) FROM receivedinvitation") == [(0,)]


def test_meeting_outcome_coordinator_plan_and_follow_up(journey: JourneyResult) -> None:
    assert journey.coordinator["coordinator_org"] == "social"
    assert [item["responsible_org"] for item in journey.plan_items] == ["school", "region"]
    assert journey.follow_up["follow_up_at"]


def test_withdrawal_empties_received_invitations_confirms_and_stops_new_ones(stack: Stack,
                                                                            journey: JourneyResult) -> None:
    assert journey.withdrawn["status"] == "withdrawn"
    for org in ("region", "social"):
        rows = _rows(stack, org, "meetings", "SELECT status, child_personnummer, child_name, concern_summary "
                     f"FROM receivedinvitation WHERE meeting_id = '{journey.meeting['id']}'")
        assert rows == [("withdrawn", "", "", "")]
    assert sorted((r["org"], r["state"], r["purged_records"]) for r in journey.receipts) == [
        ("region", "purged", 1), ("social", "purged", 1)]
    assert journey.refused_after_withdrawal["status"] == 403
    assert "withdrawn" in journey.refused_after_withdrawal["detail"]


def test_calling_the_meeting_and_the_receivers_handling_share_one_trace(
        collector: Collector, journey: JourneyResult) -> None:
    trace_id = journey.meeting_trace_id
    assert len(trace_id) == 32

    def receiver_spans() -> list[object]:
        return [span for span in collector.snapshot() if span.trace_id == trace_id
                and span.resource.get("tillsammans.org") in ("region", "social")
                and span.resource.get("service.name") == "tillsammans-meetings"]

    def both_receivers() -> list[object] | None:
        # Each receiver exports on its own schedule: wait for both, not for whichever comes first.
        spans = receiver_spans()
        return spans if len({span.resource["tillsammans.org"] for span in spans}) == 2 else None  # type: ignore[attr-defined]

    spans = wait_for(both_receivers, timeout=15, message="the receivers' spans in the meeting's trace")
    assert {span.resource["tillsammans.org"] for span in spans} == {"region", "social"}  # type: ignore[attr-defined]
    school = [span for span in collector.snapshot() if span.trace_id == trace_id
              and span.resource.get("tillsammans.org") == "school"]
    assert any(span.attributes.get("http.route") == "/meetings" for span in school)


def test_no_personal_data_in_exported_telemetry_or_logs(stack: Stack, collector: Collector,
                                                        journey: JourneyResult) -> None:
    wait_for(lambda: len(collector.snapshot()) > 50, message="spans exported")
    exported = collector.everything_as_text()
    logs = "\n".join(path.read_text(errors="replace") for path in (stack.config.root / "logs").glob("*.log"))
    for needle in PERSONAL_DATA:
        assert needle not in exported, f"exported telemetry contains {needle!r}"
        assert needle not in logs, f"a log file contains {needle!r}"
