"""Envelope round trip, consent decisions and the egress gate, on a real SQLite file."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from tillsammans_common.auth import Principal, Role
from tillsammans_common.db import make_engine, migrate, utcnow
from tillsammans_common.errors import ConsentRequired, InvalidField, ManualReviewRequired
from tillsammans_common.events import Envelope, inbox_subject, internal_subject
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.events.meetings import ChildIdentity, ConsultationRequested, InvitationSent
from tillsammans_common.messaging.consent_replica import apply_granted, apply_withdrawn, decide
from tillsammans_common.messaging.egress import Disclosure, disclose, prepare_disclosure, send_anonymous
from tillsammans_common.messaging.gate import DisclosureVerdict
from tillsammans_common.models import OutboxMessage
from tillsammans_common.settings import ServiceSettings

KEY = "a" * 64


@pytest.fixture
def session(tmp_path: Path) -> Session:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine, tmp_path / "no-service-versions")
    return Session(engine)


def _grant(**overrides: object) -> ConsentGranted:
    now = utcnow()
    fields: dict[str, object] = dict(
        consent_id="c1", case_id="case-1", child_key=KEY, disclosing_org="school",
        receiving_orgs=["region", "social"], categories=["identity", "concern", "mapping_summary"],
        purpose="coordination_meeting", valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30))
    fields.update(overrides)
    return ConsentGranted(**fields)


def _invitation() -> InvitationSent:
    return InvitationSent(
        invitation_id="i1", meeting_id="m1", kind="samverkansmote", scheduled_at=utcnow(),
        child_key=KEY, child=ChildIdentity(personnummer="201304121237", name="Testbarn"),
        flagged_areas=["trygghet"], concern_summary="...", contact_user="bba")


SETTINGS = ServiceSettings(org="school")


def test_envelope_round_trip_keeps_cloudevents_attributes() -> None:
    envelope = Envelope.wrap(_grant(), source="/orgs/school/consent", subject="case-1", consent_id="c1")
    parsed = Envelope.from_bytes(envelope.to_bytes())
    assert parsed.specversion == "1.0" and parsed.type == "consent.consent.granted.v1"
    assert parsed.source_org == "school" and parsed.subject == "case-1" and parsed.consentid == "c1"
    assert parsed.event() == _grant().model_copy(update={}) or isinstance(parsed.event(), ConsentGranted)
    assert internal_subject("school", parsed.type) == "school.consent.consent.granted.v1"
    assert inbox_subject("region", "school", parsed.type) == "inbox.region.school.consent.consent.granted.v1"


def test_decision_explains_each_refusal(session: Session) -> None:
    ask = dict(disclosing_org="school", child_key=KEY, categories=["identity"], purpose="coordination_meeting")
    assert decide(session, receiving_org="region", **ask).reason == "no consent recorded"
    apply_granted(session, _grant())
    session.commit()
    allowed = decide(session, receiving_org="region", **ask)
    assert allowed.allowed and allowed.consent_id == "c1"
    assert not decide(session, receiving_org="police", **ask).allowed
    assert "health" in decide(session, receiving_org="region", **{**ask, "categories": ["health"]}).reason
    other_purpose = decide(session, receiving_org="region", **{**ask, "purpose": "sip"})
    assert other_purpose.reason == "consent is for another purpose"
    later = utcnow() + timedelta(days=60)
    assert decide(session, receiving_org="region", at=later, **ask).reason == "consent is not valid at this time"
    apply_withdrawn(session, ConsentWithdrawn(consent_id="c1", case_id="case-1", child_key=KEY,
                                              disclosing_org="school", receiving_orgs=["region"],
                                              withdrawn_at=utcnow()))
    session.commit()
    assert decide(session, receiving_org="region", **ask).reason == "consent was withdrawn"


def test_withdrawal_that_overtakes_its_grant_wins(session: Session) -> None:
    apply_withdrawn(session, ConsentWithdrawn(consent_id="c1", case_id="case-1", child_key=KEY,
                                              disclosing_org="school", receiving_orgs=["region"],
                                              withdrawn_at=utcnow()))
    apply_granted(session, _grant())
    session.commit()
    assert not decide(session, disclosing_org="school", receiving_org="region", child_key=KEY,
                      categories=["identity"], purpose="coordination_meeting").allowed


def _prepared() -> Disclosure:
    return prepare_disclosure(_invitation(), settings=SETTINGS, to_org="region", subject="m1",
                              principal=Principal(org="school", user="bba.norrskolan", role=Role.BBA),
                              child_ref="local-key")


def _verdict(disclosure: Disclosure, *, allowed: bool, event_id: str | None = None) -> DisclosureVerdict:
    return DisclosureVerdict(decision_id="d1", event_id=event_id or disclosure.envelope_id, allowed=allowed,
                             consent_id="c1" if allowed else None, reason="covered by consent" if allowed
                             else "consent was withdrawn", decided_at=utcnow())


def test_disclose_queues_only_what_the_consent_service_permitted_with_its_question(session: Session) -> None:
    disclosure = _prepared()
    assert disclosure.ask.categories == ["identity", "concern", "mapping_summary"]
    assert disclosure.ask.consent_id is None and disclosure.ask.requested_by == "bba.norrskolan"
    with pytest.raises(ConsentRequired) as refused:
        disclose(session, disclosure, _verdict(disclosure, allowed=False), settings=SETTINGS)
    assert "withdrawn" in refused.value.detail
    with pytest.raises(ValueError):
        disclose(session, disclosure, _verdict(disclosure, allowed=True, event_id="another"), settings=SETTINGS)
    envelope = disclose(session, disclosure, _verdict(disclosure, allowed=True), settings=SETTINGS)
    session.commit()
    assert envelope.consentid == "c1" and envelope.id == disclosure.envelope_id and envelope.subject == "m1"
    rows = session.exec(select(OutboxMessage)).all()
    assert [(r.nats_subject, r.stream) for r in rows] == [
        ("inbox.region.school.meetings.invitation.sent.v1", "INBOX")]
    # The relay asks again as it leaves, naming the consent it was queued under.
    assert rows[0].gate is not None and rows[0].gate["consent_id"] == "c1"
    assert rows[0].gate["child_ref"] == "local-key" and rows[0].gate["receiving_org"] == "region"


def test_protected_identity_needs_manual_review(session: Session) -> None:
    disclosure = _prepared()
    with pytest.raises(ManualReviewRequired):
        disclose(session, disclosure, _verdict(disclosure, allowed=True), settings=SETTINGS, protected_identity=True)
    disclose(session, disclosure, _verdict(disclosure, allowed=True), settings=SETTINGS, protected_identity=True,
             manually_reviewed=True)


def test_anonymous_messages_carry_no_identity_number(session: Session) -> None:
    ok = ConsultationRequested(consultation_id="q1", age_band="10-12", wheel_areas=["trygghet"],
                               question="Hur stöttar vi ett barn med ökad frånvaro?")
    send_anonymous(session, ok, settings=SETTINGS, to_org="social", subject="q1")
    leaky = ok.model_copy(update={"question": "Gäller 20130412-1237"})
    with pytest.raises(InvalidField) as info:
        send_anonymous(session, leaky, settings=SETTINGS, to_org="social", subject="q1")
    assert "20130412" not in info.value.detail
    with pytest.raises(TypeError):
        send_anonymous(session, _invitation(), settings=SETTINGS, to_org="social", subject="q1")
    with pytest.raises(InvalidField):
        send_anonymous(session, ok, settings=SETTINGS, to_org="school", subject="q1")


def test_a_generated_id_that_looks_like_an_identity_number_is_not_refused(session: Session) -> None:
    # One UUID in a few hundred starts with 8 digits, a dash and 4 digits: the shape of a personnummer.
    digit_heavy_id = "20130412-1237-4abc-9def-0123456789ab"
    ok = ConsultationRequested(consultation_id=digit_heavy_id, age_band="10-12", wheel_areas=["trygghet"],
                               question="Hur stöttar vi ett barn med ökad frånvaro?")
    envelope = send_anonymous(session, ok, settings=SETTINGS, to_org="social", subject=digit_heavy_id)
    assert envelope.data["consultation_id"] == digit_heavy_id


def test_a_timestamp_is_not_screened_as_text(session: Session) -> None:
    # As JSON "…T06:19:03.071234+00:00": its fraction of a second reads like a phone number (0 and 7 digits).
    stamp = utcnow().replace(hour=6, minute=19, second=3, microsecond=71234)
    ok = ConsultationRequested(consultation_id="q1", age_band="10-12", wheel_areas=["trygghet"],
                               question="Hur stöttar vi ett barn med ökad frånvaro?", proposed_at=stamp)
    envelope = send_anonymous(session, ok, settings=SETTINGS, to_org="social", subject="q1")
    assert envelope.data["proposed_at"].endswith("06:19:03.071234Z")
    with pytest.raises(InvalidField):  # the free text is screened as before
        send_anonymous(session, ok.model_copy(update={"question": "Ring 070-123 45 67"}), settings=SETTINGS,
                       to_org="social", subject="q1")
