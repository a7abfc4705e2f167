"""A replicated consent is the sender's own, names the receiver, and never changes once recorded."""

from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlmodel import Session, select

from tillsammans_common.db import make_engine, migrate, utcnow
from tillsammans_common.events import Envelope
from tillsammans_common.events.consent import ConsentGranted, ConsentWithdrawn
from tillsammans_common.events.meetings import InvitationSent
from tillsammans_common.messaging.consent_replica import apply_granted, apply_withdrawn, decide
from tillsammans_common.messaging.consumer import redacted, stream_configs
from tillsammans_common.messaging.refusals import Reject
from tillsammans_common.models import ConsentGrant

KEY = "a" * 64
NOW = utcnow().replace(microsecond=0)


@pytest.fixture
def session(tmp_path: Path) -> Session:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine, tmp_path / "no-service-versions")
    return Session(engine)


def _grant(**overrides: Any) -> ConsentGranted:
    fields: dict[str, Any] = dict(
        consent_id="c1", case_id=None, child_key=KEY, disclosing_org="school", receiving_orgs=["region"],
        categories=["identity", "concern"], purpose="coordination_meeting", valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=30))
    fields.update(overrides)
    return ConsentGranted(**fields)


def _withdrawal(**overrides: Any) -> ConsentWithdrawn:
    fields: dict[str, Any] = dict(consent_id="c1", case_id=None, child_key=KEY, disclosing_org="school",
                                  receiving_orgs=["region"], withdrawn_at=NOW)
    fields.update(overrides)
    return ConsentWithdrawn(**fields)


def _rows(session: Session) -> list[dict[str, Any]]:
    session.expire_all()
    return [row.model_dump() for row in session.exec(select(ConsentGrant).order_by(ConsentGrant.consent_id))]


def _allowed(session: Session, disclosing_org: str = "school", receiving_org: str = "region") -> bool:
    return bool(decide(session, disclosing_org=disclosing_org, receiving_org=receiving_org, child_key=KEY,
                       categories=["identity"], purpose="coordination_meeting").allowed)


@pytest.mark.parametrize(("event", "org", "sender", "code"), [
    (_grant(disclosing_org="social"), "region", "school", "sender_mismatch"),
    (_grant(disclosing_org="region"), "region", "school", "own_consent"),
    (_grant(disclosing_org="region", receiving_orgs=["school"]), "region", "region", "own_consent"),
    (_grant(receiving_orgs=["social"]), "region", "school", "not_a_receiver"),
    (_grant(disclosing_org="social"), "school", None, "not_own_consent"),
    (_withdrawal(disclosing_org="social"), "region", "school", "sender_mismatch"),
    (_withdrawal(disclosing_org="region"), "region", "school", "own_consent"),
    (_withdrawal(receiving_orgs=["social"]), "region", "school", "not_a_receiver"),
    # A copy made by egress never carries the discloser's case id; a forger could put anything there.
    (_grant(case_id="Testbarn 20130412-1237"), "region", "school", "case_id_crossed"),
    (_withdrawal(case_id="case-1"), "region", "school", "case_id_crossed"),
])
def test_a_consent_that_is_not_the_senders_own_for_this_receiver_is_refused(
        session: Session, event: ConsentGranted | ConsentWithdrawn, org: str, sender: str | None, code: str) -> None:
    apply = apply_granted if isinstance(event, ConsentGranted) else apply_withdrawn
    with pytest.raises(Reject) as refused:
        apply(session, event, org=org, replicated_from=sender)
    assert refused.value.code == code
    assert _rows(session) == []


def test_an_identical_replay_is_a_no_op_and_offsets_are_kept_as_the_same_instant(session: Session) -> None:
    stockholm = timezone(timedelta(hours=1))
    first = _grant(valid_from=(NOW - timedelta(days=1)).astimezone(stockholm))
    apply_granted(session, first, org="region", replicated_from="school")
    session.commit()
    before = _rows(session)
    # The same consent as the consent service's UTC copy, and as its original: both the same terms.
    apply_granted(session, _grant(), org="region", replicated_from="school")
    apply_granted(session, first, org="region", replicated_from="school")
    session.commit()
    assert _rows(session) == before
    assert before[0]["valid_from"].replace(tzinfo=UTC) == NOW - timedelta(days=1)
    assert _allowed(session)


@pytest.mark.parametrize("change", [
    {"receiving_orgs": ["region", "social"]},
    {"categories": ["identity", "concern", "mapping_summary"]},
    {"valid_until": NOW + timedelta(days=365)},
    {"valid_from": NOW - timedelta(days=30)},
    {"purpose": "sip"},
    {"child_key": "b" * 64},
    {"categories": ["identity"]},  # narrower is still another consent than the guardians' one
])
def test_a_recorded_consent_cannot_be_changed_by_its_own_discloser_re_sending_it(
        session: Session, change: dict[str, Any]) -> None:
    apply_granted(session, _grant(), org="region", replicated_from="school")
    session.commit()
    before = _rows(session)
    with pytest.raises(Reject) as refused:
        apply_granted(session, _grant(**change), org="region", replicated_from="school")
    assert refused.value.code == "terms_changed"
    session.rollback()
    assert _rows(session) == before


def test_a_consent_id_of_one_discloser_is_never_another_ones(session: Session) -> None:
    # Region's own consent, and school's consent replicated to region.
    apply_granted(session, _grant(consent_id="own", disclosing_org="region", receiving_orgs=["school"]), org="region")
    apply_granted(session, _grant(consent_id="school-1"), org="region", replicated_from="school")
    session.commit()
    before = _rows(session)
    # Social reuses both ids, wider, and withdraws "them": each is social's own consent, beside the others.
    for consent_id in ("own", "school-1"):
        apply_granted(session, _grant(consent_id=consent_id, disclosing_org="social",
                                      receiving_orgs=["region", "school"], categories=["identity", "health"]),
                      org="region", replicated_from="social")
        apply_withdrawn(session, _withdrawal(consent_id=consent_id, disclosing_org="social",
                                             receiving_orgs=["region"]), org="region", replicated_from="social")
    session.commit()
    rows = _rows(session)
    assert [row for row in rows if row["disclosing_org"] != "social"] == before
    assert sorted((row["consent_id"], row["withdrawn_at"] is not None) for row in rows
                  if row["disclosing_org"] == "social") == [("own", True), ("school-1", True)]
    # Nothing social sent reached region's or school's consent: both still open the gate as before.
    assert _allowed(session) and _allowed(session, "region", "school")
    assert not _allowed(session, "social")


def test_an_id_taken_first_by_another_member_does_not_stop_the_real_consent(session: Session) -> None:
    # Social learned the id of school's consent (it is one of its receivers) and races it to region.
    apply_granted(session, _grant(consent_id="shared", disclosing_org="social", receiving_orgs=["region"],
                                  categories=["identity"]), org="region", replicated_from="social")
    apply_withdrawn(session, _withdrawal(consent_id="shared", disclosing_org="social", receiving_orgs=["region"]),
                    org="region", replicated_from="social")
    session.commit()
    # School's real consent with that id still arrives and opens school's gate, and only school's.
    apply_granted(session, _grant(consent_id="shared"), org="region", replicated_from="school")
    session.commit()
    assert _allowed(session) and not _allowed(session, "social")


def test_a_withdrawal_that_overtakes_its_grant_only_binds_its_own_discloser(session: Session) -> None:
    apply_withdrawn(session, _withdrawal(consent_id="early", disclosing_org="social"), org="region",
                    replicated_from="social")
    session.commit()
    row = _rows(session)[0]
    assert row["disclosing_org"] == "social" and row["withdrawn_at"] is not None
    # School's grant with that id is not the consent social withdrew: it is school's, and in force.
    apply_granted(session, _grant(consent_id="early"), org="region", replicated_from="school")
    session.commit()
    assert _allowed(session)
    # Social's own late grant fills in the terms of its own, and that stays withdrawn.
    apply_granted(session, _grant(consent_id="early", disclosing_org="social"), org="region",
                  replicated_from="social")
    session.commit()
    social = next(row for row in _rows(session) if row["disclosing_org"] == "social")
    assert social["categories"] == ["identity", "concern"] and social["withdrawn_at"] is not None
    assert not _allowed(session, "social")


def test_the_first_withdrawal_counts(session: Session) -> None:
    apply_granted(session, _grant(), org="region", replicated_from="school")
    apply_withdrawn(session, _withdrawal(), org="region", replicated_from="school")
    apply_withdrawn(session, _withdrawal(withdrawn_at=NOW + timedelta(days=3)), org="region",
                    replicated_from="school")
    session.commit()
    assert _rows(session)[0]["withdrawn_at"].replace(tzinfo=UTC) == NOW
    assert not _allowed(session)


def test_a_redacted_dead_letter_keeps_the_cloudevents_attributes_and_no_data() -> None:
    envelope = Envelope(source="/orgs/school/meetings", type=InvitationSent.type, subject="case-1",
                        consentid="c1", data={"child": {"personnummer": "201304121237", "name": "Testbarn"},
                                              "concern_summary": "Oro i hemmet"})
    kept = orjson.loads(redacted(envelope.to_bytes()))
    assert kept == {"specversion": "1.0", "id": envelope.id, "source": "/orgs/school/meetings",
                    "type": "meetings.invitation.sent.v1", "subject": "case-1", "consentid": "c1",
                    "time": envelope.model_dump(mode="json")["time"]}
    # Not an envelope, an invented type, or an attribute that is not a short string: nothing of it kept.
    assert orjson.loads(redacted(b"201304121237 Testbarn")) == {}
    odd = {"id": {"personnummer": "201304121237"}, "type": "Testbarn Testsson", "subject": "x" * 300,
           "data": {"name": "Testbarn"}}
    assert orjson.loads(redacted(orjson.dumps(odd))) == {}


def test_the_inbox_keeps_a_message_only_while_a_consumer_wants_it_and_never_beyond_its_maximum_age() -> None:
    events, inbox = stream_configs("region", inbox_max_age_seconds=3600)
    assert inbox.retention is not None and inbox.retention.value == "interest"
    assert inbox.max_age == 3600 and inbox.duplicate_window == 120
    assert events.retention is None or events.retention.value == "limits"
    _, short = stream_configs("region", inbox_max_age_seconds=60)
    assert short.duplicate_window == 60  # JetStream refuses a duplicate window longer than the maximum age
