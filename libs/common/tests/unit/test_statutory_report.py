"""The orosanmälan's exception to the consent rule, as a table: the egress sends a statutory report only to the
social services of the child's municipality, and only such an organisation's ingress accepts it (decision 23)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from tillsammans_common.auth import Principal, Role
from tillsammans_common.db import make_engine, migrate, utcnow
from tillsammans_common.errors import InvalidField
from tillsammans_common.events import Envelope, Event, inbox_subject
from tillsammans_common.events.consent import ConsentGranted
from tillsammans_common.events.intake import OROSANMALAN_BASIS, ReportAcknowledged, ReportFiled
from tillsammans_common.events.meetings import ChildIdentity, ConsultationRequested, InvitationSent
from tillsammans_common.messaging.consent_replica import apply_granted
from tillsammans_common.messaging.consumer import _check_ingress
from tillsammans_common.messaging.egress import file_statutory_report, prepare_disclosure, send_receipt
from tillsammans_common.messaging.refusals import Reject, Retry
from tillsammans_common.models import AuditRecord, OutboxMessage
from tillsammans_common.settings import ServiceSettings

KEY = "a" * 64
BBA = Principal(org="school", user="bba.norrskolan", role=Role.BBA)


@pytest.fixture
def session(tmp_path: Path) -> Session:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine, tmp_path / "no-service-versions")
    return Session(engine)


def _report(*, sender: str = "school", receiver: str = "social", **overrides: object) -> ReportFiled:
    fields: dict[str, object] = dict(
        report_id="4f1c2a9e-0000-4000-8000-000000000001", reporting_org=sender, receiving_org=receiver,
        municipality_code="0484", child_personnummer="201304121237", child_name="Testbarn Testsson",
        protected_identity=False, grounds="Blåmärken på armarna, säger att pappa blir arg.", wheel_id="sormland",
        wheel_areas=["trygghet"], reporting_unit="Norrskolan F-6", reported_by_role="bba",
        contact_user="bba.norrskolan", urgent=True, legal_basis=OROSANMALAN_BASIS, filed_at=utcnow())
    fields.update(overrides)
    return ReportFiled(**fields)


def _invitation() -> InvitationSent:
    return InvitationSent(
        invitation_id="i1", meeting_id="m1", kind="samverkansmote", scheduled_at=utcnow(), child_key=KEY,
        child=ChildIdentity(personnummer="201304121237", name="Testbarn"), flagged_areas=["trygghet"],
        concern_summary="...", contact_user="bba")


def _consultation() -> ConsultationRequested:
    return ConsultationRequested(consultation_id="q1", age_band="10-12", wheel_areas=["trygghet"],
                                 question="Hur stöttar vi ett barn med ökad frånvaro?")


EVENTS: dict[str, Event] = {"orosanmälan": _report(), "invitation": _invitation(), "consultation": _consultation()}

# (event, receiver) -> what file_statutory_report does: "queued", or the exception it raises.
EGRESS: list[tuple[str, str, str]] = [
    ("orosanmälan", "social", "queued"),
    ("orosanmälan", "region", "InvalidField"),  # health care is not social services
    ("orosanmälan", "school", "InvalidField"),  # not another organisation
    ("orosanmälan", "police", "InvalidField"),  # not in the federation
    ("invitation", "social", "TypeError"),  # identifying, but needs its consent: disclose()
    ("consultation", "social", "TypeError"),  # carries no identity: send_anonymous()
]


@pytest.mark.parametrize(("event", "receiver", "outcome"), EGRESS)
def test_the_statutory_path_takes_only_statutory_reports_to_social_services(
        session: Session, event: str, receiver: str, outcome: str) -> None:
    payload = EVENTS[event]
    if isinstance(payload, ReportFiled):
        payload = payload.model_copy(update={"receiving_org": receiver})
    settings = ServiceSettings(org="school")
    try:
        envelope = file_statutory_report(session, payload, settings=settings, to_org=receiver, subject="r1",
                                         municipality_code="0484", principal=BBA, case_id="case-1",
                                         basis="bba-of-unit")
    except (InvalidField, TypeError) as refused:
        assert type(refused).__name__ == outcome
        session.rollback()
        assert session.exec(select(OutboxMessage)).all() == []
        return
    session.commit()
    assert outcome == "queued"
    rows = session.exec(select(OutboxMessage)).all()
    assert [(row.nats_subject, row.gate, row.event_id) for row in rows] == [
        ("inbox.social.school.intake.report.filed.v1", None, envelope.id)]
    assert envelope.consentid is None and envelope.subject == "r1"
    audited = session.exec(select(AuditRecord)).one()
    assert (audited.action, audited.purpose, audited.case_id, audited.basis) == (
        "disclose.statutory:intake.report.filed.v1", OROSANMALAN_BASIS, "case-1", "bba-of-unit")


def test_the_statutory_path_refuses_a_municipality_the_receiver_does_not_serve(session: Session) -> None:
    with pytest.raises(InvalidField) as refused:
        file_statutory_report(session, _report(municipality_code="0180"), settings=ServiceSettings(org="school"),
                              to_org="social", subject="r1", municipality_code="0180", principal=BBA)
    assert refused.value.extra["errors"][0]["field"] == "org"


def test_the_statutory_path_refuses_a_report_naming_another_receiver_sender_or_basis(session: Session) -> None:
    settings = ServiceSettings(org="school")
    for report, field in ((_report(receiver="region"), "receiving_org"), (_report(sender="region"), "reporting_org"),
                          (_report(legal_basis="OSL 10 kap."), "legal_basis")):
        with pytest.raises(InvalidField) as refused:
            file_statutory_report(session, report, settings=settings, to_org="social", subject="r1",
                                  municipality_code="0484", principal=BBA)
        assert refused.value.extra["errors"][0]["field"] == field


def test_a_statutory_report_never_goes_under_a_consent_or_as_a_receipt() -> None:
    # The consent path stays as it was: the statutory report cannot borrow it, nor the receipt path.
    with pytest.raises(TypeError):
        prepare_disclosure(_report(), settings=ServiceSettings(org="school"), to_org="social", subject="r1",
                           principal=BBA, child_ref=KEY)
    with pytest.raises(TypeError):
        send_receipt(None, _report(), settings=ServiceSettings(org="school"), to_org="social",  # type: ignore[arg-type]
                     subject="r1")


def _grant(receiver: str, sender: str) -> ConsentGranted:
    now = utcnow()
    return ConsentGranted(consent_id=f"c-{sender}-{receiver}", case_id="case-1", child_key=KEY, disclosing_org=sender,
                          receiving_orgs=[receiver], categories=["identity", "concern", "mapping_summary"],
                          purpose="coordination_meeting", valid_from=now - timedelta(days=1),
                          valid_until=now + timedelta(days=30))


def _arrives(session: Session, payload: Event, *, receiver: str, sender: str) -> str:
    """What the receiver's ingress does with ``payload`` from ``sender``: "accepted" or the refusal's code."""
    envelope = Envelope.wrap(payload, source=f"/orgs/{sender}/intake", subject="r1")
    try:
        _check_ingress(session, ServiceSettings(org=receiver), envelope, payload,
                       inbox_subject(receiver, sender, payload.type))
    except (Reject, Retry) as refused:
        return f"{type(refused).__name__}:{refused.code}"
    return "accepted"


# (receiver and its kind, event, a consent covers it) -> what the receiver's ingress does.
INGRESS: list[tuple[str, str, bool, str]] = [
    ("social", "orosanmälan", False, "accepted"),  # social services, no consent: the law's exception
    ("social", "orosanmälan", True, "accepted"),
    ("region", "orosanmälan", False, "Reject:not_statutory_receiver"),  # health care
    ("region", "orosanmälan", True, "Reject:not_statutory_receiver"),  # a consent does not make it one
    ("school", "orosanmälan", False, "Reject:not_statutory_receiver"),  # education
    ("social", "invitation", False, "Retry:not_covered"),  # social services still need consent for the rest
    ("social", "invitation", True, "accepted"),
    ("region", "invitation", False, "Retry:not_covered"),
    ("region", "invitation", True, "accepted"),
]


@pytest.mark.parametrize(("receiver", "event", "consent", "outcome"), INGRESS)
def test_only_social_services_accept_a_statutory_report_without_consent(
        session: Session, receiver: str, event: str, consent: bool, outcome: str) -> None:
    sender = "region" if receiver == "school" else "school"
    payload = EVENTS[event]
    if isinstance(payload, ReportFiled):
        payload = _report(sender=sender, receiver=receiver)
    if consent:
        apply_granted(session, _grant(receiver, sender))
        session.commit()
    assert _arrives(session, payload, receiver=receiver, sender=sender) == outcome


@pytest.mark.parametrize(("sender", "payload", "outcome"), [
    ("region", _report(sender="school"), "Reject:sender_mismatch"),  # claims another sender
    ("school", _report(receiver="region"), "Reject:not_a_receiver"),  # meant for another organisation
    ("police", _report(sender="police"), "Reject:unknown_sender"),  # not a member of social's federation
    ("school", _report(legal_basis="OSL 10 kap. 2 §"), "Reject:wrong_legal_basis"),
    ("school", _report(municipality_code="0180"), "Reject:not_served"),  # Stockholm's child: not ours
    ("social", _report(sender="social"), "Reject:own_inbox"),
])
def test_social_services_refuse_a_forged_statutory_report(
        session: Session, sender: str, payload: ReportFiled, outcome: str) -> None:
    assert _arrives(session, payload, receiver="social", sender=sender) == outcome


def test_the_receipt_names_no_child_and_its_organisations_are_checked(session: Session) -> None:
    receipt = ReportAcknowledged(report_id="r1", reporting_org="school", receiving_org="social",
                                 receiver_reference="x1", received_at=utcnow())
    assert not receipt.identifying
    assert _arrives(session, receipt, receiver="school", sender="social") == "accepted"
    assert _arrives(session, receipt, receiver="school", sender="region") == "Reject:sender_mismatch"
    assert _arrives(session, receipt, receiver="region", sender="social") == "Reject:not_a_receiver"
