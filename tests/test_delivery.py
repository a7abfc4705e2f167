"""Nothing is lost: an invitation to a receiver that is down arrives, once, after it restarts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from tillsammans_common.personnummer import luhn_check_digit
from tillsammans_common.testing import wait_for
from tillsammans_stack.demo import FederationClient
from tillsammans_stack.launcher import Stack

pytestmark = pytest.mark.stack
BBA = {"role": "bba", "user": "bba.norrskolan"}


def _another_child() -> dict[str, str]:
    serial = "20140305" + "456"
    return {"personnummer": f"{serial[:8]}-456{luhn_check_digit(serial[2:])}", "name": "Bo Exempel"}


def _received(stack: Stack, meeting_id: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(stack.config.root / "data" / "region" / "meetings.db") as connection:
        return connection.execute("SELECT id FROM receivedinvitation WHERE meeting_id = ?", (meeting_id,)).fetchall()


def test_invitation_is_delivered_exactly_once_after_the_receiver_restarts(stack: Stack,
                                                                            fed: FederationClient) -> None:
    child = _another_child()
    now = datetime.now(UTC)
    concern = fed.call("school", "intake", "POST", "/concerns", role="professional", user="mentor.anna", body={
        "unit_id": "norrskolan", "child": child, "wheel_areas": ["halsa"], "description": "Ofta sjuk."})
    assert concern.status_code == 201, concern.text
    case_id = concern.json()["case_id"]
    consent_body = {
        "case_id": case_id, "child": {"personnummer": child["personnummer"]}, "custody": "sole",
        "grantors": [{"role": "guardian", "name": "V", "given_at": now.isoformat()}],
        "child_view": {"heard": True, "agrees": True, "note": None}, "receiving_orgs": ["region"],
        "categories": ["identity", "concern", "mapping_summary"], "purpose": "coordination_meeting",
        "valid_from": (now - timedelta(minutes=1)).isoformat(), "valid_until": (now + timedelta(days=30)).isoformat()}
    # The consent service learns the child's case from intake's event; until then the case is unknown (422).
    consent = wait_for(lambda: (r := fed.call("school", "consent", "POST", "/consents", **BBA, body=consent_body,
                                              idempotency_key=f"delivery-consent-{case_id}")).status_code != 422
                       and r, message="consent to learn the case")
    assert consent.status_code == 201, consent.text
    # Region must know the consent before its meetings service goes down, as it would in life.
    wait_for(lambda: fed.call("region", "consent", "POST", "/decisions", role="bba", user="bba.bvc", body={
        "disclosing_org": "school", "receiving_org": "region", "child": {"personnummer": child["personnummer"]},
        "categories": ["identity"], "purpose": "coordination_meeting"}).json().get("allowed"),
        message="region's consent replica")

    stack.stop_service("region", "meetings")
    try:
        body = {"case_id": case_id, "scheduled_at": (now + timedelta(days=3)).isoformat(), "child": child,
                "invited_orgs": ["region"], "flagged_areas": ["halsa"], "concern_summary": "s"}
        meeting = wait_for(lambda: (r := fed.call("school", "meetings", "POST", "/meetings", **BBA, body=body,
                                                  idempotency_key=f"delivery-{case_id}")).status_code == 201
                           and r.json(),
                           message="the meeting to be called")
        # The message now sits in region's durable INBOX stream; nobody in region has read it.
        assert _received(stack, meeting["id"]) == []
    finally:
        stack.start_service("region", "meetings")

    wait_for(lambda: _received(stack, meeting["id"]), timeout=20, message="delivery after restart")
    # Restart once more: a redelivery after restart must not create a second row.
    stack.stop_service("region", "meetings")
    stack.start_service("region", "meetings")
    listed = [item for item in fed.call("region", "meetings", "GET", "/received-invitations", role="coordinator",
                                        user="samordnare.bvc").json() if item["meeting_id"] == meeting["id"]]
    assert len(listed) == 1
    assert len(_received(stack, meeting["id"])) == 1
