"""A hostile federation member, with its real broker credentials, on its own legitimate inbox subjects.

Every message here is published the way a member's own services would (nats-py, JetStream, the
member's user and password), but forges what the subject cannot prove: the discloser of a consent,
the CloudEvents source, a reused consent id with wider terms, a withdrawal of someone else's consent.
The receivers are meetings services in-process, on a real nats-server with one account per
organisation and real SQLite files. Each forgery must be refused, dead-lettered without its data,
counted and logged without personal data, and change nothing at the receiver or at the discloser.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import orjson
import pytest
from fastapi.testclient import TestClient
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlmodel import Session, select

from tillsammans_common.events import INBOX_STREAM, Envelope, Event, inbox_subject, internal_subject
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.events.meetings import ChildIdentity, InvitationSent, WithdrawalApplied
from tillsammans_common.messaging import consumer
from tillsammans_common.messaging.consent_replica import decide, grant_of
from tillsammans_common.models import ConsentGrant, DeadLetter
from tillsammans_common.personnummer import pair_key
from tillsammans_common.telemetry import JsonLogFormatter, ingress_refusals
from tillsammans_common.testing import Federation, bearer, count_rows, engine_of, wait_for
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import ReceivedInvitation

PERSONNUMMER = "201304121237"
NAME = "Testbarn Testsson"
CONCERN = "Ökad frånvaro, oro i hemmet."
# What must never be kept of a refused message: the identity in any form, and the free text.
PERSONAL = (PERSONNUMMER, "20130412-1237", "Testbarn", "Testsson", "frånvaro", "oro i hemmet")
# A forger may put anything in a field; a dead letter must not keep it.
STUFFED_CASE_ID = f"{NAME} 20130412-1237"
CATEGORIES = ["identity", "concern", "mapping_summary"]
PURPOSE = "coordination_meeting"
Counts = Callable[[], Counter[tuple[str, str, str]]]


# --- the receivers -------------------------------------------------------------------------------

@contextmanager
def _meetings(federation: Federation, *orgs: str, **overrides: Any) -> Iterator[list[TestClient]]:
    # Few, fast redeliveries and no parking (unless overridden), so an uncovered message is dead-lettered
    # within the test.
    settings: dict[str, Any] = {"max_deliveries": 2, "redelivery_backoff_seconds": [0.05],
                                "parking_timeout_seconds": 0, **overrides}
    with ExitStack() as stack:
        yield [stack.enter_context(TestClient(create_app(MeetingsSettings(**federation.settings(org), **settings))))
               for org in orgs]


def _key(client: TestClient) -> str:
    """The child's key between this organisation and school (or region, for school itself)."""
    settings: MeetingsSettings = client.app.state.settings  # type: ignore[attr-defined]
    return pair_key(PERSONNUMMER, settings.pair_secret("region" if settings.org == "school" else "school"))


def _grants(client: TestClient) -> list[dict[str, Any]]:
    with Session(engine_of(client)) as session:
        return [row.model_dump() for row in session.exec(select(ConsentGrant).order_by(ConsentGrant.consent_id))]


def _grant_row(client: TestClient, consent_id: str, disclosing_org: str) -> dict[str, Any] | None:
    with Session(engine_of(client)) as session:
        row = grant_of(session, disclosing_org=disclosing_org, consent_id=consent_id)
        return row.model_dump() if row is not None else None


def _grant_row_of(rows: list[dict[str, Any]], consent_id: str, disclosing_org: str) -> dict[str, Any] | None:
    return next((row for row in rows if (row["consent_id"], row["disclosing_org"]) == (consent_id, disclosing_org)),
                None)


def _dead_letters(client: TestClient) -> list[DeadLetter]:
    with Session(engine_of(client)) as session:
        return list(session.exec(select(DeadLetter).order_by(DeadLetter.id)).all())


def _dead_letter_of(client: TestClient, envelope: Envelope) -> DeadLetter | None:
    return next((letter for letter in _dead_letters(client) if letter.event_id == envelope.id), None)


def _refused(client: TestClient, envelope: Envelope, what: str) -> DeadLetter:
    return wait_for(lambda: _dead_letter_of(client, envelope), message=f"{what} to be refused")


def _covered(client: TestClient, disclosing_org: str, receiving_org: str) -> bool:
    with Session(engine_of(client)) as session:
        return bool(decide(session, disclosing_org=disclosing_org, receiving_org=receiving_org,
                           child_key=_key(client), categories=CATEGORIES, purpose=PURPOSE).allowed)


# --- a member on the broker, with its own credentials -------------------------------------------

async def _connect(federation: Federation, org: str) -> Client:
    return await nats.connect(federation.url, user=org, password=federation.passwords[org], allow_reconnect=False)


async def _publish(federation: Federation, org: str, nats_subject: str, body: bytes, msg_id: str) -> int:
    client = await _connect(federation, org)
    try:
        ack = await client.jetstream().publish(nats_subject, body, headers={"Nats-Msg-Id": msg_id}, timeout=5)
        return int(ack.seq)
    finally:
        await client.close()


def _send(federation: Federation, sender: str, to: str, event: Event, *, source_org: str | None = None,
          consent_id: str | None = None, subject: str = "case-1") -> tuple[Envelope, int]:
    """Publish ``event`` as member ``sender`` on its own inbox subject at ``to``; the stream sequence too."""
    service = event.type.split(".")[0]
    envelope = Envelope.wrap(event, source=f"/orgs/{source_org or sender}/{service}", subject=subject,
                             consent_id=consent_id)
    seq = asyncio.run(_publish(federation, sender, inbox_subject(to, sender, event.type), envelope.to_bytes(),
                               envelope.id))
    return envelope, seq


def _record_own(federation: Federation, org: str, event: Event) -> Envelope:
    """Publish an event on ``org``'s own event stream, as its consent service does for its own consents."""
    envelope = Envelope.wrap(event, source=f"/orgs/{org}/consent", subject="case-1")
    asyncio.run(_publish(federation, org, internal_subject(org, event.type), envelope.to_bytes(), envelope.id))
    return envelope


async def _inbox_state(federation: Federation, org: str, seqs: list[int]) -> tuple[int, list[bool]]:
    client = await _connect(federation, org)
    try:
        js = client.jetstream()
        info = await js.stream_info(INBOX_STREAM)
        held = []
        for seq in seqs:
            try:
                await js.get_msg(INBOX_STREAM, seq)
                held.append(True)
            except NotFoundError:
                held.append(False)
        return info.state.messages, held
    finally:
        await client.close()


def _inbox_empty(federation: Federation, org: str, *seqs: int) -> bool:
    messages, held = asyncio.run(_inbox_state(federation, org, list(seqs)))
    return messages == 0 and not any(held)


def _consent(consent_id: str, key: str, *, disclosing_org: str, receiving_orgs: list[str],
             categories: list[str] | None = None, valid_days: int = 30, case_id: str | None = None) -> ConsentGranted:
    now = datetime.now(UTC).replace(microsecond=0)
    return ConsentGranted(consent_id=consent_id, case_id=case_id, child_key=key, disclosing_org=disclosing_org,
                          receiving_orgs=receiving_orgs, categories=categories or CATEGORIES, purpose=PURPOSE,
                          valid_from=now - timedelta(minutes=5), valid_until=now + timedelta(days=valid_days))


def _withdrawal(granted: ConsentGranted, **changes: Any) -> ConsentWithdrawn:
    fields = dict(consent_id=granted.consent_id, case_id=granted.case_id, child_key=granted.child_key,
                  disclosing_org=granted.disclosing_org, receiving_orgs=granted.receiving_orgs,
                  withdrawn_at=datetime.now(UTC))
    fields.update(changes)
    return ConsentWithdrawn(**fields)


def _invitation(key: str) -> InvitationSent:
    return InvitationSent(
        invitation_id=str(uuid.uuid4()), meeting_id=str(uuid.uuid4()), kind="samverkansmote",
        scheduled_at=datetime.now(UTC) + timedelta(days=7), child_key=key,
        child=ChildIdentity(personnummer=PERSONNUMMER, name=NAME), flagged_areas=["trygghet", "hemmet"],
        concern_summary=CONCERN, contact_user="bba.norrskolan")


# --- what refusals leave behind: a counter, log lines, dead letters ------------------------------

@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> Counts:
    """The receivers' refusal counter, read from an in-memory meter provider: counts per attribute set."""
    reader = InMemoryMetricReader()
    monkeypatch.setattr(consumer, "REFUSED", ingress_refusals(MeterProvider(metric_readers=[reader])))

    def counts() -> Counter[tuple[str, str, str]]:
        found: Counter[tuple[str, str, str]] = Counter()
        data = reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    assert metric.name == "tillsammans.ingress.refused"
                    for point in metric.data.data_points:
                        # Only these three, never an id or a value from the message.
                        assert set(point.attributes or {}) == {"event_type", "sender", "reason"}
                        attributes = dict(point.attributes or {})
                        found[(str(attributes["event_type"]), str(attributes["sender"]),
                               str(attributes["reason"]))] += int(point.value)  # type: ignore[union-attr]
        return found

    return counts


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(JsonLogFormatter(service="meetings", org="test"))
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def warnings_logged() -> Iterator[_Lines]:
    """The consumer's WARNING lines as the services write them (JSON); the services reset the root handlers."""
    handler = _Lines()
    logger = logging.getLogger(consumer.__name__)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _assert_kept_without_data(letters: list[DeadLetter]) -> None:
    assert letters
    for letter in letters:
        kept = orjson.loads(letter.body)
        assert "data" not in kept and set(kept) <= set(consumer.DEAD_LETTER_ATTRIBUTES), kept
        assert kept["id"] == letter.event_id
        row = letter.model_dump_json() + letter.body.decode()
        assert not [value for value in PERSONAL if value.casefold() in row.casefold()], row


def _assert_refusals_logged(handler: _Lines, expected: Counter[tuple[str, str, str]]) -> None:
    refused = [r for r in handler.records if r.getMessage() == "message from another organisation refused"]
    assert Counter((r.event_type, r.sender, r.reason) for r in refused) == expected  # type: ignore[attr-defined]
    for line in handler.lines:
        assert not [value for value in PERSONAL if value.casefold() in line.casefold()], line


# --- the tests ------------------------------------------------------------------------------------

def test_forged_and_widened_consent_grants_are_refused_and_change_nothing(
        federation: Federation, refusals: Counts, warnings_logged: _Lines) -> None:
    with _meetings(federation, "school", "region") as (school, region):
        key = _key(school)
        # School's own consent to region: on school's own stream, and replicated to region by school.
        own = _consent(str(uuid.uuid4()), key, disclosing_org="school", receiving_orgs=["region"])
        _record_own(federation, "school", own)
        _send(federation, "school", "region", own, consent_id=own.consent_id)
        # Social's consent to school and region, replicated by social.
        social = _consent(str(uuid.uuid4()), key, disclosing_org="social", receiving_orgs=["school", "region"])
        for to in ("school", "region"):
            _send(federation, "social", to, social, consent_id=social.consent_id)
        wait_for(lambda: len(_grants(school)) == 2 and len(_grants(region)) == 2, message="the real consents")
        assert _covered(school, "social", "school") and _covered(region, "school", "region")
        school_before, region_before = _grants(school), _grants(region)

        granted = ConsentGranted.type
        wider = dict(receiving_orgs=["school", "region", "social"], categories=[*CATEGORIES, "health"],
                     case_id=STUFFED_CASE_ID)
        forgeries: list[tuple[str, str, ConsentGranted, str | None, str]] = [
            # (sender, receiver, event, CloudEvents source org if forged, the refusal's reason code)
            ("region", "school", _consent(str(uuid.uuid4()), key, disclosing_org="social",
                                          receiving_orgs=["school"], case_id=STUFFED_CASE_ID),
             None, "sender_mismatch"),
            ("region", "school", _consent(str(uuid.uuid4()), key, disclosing_org="school",
                                          receiving_orgs=["school", "region"]), None, "sender_mismatch"),
            # The right source and discloser for the sender, but the source names another organisation.
            ("social", "school", _consent(str(uuid.uuid4()), key, disclosing_org="social",
                                          receiving_orgs=["school"]), "region", "source_mismatch"),
            ("region", "school", _consent(str(uuid.uuid4()), key, disclosing_org="region",
                                          receiving_orgs=["social"]), None, "not_a_receiver"),
            # A real consent id (school's, to region) reused by social with more receivers and categories and
            # a case id stuffed with the child, at school (whose own consent it is) and at region (which holds
            # it from school): a copy egress made never carries a case id.
            ("social", "school", own.model_copy(update={"disclosing_org": "social", **wider}), None,
             "case_id_crossed"),
            ("social", "region", own.model_copy(update={"disclosing_org": "social", **wider}), None,
             "case_id_crossed"),
            # Even its own discloser cannot widen a consent once the receiver has recorded it.
            ("school", "region", own.model_copy(update={
                "receiving_orgs": ["region", "social"], "valid_until": own.valid_until + timedelta(days=365)}),
             None, "terms_changed"),
        ]
        expected: Counter[tuple[str, str, str]] = Counter()
        for sender, receiver, event, source_org, code in forgeries:
            envelope, _ = _send(federation, sender, receiver, event, source_org=source_org,
                                consent_id=event.consent_id)
            target = school if receiver == "school" else region
            letter = _refused(target, envelope, f"{code} at {receiver}")
            assert letter.reason.startswith("Reject: ") and letter.event_type == granted
            expected[(granted, sender, code)] += 1

        assert refusals() == expected
        _assert_refusals_logged(warnings_logged, expected)
        _assert_kept_without_data(_dead_letters(school) + _dead_letters(region))
        assert _grants(school) == school_before and _grants(region) == region_before
        # Nothing opened a gate: no consent from region to school, and school's consent still names only region.
        assert not _covered(school, "region", "school")
        assert not _covered(school, "school", "social") and not _covered(region, "school", "social")
        # Refused or applied, every message has left both inboxes.
        wait_for(lambda: _inbox_empty(federation, "school") and _inbox_empty(federation, "region"),
                 message="empty inboxes")

        # The real discloser's next, different consent is recorded as usual.
        another = _consent(str(uuid.uuid4()), key, disclosing_org="social", receiving_orgs=["school"])
        _send(federation, "social", "school", another, consent_id=another.consent_id)
        wait_for(lambda: _grant_row(school, another.consent_id, "social"), message="social's new consent at school")
        assert refusals() == expected

        # Social reuses school's consent id, cleanly: that is social's own consent with that id, beside
        # school's, and it reaches nothing of school's (a consent is its discloser's id, decision 9's key).
        squat = own.model_copy(update={"disclosing_org": "social", "receiving_orgs": ["school", "region"],
                                       "categories": [*CATEGORIES, "health"]})
        for receiver, target in (("school", school), ("region", region)):
            _send(federation, "social", receiver, squat, consent_id=squat.consent_id)
            wait_for(lambda target=target: _grant_row(target, own.consent_id, "social"),  # type: ignore[misc]
                     message=f"social's own consent with that id at {receiver}")
        assert _grant_row(school, own.consent_id, "school") == _grant_row_of(school_before, own.consent_id, "school")
        assert _grant_row(region, own.consent_id, "school") == _grant_row_of(region_before, own.consent_id, "school")
        assert not _covered(school, "school", "social") and not _covered(region, "school", "social")
        assert refusals() == expected


def test_forged_withdrawals_never_touch_another_organisations_consent(
        federation: Federation, refusals: Counts, warnings_logged: _Lines) -> None:
    with _meetings(federation, "school") as (school,):
        key = _key(school)
        own = _consent(str(uuid.uuid4()), key, disclosing_org="school", receiving_orgs=["region"])
        _record_own(federation, "school", own)
        social = _consent(str(uuid.uuid4()), key, disclosing_org="social", receiving_orgs=["school", "region"])
        _send(federation, "social", "school", social, consent_id=social.consent_id)
        wait_for(lambda: len(_grants(school)) == 2, message="the real consents at school")
        before = _grants(school)

        withdrawn = ConsentWithdrawn.type
        forgeries: list[tuple[str, ConsentWithdrawn, str]] = [
            # Region withdraws social's consent (a third organisation's), naming social, then itself.
            ("region", _withdrawal(social), "sender_mismatch"),
            ("region", _withdrawal(social, disclosing_org="region", case_id=STUFFED_CASE_ID), "case_id_crossed"),
            # Social tries to withdraw school's own consent at school, as school.
            ("social", _withdrawal(own, receiving_orgs=["school"]), "sender_mismatch"),
        ]
        expected: Counter[tuple[str, str, str]] = Counter()
        for sender, event, code in forgeries:
            envelope, _ = _send(federation, sender, "school", event, consent_id=event.consent_id)
            letter = _refused(school, envelope, f"{code} at school")
            assert letter.reason.startswith("Reject: ") and letter.event_type == withdrawn
            expected[(withdrawn, sender, code)] += 1

        assert refusals() == expected
        _assert_refusals_logged(warnings_logged, expected)
        _assert_kept_without_data(_dead_letters(school))
        assert _grants(school) == before
        assert _covered(school, "social", "school") and _covered(school, "school", "region")

        # A withdrawal that overtakes its grant is kept as withdrawn, under its own discloser only.
        early = _withdrawal(_consent(str(uuid.uuid4()), key, disclosing_org="region", receiving_orgs=["school"]))
        _send(federation, "region", "school", early, consent_id=early.consent_id)
        row = wait_for(lambda: _grant_row(school, early.consent_id, "region"), message="the early withdrawal at school")
        assert row["withdrawn_at"] is not None
        # Region and social "withdraw" school's own consent id as their own: each is a withdrawn consent of
        # the sender's own with that id, and school's consent is untouched.
        for sender in ("region", "social"):
            _send(federation, sender, "school", _withdrawal(own, disclosing_org=sender, receiving_orgs=["school"]),
                  consent_id=own.consent_id)
            wait_for(lambda sender=sender: _grant_row(school, own.consent_id, sender),  # type: ignore[misc]
                     message=f"{sender}'s own withdrawn id at school")
        # The real discloser withdraws its own consent: that works, and touches nothing else.
        _send(federation, "social", "school", _withdrawal(social), consent_id=social.consent_id)
        wait_for(lambda: not _covered(school, "social", "school"), message="social's withdrawal at school")
        assert _covered(school, "school", "region")
        assert _grant_row(school, own.consent_id, "school") == _grant_row_of(before, own.consent_id, "school")
        assert refusals() == expected
        wait_for(lambda: _inbox_empty(federation, "school"), message="school's inbox to empty")


def test_an_invitation_from_a_member_posing_as_another_is_refused_and_its_identity_not_kept(
        federation: Federation, refusals: Counts, warnings_logged: _Lines) -> None:
    with _meetings(federation, "region") as (region,):
        key = _key(region)
        consent = _consent(str(uuid.uuid4()), key, disclosing_org="school", receiving_orgs=["region"])
        _send(federation, "school", "region", consent, consent_id=consent.consent_id)
        wait_for(lambda: _covered(region, "school", "region"), message="school's consent at region")

        sent = InvitationSent.type
        # Social sends school's invitation under school's consent: as school (source), then as itself.
        posing, _ = _send(federation, "social", "region", _invitation(key), source_org="school",
                          consent_id=consent.consent_id)
        riding, _ = _send(federation, "social", "region", _invitation(key), consent_id=consent.consent_id)
        posing_letter = _refused(region, posing, "the invitation posing as school")
        riding_letter = _refused(region, riding, "the invitation riding on school's consent")
        assert posing_letter.reason.startswith("Reject: sender in envelope")
        # Social holds no consent of its own for this child: retried (it might be on its way), then refused.
        assert riding_letter.reason.startswith("Retry: ") and riding_letter.deliveries == 2
        expected = Counter({(sent, "social", "source_mismatch"): 1, (sent, "social", "not_covered"): 1})
        assert refusals() == expected
        _assert_refusals_logged(warnings_logged, expected)
        _assert_kept_without_data(_dead_letters(region))
        assert count_rows(region, ReceivedInvitation) == 0

        # The same invitation from school itself is received: the refusals were about the sender.
        real, _ = _send(federation, "school", "region", _invitation(key), consent_id=consent.consent_id)
        wait_for(lambda: count_rows(region, ReceivedInvitation) == 1, message="school's invitation at region")
        assert refusals() == expected
        wait_for(lambda: _inbox_empty(federation, "region"), message="region's inbox to empty")


def test_a_processed_invitation_leaves_the_receivers_inbox_stream(federation: Federation) -> None:
    with _meetings(federation, "region") as (region,):
        key = _key(region)
        consent = _consent(str(uuid.uuid4()), key, disclosing_org="school", receiving_orgs=["region"])
        _, consent_seq = _send(federation, "school", "region", consent, consent_id=consent.consent_id)
        wait_for(lambda: _covered(region, "school", "region"), message="school's consent at region")
        _, seq = _send(federation, "school", "region", _invitation(key), consent_id=consent.consent_id)
        wait_for(lambda: count_rows(region, ReceivedInvitation) == 1, message="the invitation at region")
        wait_for(lambda: _inbox_empty(federation, "region", consent_seq, seq),
                 message="region's INBOX stream to drop what was processed")


def test_a_message_for_a_receiver_that_is_down_waits_in_its_inbox_until_it_is_processed(
        federation: Federation) -> None:
    # Interest retention keeps a message only for consumers that exist: the durable consumers,
    # created when the service first starts, must outlive the service being stopped.
    with _meetings(federation, "region") as (region,):
        key = _key(region)
    consent = _consent(str(uuid.uuid4()), key, disclosing_org="school", receiving_orgs=["region"])
    _, consent_seq = _send(federation, "school", "region", consent, consent_id=consent.consent_id)
    _, seq = _send(federation, "school", "region", _invitation(key), consent_id=consent.consent_id)
    messages, held = asyncio.run(_inbox_state(federation, "region", [consent_seq, seq]))
    assert messages == 2 and held == [True, True]
    with _meetings(federation, "region") as (region,):
        wait_for(lambda: count_rows(region, ReceivedInvitation) == 1, message="the invitation once region is back")
        wait_for(lambda: _inbox_empty(federation, "region", consent_seq, seq), message="region's inbox to empty")


def test_a_forged_withdrawal_receipt_is_refused_and_the_consent_still_shows_pending(
        federation: Federation, with_consent: Callable[..., Any], seed: Callable[..., Any], grant: Callable[..., Any],
        withdraw: Callable[..., Any]) -> None:
    with _meetings(federation, "school") as (school,), with_consent(school) as consent_service:
        seed(school)
        consent = grant(school, receiving=["region"], share=False)
        withdraw(school, consent)
        receipt = WithdrawalApplied(consent_id=consent.consent_id, disclosing_org="school", receiving_org="social",
                                    purged_records=1, purged_at=datetime.now(UTC))
        # Social was never given the consent; then social claims to be region.
        not_a_receiver, _ = _send(federation, "social", "school", receipt, subject=consent.consent_id)
        posing, _ = _send(federation, "social", "school", receipt.model_copy(update={"receiving_org": "region"}),
                          subject=consent.consent_id)
        for envelope in (not_a_receiver, posing):
            _refused(consent_service, envelope, "the forged receipt")
        shown = consent_service.get(f"/consents/{consent.consent_id}",
                                    headers=bearer("school", "bba", "bba.norrskolan")).json()
        assert shown["receivers"] == [{"org": "region", "state": "pending", "purged_at": None,
                                       "purged_records": None}]
        _assert_kept_without_data(_dead_letters(consent_service))


# --- parked until its consent arrives (decision 14) ------------------------------------------------

ADMIN = bearer("region", "admin", "operator.region")


def _admin_list(client: TestClient, what: str) -> list[dict[str, Any]]:
    response = client.get(f"/admin/{what}", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert not [value for value in PERSONAL if value.casefold() in response.text.casefold()], response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_an_invitation_that_overtakes_its_consent_is_parked_and_applied_when_the_consent_arrives(
        federation: Federation) -> None:
    with _meetings(federation, "region", parking_timeout_seconds=3600) as (region,):
        key = _key(region)
        consent = _consent(str(uuid.uuid4()), key, disclosing_org="school", receiving_orgs=["region"])
        invitation, _ = _send(federation, "school", "region", _invitation(key), consent_id=consent.consent_id)
        parked = wait_for(lambda: _admin_list(region, "parked"), message="the invitation to be parked")
        assert [(item["event_id"], item["state"], item["reason_code"]) for item in parked] == [
            (invitation.id, "parked", "not_covered")]
        assert parked[0]["deliveries"] == 2 and not parked[0]["replayable"]
        assert _admin_list(region, "dead-letters") == [] and count_rows(region, DeadLetter) == 0
        assert count_rows(region, ReceivedInvitation) == 0
        # Parking took it out of the INBOX: the INBOX held it until then, the PARKED stream holds it now.
        wait_for(lambda: _inbox_empty(federation, "region"), message="region's inbox to empty")

        _send(federation, "school", "region", consent, consent_id=consent.consent_id)
        wait_for(lambda: count_rows(region, ReceivedInvitation) == 1, message="the parked invitation applied")
        wait_for(lambda: _admin_list(region, "parked") == [], message="the parking to empty")
        assert _admin_list(region, "dead-letters") == [] and count_rows(region, DeadLetter) == 0


def test_a_parked_invitation_whose_consent_never_comes_is_dead_lettered_without_data_after_the_timeout(
        federation: Federation) -> None:
    with _meetings(federation, "region", parking_timeout_seconds=0.3, parking_sweep_seconds=0.1) as (region,):
        key = _key(region)
        invitation, _ = _send(federation, "school", "region", _invitation(key), consent_id=str(uuid.uuid4()))
        letters = wait_for(lambda: _admin_list(region, "dead-letters"), message="the invitation dead-lettered")
        assert [(item["event_id"], item["reason_code"], item["data_kept"], item["replayable"])
                for item in letters] == [(invitation.id, "not_covered", False, False)]
        assert "parking timed out" in letters[0]["reason"]
        assert _admin_list(region, "parked") == []
        shown = region.get(f"/admin/dead-letters/{letters[0]['id']}", headers=ADMIN)
        assert shown.status_code == 200 and shown.json()["event_type"] == InvitationSent.type
        assert not [value for value in PERSONAL if value.casefold() in shown.text.casefold()], shown.text
        # Its data was not kept: only the sender can send it again.
        replay = region.post(f"/admin/dead-letters/{letters[0]['id']}/replay", headers=ADMIN)
        assert replay.status_code == 409 and "sender must send it again" in replay.json()["detail"]
        assert region.get("/admin/dead-letters", headers=bearer("region", "bba")).status_code == 403
        assert count_rows(region, ReceivedInvitation) == 0
        _assert_kept_without_data(_dead_letters(region))
