"""The rules of answers, reschedules, cancels and calendar files, on a real migrated SQLite file (no broker)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.auth import Principal, Role
from tillsammans_common.db import make_engine, migrate
from tillsammans_common.errors import Conflict, InvalidField
from tillsammans_common.events import Envelope
from tillsammans_common.events.meetings import InvitationReplied, MeetingCancelled, MeetingRescheduled, Participant
from tillsammans_common.messaging.refusals import Reject, Retry
from tillsammans_common.models import OutboxMessage
from tillsammans_meetings import service
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import VERSIONS
from tillsammans_meetings.models import (
    AcceptInvitation,
    CancelMeeting,
    DeclineInvitation,
    Invitation,
    InvitationStatus,
    Meeting,
    MeetingKind,
    PlanItemCreate,
    ReceivedInvitation,
    ReceivedStatus,
    ScheduleMeeting,
)

NOW = datetime.now(UTC)
REGION = MeetingsSettings(org="region", peers=["school", "region", "social"])
COORDINATOR = Principal(org="region", user="samordnare.bvc", role=Role.COORDINATOR)
MEETING_ID = str(uuid.uuid4())
SENT_ID = str(uuid.uuid4())
RECEIVED_ID = str(uuid.uuid4())


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated meetings database holding a meeting school called (sent to region) and region's copy of it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'meetings.db'}")
    migrate(engine, VERSIONS)
    with Session(engine) as session:
        session.add(Meeting(id=MEETING_ID, case_id="case-1", kind=MeetingKind.SAMVERKANSMOTE,
                            scheduled_at=NOW + timedelta(days=7), called_by="bba", child_personnummer="201304121237",
                            child_name="Testbarn Testsson", child_key="k", flagged_areas=["trygghet"],
                            concern_summary="Oro"))
        session.flush()
        session.add(Invitation(id=SENT_ID, meeting_id=MEETING_ID, to_org="region", consent_id="c-1"))
        session.add(ReceivedInvitation(
            id=RECEIVED_ID, from_org="school", meeting_id=MEETING_ID, case_id="", consent_id="c-1",
            kind="samverkansmote", scheduled_at=NOW + timedelta(days=7), child_personnummer="201304121237",
            child_name="Testbarn Testsson", child_key="k", flagged_areas=["trygghet"], concern_summary="Oro",
            contact_user="bba", sequence=1))
        session.commit()
    yield engine
    engine.dispose()


def envelope_from(org: str) -> Envelope:
    return Envelope(source=f"/orgs/{org}/meetings", type="x", subject=MEETING_ID, data={})


def reply(**changes: Any) -> InvitationReplied:
    fields: dict[str, Any] = {"invitation_id": SENT_ID, "meeting_id": MEETING_ID, "inviting_org": "school",
                              "replying_org": "region", "answer": "accepted", "reason": None,
                              "participants": [Participant(role="skolsköterska", user="ssk.bvc")], "sequence": 1,
                              "replied_at": NOW}
    fields.update(changes)
    return InvitationReplied(**fields)


# (sender the broker proves, changes to the reply) -> refusal code, or None when applied
REPLY_RULES = [
    pytest.param("region", {}, None, id="the invited organisation answers"),
    pytest.param("social", {"replying_org": "social"}, "not_invited", id="another member about region's invitation"),
    pytest.param("region", {"invitation_id": str(uuid.uuid4())}, "unknown_invitation", id="an invitation never sent"),
    pytest.param("region", {"meeting_id": str(uuid.uuid4())}, "unknown_invitation", id="the wrong meeting"),
]


@pytest.mark.parametrize(("sender", "changes", "refused"), REPLY_RULES)
def test_who_may_answer_an_invitation(engine: Engine, sender: str, changes: dict[str, Any],
                                      refused: str | None) -> None:
    with Session(engine) as session:
        if refused is None:
            service.apply_reply(session, envelope=envelope_from(sender), event=reply(**changes))
            session.commit()
        else:
            with pytest.raises(Reject) as caught:
                service.apply_reply(session, envelope=envelope_from(sender), event=reply(**changes))
            assert caught.value.code == refused
            session.rollback()
        invitation = session.get(Invitation, SENT_ID)
        assert invitation is not None
        assert (invitation.answer is not None) == (refused is None)


def test_a_later_answer_replaces_an_earlier_one_and_a_stale_one_is_ignored(engine: Engine) -> None:
    with Session(engine) as session:
        service.apply_reply(session, envelope=envelope_from("region"), event=reply(
            sequence=2, answer="declined", reason="Ingen ledig tid", participants=[]))
        service.apply_reply(session, envelope=envelope_from("region"), event=reply(sequence=1))
        session.commit()
        invitation = session.get(Invitation, SENT_ID)
        assert invitation is not None
        assert (invitation.answer, invitation.answer_reason, invitation.participants, invitation.reply_sequence) == (
            "declined", "Ingen ledig tid", [], 2)


def change(kind: str, sequence: int, **changes: Any) -> MeetingRescheduled | MeetingCancelled:
    common: dict[str, Any] = {"invitation_id": RECEIVED_ID, "meeting_id": MEETING_ID, "inviting_org": "school",
                              "invited_org": "region", "sequence": sequence, **changes}
    if kind == "reschedule":
        return MeetingRescheduled(scheduled_at=NOW + timedelta(days=9), location="Rum 3", **common)
    return MeetingCancelled(cancelled_at=NOW, **common)


# (sender, kind, sequence, changes) -> "applied", "ignored", or the refusal's type and code
CHANGE_RULES = [
    pytest.param("school", "reschedule", 2, {}, "applied", id="the inviter moves it"),
    pytest.param("school", "cancel", 2, {}, "applied", id="the inviter cancels it"),
    pytest.param("school", "reschedule", 1, {}, "ignored", id="a stale sequence"),
    pytest.param("school", "cancel", 0, {}, "ignored", id="an older cancel than the state held"),
    pytest.param("social", "cancel", 5, {"inviting_org": "social"}, "reject:not_the_inviter",
                 id="another member cancels school's meeting"),
    pytest.param("school", "reschedule", 2, {"meeting_id": str(uuid.uuid4())}, "reject:not_the_inviter",
                 id="another meeting's id"),
    pytest.param("school", "reschedule", 2, {"invitation_id": str(uuid.uuid4())}, "retry:invitation_not_here",
                 id="an invitation not (yet) here"),
]


@pytest.mark.parametrize(("sender", "kind", "sequence", "changes", "outcome"), CHANGE_RULES)
def test_changes_are_applied_in_the_inviters_order_and_only_from_the_inviter(
        engine: Engine, sender: str, kind: str, sequence: int, changes: dict[str, Any], outcome: str) -> None:
    with Session(engine) as session:
        event = change(kind, sequence, **changes)
        if outcome.startswith(("reject", "retry")):
            expected = Reject if outcome.startswith("reject") else Retry
            with pytest.raises(expected) as caught:
                service.apply_meeting_change(session, envelope=envelope_from(sender), event=event)
            assert caught.value.code == outcome.split(":")[1]
            session.rollback()
        else:
            service.apply_meeting_change(session, envelope=envelope_from(sender), event=event)
            session.commit()
        row = session.get(ReceivedInvitation, RECEIVED_ID)
        assert row is not None
        applied = outcome == "applied"
        assert row.sequence == (sequence if applied else 1)
        assert (row.location == "Rum 3") == (applied and kind == "reschedule")
        assert (row.cancelled_at is not None) == (applied and kind == "cancel")


def outbox(session: Session) -> list[dict[str, Any]]:
    rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.seq))).all()
    return [orjson.loads(row.body) for row in rows]


def test_an_answer_goes_back_once_per_change_and_the_same_answer_again_sends_nothing(engine: Engine) -> None:
    accept = AcceptInvitation.model_validate({"participants": [{"role": "skolsköterska", "user": "ssk.bvc"}]})
    with Session(engine) as session:
        service.answer_invitation(session, settings=REGION, principal=COORDINATOR, invitation_id=RECEIVED_ID,
                                  data=accept)
        service.answer_invitation(session, settings=REGION, principal=COORDINATOR, invitation_id=RECEIVED_ID,
                                  data=accept)
        shown = service.answer_invitation(session, settings=REGION, principal=COORDINATOR,
                                          invitation_id=RECEIVED_ID,
                                          data=DeclineInvitation(reason="Vi har ingen ledig tid den veckan"))
        session.commit()
        sent = outbox(session)
    assert shown.answer == "declined" and shown.participants == [] and shown.answered_by == COORDINATOR.user
    assert [(m["type"], m["data"]["answer"], m["data"]["sequence"]) for m in sent] == [
        ("meetings.invitation.replied.v1", "accepted", 1), ("meetings.invitation.replied.v1", "declined", 2)]
    first = sent[0]["data"]
    assert first["participants"] == [{"role": "skolsköterska", "user": "ssk.bvc"}]
    assert (first["invitation_id"], first["meeting_id"], first["inviting_org"], first["replying_org"]) == (
        RECEIVED_ID, MEETING_ID, "school", "region")
    assert all("201304121237" not in orjson.dumps(m).decode() and "Testbarn" not in orjson.dumps(m).decode()
               for m in sent)


@pytest.mark.parametrize(("state", "refusal"), [
    ({"status": ReceivedStatus.WITHDRAWN}, Conflict),
    ({"cancelled_at": NOW}, Conflict),
    ({"scheduled_at": NOW - timedelta(minutes=1)}, Conflict),
])
def test_no_answer_after_cancel_withdrawal_or_the_meeting_itself(engine: Engine, state: dict[str, Any],
                                                                  refusal: type[Exception]) -> None:
    with Session(engine) as session:
        row = session.get(ReceivedInvitation, RECEIVED_ID)
        assert row is not None
        for name, value in state.items():
            setattr(row, name, value)
        session.add(row)
        session.flush()
        with pytest.raises(refusal):
            service.answer_invitation(session, settings=REGION, principal=COORDINATOR, invitation_id=RECEIVED_ID,
                                      data=DeclineInvitation(reason="Ingen tid"))
        assert outbox(session) == []


@pytest.mark.parametrize(("body", "field"), [
    ({"reason": "Barnet 20130412-1237 är redan känt hos oss"}, "reason"),
    ({"reason": "Testbarn Testsson går redan hos BUP"}, "reason"),
    ({"reason": "Ring 070-123 45 67"}, "reason"),
])
def test_a_decline_reason_that_identifies_the_child_is_refused_and_nothing_is_sent(
        engine: Engine, body: dict[str, str], field: str) -> None:
    with Session(engine) as session:
        with pytest.raises(InvalidField) as caught:
            service.answer_invitation(session, settings=REGION, principal=COORDINATOR, invitation_id=RECEIVED_ID,
                                      data=DeclineInvitation.model_validate(body))
        assert [error["field"] for error in caught.value.extra["errors"]] == [field]
        session.rollback()
        assert outbox(session) == []
        row = session.get(ReceivedInvitation, RECEIVED_ID)
        assert row is not None and row.answer is None


def test_each_participant_is_named_once(engine: Engine) -> None:
    twice = AcceptInvitation.model_validate(
        {"participants": [{"role": "kurator", "user": "a"}, {"role": "läkare", "user": "a"}]})
    with Session(engine) as session:
        with pytest.raises(InvalidField):
            service.answer_invitation(session, settings=REGION, principal=COORDINATOR, invitation_id=RECEIVED_ID,
                                      data=twice)
        assert outbox(session) == []


SCHOOL = MeetingsSettings(org="school", peers=["school", "region", "social"])
RUNNER = policy.Access(Principal(org="school", user="bba", role=Role.BBA), policy.Action.MEETING_RUN,
                       policy.Facts(record_id=MEETING_ID), basis="bba-of-unit")


def _withdrawn_invitation_to_social(session: Session) -> None:
    session.add(Invitation(id=str(uuid.uuid4()), meeting_id=MEETING_ID, to_org="social", consent_id="c-2",
                           status=InvitationStatus.CONSENT_WITHDRAWN))
    session.flush()


@pytest.mark.parametrize(("body", "field"), [
    ({"scheduled_at": (NOW - timedelta(hours=1)).isoformat()}, "scheduled_at"),
    ({"scheduled_at": (NOW + timedelta(days=40)).isoformat()}, "scheduled_at"),  # after the booked follow-up
    ({"scheduled_at": (NOW + timedelta(days=8)).isoformat(), "location": "Hemma hos Testbarn"}, "location"),
    ({"scheduled_at": (NOW + timedelta(days=8)).isoformat(), "location": "Ring 070-123 45 67"}, "location"),
])
def test_a_reschedule_that_breaks_a_rule_changes_nothing_and_sends_nothing(
        engine: Engine, body: dict[str, str], field: str) -> None:
    with Session(engine) as session:
        meeting = session.get(Meeting, MEETING_ID)
        assert meeting is not None
        meeting.follow_up_at = NOW + timedelta(days=30)
        session.add(meeting)
        session.flush()
        with pytest.raises(InvalidField) as caught:
            service.reschedule_meeting(session, settings=SCHOOL, access=RUNNER,
                                       data=ScheduleMeeting.model_validate(body))
        assert [error["field"] for error in caught.value.extra["errors"]] == [field]
        session.rollback()
        assert outbox(session) == []
        assert session.get(Meeting, MEETING_ID).sequence == 0  # type: ignore[union-attr]


def test_a_reschedule_reaches_each_sent_invitation_once_and_the_same_one_again_sends_nothing(engine: Engine) -> None:
    later = (NOW + timedelta(days=8)).replace(microsecond=0)
    body = ScheduleMeeting(scheduled_at=later, location="Rum 12")
    with Session(engine) as session:
        _withdrawn_invitation_to_social(session)
        first = service.reschedule_meeting(session, settings=SCHOOL, access=RUNNER, data=body)
        again = service.reschedule_meeting(session, settings=SCHOOL, access=RUNNER, data=body)
        session.commit()
        sent = outbox(session)
    assert (first.sequence, again.sequence, first.location) == (1, 1, "Rum 12")
    # Only region's invitation stands; social's consent was withdrawn, so social hears nothing more.
    assert [(m["type"], m["data"]["invited_org"], m["data"]["sequence"], m["data"]["location"]) for m in sent] == [
        ("meetings.meeting.rescheduled.v1", "region", 1, "Rum 12")]


def test_for_a_child_with_protected_identity_the_room_never_leaves(engine: Engine) -> None:
    with Session(engine) as session:
        meeting = session.get(Meeting, MEETING_ID)
        assert meeting is not None
        meeting.protected_identity = True
        session.add(meeting)
        service.reschedule_meeting(session, settings=SCHOOL, access=RUNNER, data=ScheduleMeeting(
            scheduled_at=NOW + timedelta(days=8), location="Rum 12, Norrskolan"))
        body = service.meeting_calendar(session, settings=SCHOOL, access=RUNNER)
        session.commit()
        sent = outbox(session)
        assert session.get(Meeting, MEETING_ID).location == "Rum 12, Norrskolan"  # type: ignore[union-attr]
    assert [m["data"]["location"] for m in sent] == [None]
    assert b"LOCATION" not in body and b"Norrskolan" not in body


def test_a_cancel_is_sent_without_its_reason_and_then_nothing_changes_the_meeting(engine: Engine) -> None:
    with Session(engine) as session:
        cancelled = service.cancel_meeting(session, settings=SCHOOL, access=RUNNER,
                                           data=CancelMeeting(reason="Familjen flyttar"))
        assert (cancelled.status, cancelled.sequence, cancelled.cancel_reason) == ("cancelled", 1, "Familjen flyttar")
        sent = outbox(session)
        assert [(m["type"], m["data"]["sequence"]) for m in sent] == [("meetings.meeting.cancelled.v1", 1)]
        assert "Familjen" not in orjson.dumps(sent).decode()
        for attempt in (
                lambda: service.cancel_meeting(session, settings=SCHOOL, access=RUNNER,
                                               data=CancelMeeting(reason="igen")),
                lambda: service.reschedule_meeting(session, settings=SCHOOL, access=RUNNER,
                                                   data=ScheduleMeeting(scheduled_at=NOW + timedelta(days=9))),
                # Would be added to a meeting that stands (school takes part in its own meeting).
                lambda: service.add_plan_item(session, settings=SCHOOL, access=RUNNER,
                                              data=PlanItemCreate(action="Kontakt med BUP", responsible_org="school"))):
            with pytest.raises(Conflict):
                attempt()
        calendar_body = service.meeting_calendar(session, settings=SCHOOL, access=RUNNER)
    assert b"METHOD:CANCEL" in calendar_body and b"STATUS:CANCELLED" in calendar_body
    assert b"SEQUENCE:1" in calendar_body
