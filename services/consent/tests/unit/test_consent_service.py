"""Consent's domain operations against a real, migrated SQLite file (no broker needed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.auth import AccessRefused, Principal, Role
from tillsammans_common.db import make_engine, migrate
from tillsammans_common.errors import Conflict, InvalidField, NotFound
from tillsammans_common.models import AuditRecord, ConsentGrant, OutboxMessage
from tillsammans_common.personnummer import child_key, luhn_check_digit
from tillsammans_common.testing import seed_case
from tillsammans_consent import service
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.main import VERSIONS
from tillsammans_consent.models import (
    AppendOnlyError,
    Consent,
    ConsentCreate,
    ConsentHistory,
    ConsentStatus,
    ConsentWithdraw,
    DecisionRequest,
)

SETTINGS = ConsentSettings(org="school", peers=["school", "region", "social"])
BBA = Principal(org="school", user="bba.anna", role=Role.BBA)
NOW = datetime.now(UTC)
BORN = date(NOW.year - 10, 3, 1)
PERSONNUMMER = f"{BORN:%Y%m%d}{'238'}{luhn_check_digit(BORN.strftime('%y%m%d') + '238')}"
KEY = child_key(PERSONNUMMER, SETTINGS.child_key_secret.get_secret_value())


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated database that knows case-1, the child's case whose BBA is bba.anna."""
    engine = make_engine(f"sqlite:///{tmp_path / 'consent.db'}")
    migrate(engine, VERSIONS)
    seed_case(engine, SETTINGS, case_id="case-1", personnummer=PERSONNUMMER, unit_id="norrskolan",
              bba_user=BBA.user)
    yield engine
    engine.dispose()


def access_to(session: Session, consent_id: str, principal: Principal = BBA) -> policy.Access:
    """The access a withdrawal route would hold: its record resolved, the caller's relation checked."""
    return policy.check(principal, policy.Action.CASE_WORK, service.consent_facts(session, consent_id))


def consent_create(**changes: Any) -> ConsentCreate:
    body: dict[str, Any] = {
        "case_id": "case-1", "child": {"personnummer": PERSONNUMMER}, "custody": "sole",
        "grantors": [{"role": "guardian", "name": "Vårdnadshavare Ett", "given_at": NOW.isoformat()}],
        "child_view": {"heard": True, "agrees": None, "note": "Vill att mentorn är med."},
        "receiving_orgs": ["region", "social", "region"], "categories": ["concern", "concern", "health"],
        "purpose": "sip", "valid_from": (NOW - timedelta(hours=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=90)).astimezone().isoformat(),
    }
    return ConsentCreate.model_validate({**body, **changes})


def ask(**changes: Any) -> DecisionRequest:
    body: dict[str, Any] = {"disclosing_org": "school", "receiving_org": "region", "child_key": KEY,
                            "categories": ["concern"], "purpose": "sip"}
    return DecisionRequest.model_validate({**body, **changes})


def test_grant_writes_record_history_replica_and_events_in_one_go(engine: Engine) -> None:
    with Session(engine) as session:
        consent = service.grant_consent(session, settings=SETTINGS, principal=BBA, data=consent_create())
        session.commit()
        consent_id = consent.id
    with Session(engine) as session:
        stored = session.get(Consent, consent_id)
        assert stored is not None
        assert stored.child_key == KEY and stored.child_personnummer == PERSONNUMMER
        assert stored.receiving_orgs == ["region", "social"] and stored.categories == ["concern", "health"]
        assert stored.disclosing_org == "school" and stored.recorded_by == "bba.anna"
        history = session.exec(select(ConsentHistory)).all()
        assert [(h.consent_id, h.action.value, h.by) for h in history] == [(consent_id, "granted", "guardian")]
        grant = session.get(ConsentGrant, {"consent_id": consent_id, "disclosing_org": "school"})
        assert grant is not None and grant.withdrawn_at is None and grant.purpose == "sip"
        subjects = sorted(session.exec(select(OutboxMessage.nats_subject)).all())
        assert subjects == ["inbox.region.school.consent.consent.granted.v1",
                            "inbox.social.school.consent.consent.granted.v1",
                            "school.consent.consent.granted.v1"]
        body = orjson.loads(session.exec(select(OutboxMessage.body)).first() or b"{}")
        assert body["subject"] == "case-1" and body["data"]["child_key"] == KEY
        # Stored in UTC whatever offset the caller used.
        assert stored.valid_until.replace(tzinfo=UTC) == consent_create().valid_until.astimezone(UTC)


def test_a_broken_rule_writes_nothing(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(InvalidField):
        service.grant_consent(session, settings=SETTINGS, principal=BBA,
                              data=consent_create(receiving_orgs=["school"]))
    with Session(engine) as session:
        assert session.exec(select(Consent)).all() == []
        assert session.exec(select(OutboxMessage)).all() == []


def test_withdrawal_is_recorded_once_and_refuses_further_disclosure(engine: Engine) -> None:
    with Session(engine) as session:
        consent_id = service.grant_consent(session, settings=SETTINGS, principal=BBA, data=consent_create()).id
        session.commit()
        assert service.decide_disclosure(session, settings=SETTINGS, principal=BBA, data=ask()).allowed
        withdrawn = service.withdraw_consent(session, settings=SETTINGS, access=access_to(session, consent_id),
                                             data=ConsentWithdraw(withdrawn_by="guardian"))
        session.commit()
        assert withdrawn.status is ConsentStatus.WITHDRAWN and withdrawn.withdrawn_by == "guardian"
        with pytest.raises(Conflict):
            service.withdraw_consent(session, settings=SETTINGS, access=access_to(session, consent_id),
                                     data=ConsentWithdraw(withdrawn_by="guardian"))
        session.rollback()
        with pytest.raises(NotFound):
            access_to(session, "nope")
        session.rollback()
        decision = service.decide_disclosure(session, settings=SETTINGS, principal=BBA, data=ask())
        assert (decision.allowed, decision.reason, decision.consent_id) == (False, "consent was withdrawn", None)
        actions = session.exec(select(ConsentHistory.action).order_by(col(ConsentHistory.id))).all()
        assert [a.value for a in actions] == ["granted", "withdrawn"]
        grant = session.get(ConsentGrant, {"consent_id": consent_id, "disclosing_org": "school"})
        assert grant is not None and grant.withdrawn_at is not None
        subjects = session.exec(select(OutboxMessage.nats_subject).where(
            col(OutboxMessage.nats_subject).contains("withdrawn"))).all()
        assert sorted(subjects) == ["inbox.region.school.consent.consent.withdrawn.v1",
                                    "inbox.social.school.consent.consent.withdrawn.v1",
                                    "school.consent.consent.withdrawn.v1"]


def test_history_rows_can_be_neither_changed_nor_removed(engine: Engine) -> None:
    with Session(engine) as session:
        service.grant_consent(session, settings=SETTINGS, principal=BBA, data=consent_create())
        session.commit()
        row = session.exec(select(ConsentHistory)).one()
        row.by = "someone else"
        with pytest.raises(AppendOnlyError):
            session.commit()
        session.rollback()
        with pytest.raises(AppendOnlyError):
            session.delete(session.exec(select(ConsentHistory)).one())
            session.commit()
        session.rollback()
        assert session.exec(select(ConsentHistory.by)).all() == ["guardian"]


def test_decisions_by_personnummer_or_child_key_explain_refusals(engine: Engine) -> None:
    with Session(engine) as session:
        consent_id = service.grant_consent(session, settings=SETTINGS, principal=BBA, data=consent_create()).id
        session.commit()

        def decide(**changes: Any) -> tuple[bool, str]:
            decision = service.decide_disclosure(session, settings=SETTINGS, principal=BBA, data=ask(**changes))
            return decision.allowed, decision.reason

        by_number = service.decide_disclosure(session, settings=SETTINGS, principal=BBA,
                                              data=ask(child_key=None, child={"personnummer": PERSONNUMMER}))
        assert by_number.allowed and by_number.consent_id == consent_id
        assert decide(categories=["concern", "health"]) == (True, "covered by consent")
        assert decide(categories=["identity"]) == (False, "consent does not cover identity")
        assert decide(purpose="coordination_meeting") == (False, "consent is for another purpose")
        assert decide(at=(NOW + timedelta(days=91)).isoformat()) == (False, "consent is not valid at this time")
        assert decide(child_key="0" * 64) == (False, "no consent recorded")
        for changes, field in (({"child": {"personnummer": PERSONNUMMER}}, "child"),
                               ({"child_key": None}, "child"), ({"receiving_org": "school"}, "receiving_org"),
                               ({"disclosing_org": "police"}, "disclosing_org")):
            with pytest.raises(InvalidField) as excinfo:
                decide(**changes)
            assert excinfo.value.extra["errors"][0]["field"] == field
        session.commit()
        outcomes = session.exec(select(AuditRecord.outcome).where(AuditRecord.action == "consent.decide")).all()
        assert outcomes.count("allowed") == 2 and outcomes.count("refused") == 4


def test_a_consent_is_recorded_only_in_a_known_case_for_its_child_by_someone_working_on_it(engine: Engine) -> None:
    other_child = f"{BORN:%Y%m%d}{'246'}{luhn_check_digit(BORN.strftime('%y%m%d') + '246')}"
    with Session(engine) as session:
        with pytest.raises(InvalidField) as unknown:
            service.grant_consent(session, settings=SETTINGS, principal=BBA, data=consent_create(case_id="case-x"))
        assert unknown.value.extra["errors"][0]["field"] == "case_id"
        session.rollback()
        with pytest.raises(InvalidField) as wrong_child:
            service.grant_consent(session, settings=SETTINGS, principal=BBA,
                                  data=consent_create(child={"personnummer": other_child}))
        assert wrong_child.value.extra["errors"][0]["field"] == "child.personnummer"
        session.rollback()
        stranger = Principal(org="school", user="bba.other", role=Role.BBA)
        with pytest.raises(AccessRefused) as refused:
            service.grant_consent(session, settings=SETTINGS, principal=stranger, data=consent_create())
        assert (refused.value.status_code, refused.value.reason) == (403, "no-relation")
        session.rollback()
    with Session(engine) as session:
        assert session.exec(select(Consent)).all() == []
        assert session.exec(select(OutboxMessage)).all() == []


def test_only_someone_working_on_the_case_may_withdraw(engine: Engine) -> None:
    with Session(engine) as session:
        consent_id = service.grant_consent(session, settings=SETTINGS, principal=BBA, data=consent_create()).id
        session.commit()
        for stranger in (Principal(org="school", user="bba.other", role=Role.BBA),
                         Principal(org="school", user="granskare.eva", role=Role.AUDITOR)):
            with pytest.raises(AccessRefused):
                access_to(session, consent_id, stranger)
        assert access_to(session, consent_id).basis == "bba-of-unit"
