"""Property: a disclosure is permitted only if a live consent of the discloser's own covers it at that moment.

Any sequence of grants, withdrawals, clock moves and questions, against the real decision code on
a real (in-memory) SQLite database, is compared with the rule written out plainly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlmodel import Session, SQLModel, col

from tillsammans_common.db import make_engine
from tillsammans_common.messaging.gate import AskBatch, DisclosureAsk, Phase
from tillsammans_common.models import ConsentGrant
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.models import Consent, ConsentPurpose, ConsentStatus, Custody
from tillsammans_consent.service import decide_disclosures

ORGS = ["region", "social"]
CATEGORIES = ["identity", "concern", "mapping_summary", "health"]
PURPOSES = ["coordination_meeting", "sip"]
CHILDREN = ["child-a", "child-b"]
START = datetime(2030, 1, 1, tzinfo=UTC)
SETTINGS = ConsentSettings(org="school")


@dataclass
class Model:
    """The rule, written plainly: what was granted and withdrawn, and the clock."""

    now: datetime = START
    consents: dict[str, dict[str, object]] = field(default_factory=dict)

    def permits(self, child: str, receiver: str, categories: set[str], purpose: str, consent_id: str | None) -> bool:
        return any(
            c["child"] == child and receiver in c["receivers"] and not c["withdrawn"]  # type: ignore[operator]
            and c["purpose"] == purpose and categories <= c["categories"]  # type: ignore[operator]
            and c["from"] <= self.now <= c["until"]  # type: ignore[operator]
            and (consent_id is None or consent_id == cid)
            for cid, c in self.consents.items())


grant_op = st.tuples(st.just("grant"), st.sampled_from(CHILDREN), st.sets(st.sampled_from(ORGS), min_size=1),
                     st.sets(st.sampled_from(CATEGORIES), min_size=1), st.sampled_from(PURPOSES),
                     st.integers(-5, 5), st.integers(1, 10))
withdraw_op = st.tuples(st.just("withdraw"), st.integers(0, 20))
clock_op = st.tuples(st.just("clock"), st.integers(-3, 6))
ask_op = st.tuples(st.just("ask"), st.sampled_from(CHILDREN), st.sampled_from([*ORGS, "school"]),
                   st.sets(st.sampled_from(CATEGORIES), min_size=1), st.sampled_from(PURPOSES),
                   st.sampled_from(list(Phase)), st.integers(-1, 20))
replica_op = st.tuples(st.just("replica"), st.sampled_from(CHILDREN), st.sampled_from(ORGS))
# A question shaped after a recorded consent (so permits are common, not luck), then narrowed or not.
echo_op = st.tuples(st.just("echo"), st.integers(0, 20), st.sampled_from(list(Phase)), st.booleans())


# Echoed questions weigh three times as much, so withdrawals and clock moves are often followed by a question.
OPERATION = st.one_of(grant_op, echo_op, withdraw_op, echo_op, clock_op, ask_op, replica_op, echo_op)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example([("grant", "child-a", {"region"}, {"concern"}, "sip", -1, 5), ("echo", 0, Phase.SEND, True),
          ("withdraw", 0), ("echo", 0, Phase.QUEUE, False), ("clock", 6), ("echo", 0, Phase.SEND, True)])
@example([("grant", "child-b", {"social"}, {"health", "concern"}, "coordination_meeting", 0, 2), ("clock", 2),
          ("echo", 0, Phase.QUEUE, False), ("clock", 1), ("echo", 0, Phase.QUEUE, False)])
@given(st.lists(OPERATION, min_size=1, max_size=25))
def test_permitted_only_under_a_live_covering_consent_of_the_discloser(operations: list[tuple[object, ...]]) -> None:
    engine = make_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    model = Model()
    ids: list[str] = []
    with Session(engine) as session:
        for op in operations:
            kind = op[0]
            if kind == "grant":
                _, child, receivers, categories, purpose, start, days = op
                consent_id = str(uuid.uuid4())
                valid_from = model.now + timedelta(days=start)  # type: ignore[operator]
                valid_until = valid_from + timedelta(days=days)  # type: ignore[arg-type]
                session.add(Consent(id=consent_id, case_id="case", child_personnummer="201304121237",
                                    child_key=child, custody=Custody.SOLE, grantors=[], disclosing_org="school",
                                    receiving_orgs=sorted(receivers), categories=sorted(categories),  # type: ignore[arg-type]
                                    purpose=ConsentPurpose(purpose), valid_from=valid_from, valid_until=valid_until,
                                    recorded_by="bba"))
                model.consents[consent_id] = {"child": child, "receivers": receivers, "categories": categories,
                                              "purpose": purpose, "from": valid_from, "until": valid_until,
                                              "withdrawn": False}
                ids.append(consent_id)
            elif kind == "withdraw" and ids:
                consent_id = ids[int(op[1]) % len(ids)]  # type: ignore[call-overload]
                session.execute(update(Consent).where(col(Consent.id) == consent_id)
                                .values(status=ConsentStatus.WITHDRAWN))
                model.consents[consent_id]["withdrawn"] = True
            elif kind == "clock":
                model.now += timedelta(days=int(op[1]))  # type: ignore[call-overload]
            elif kind == "replica":
                # Another organisation's consent naming the same child and receiver: never ours to disclose under.
                _, child, receiver = op
                session.add(ConsentGrant(consent_id=str(uuid.uuid4()), case_id="x", child_key=child,
                                         disclosing_org="social", receiving_orgs=[receiver], categories=CATEGORIES,
                                         purpose="coordination_meeting", valid_from=START - timedelta(days=999),
                                         valid_until=START + timedelta(days=999)))
            elif kind in ("ask", "echo"):
                if kind == "echo":
                    if not ids:
                        continue
                    _, pick, phase, name_it = op
                    echoed = model.consents[ids[pick % len(ids)]]  # type: ignore[operator]
                    child, purpose = echoed["child"], echoed["purpose"]
                    receiver = sorted(echoed["receivers"])[0]  # type: ignore[call-overload]
                    categories = {sorted(echoed["categories"])[0]}  # type: ignore[call-overload]
                    pick = pick if name_it else -1
                else:
                    _, child, receiver, categories, purpose, phase, pick = op
                named = ids[pick % len(ids)] if ids and pick >= 0 else None  # type: ignore[operator]
                ask = DisclosureAsk(event_id=str(uuid.uuid4()), event_type="t", consent_id=named,
                                    receiving_org=receiver, child_ref=child, categories=sorted(categories),  # type: ignore[arg-type]
                                    purpose=purpose, requested_by="u", requested_role="bba")  # type: ignore[arg-type]
                verdict = decide_disclosures(session, settings=SETTINGS, batch=AskBatch(phase=phase, asks=[ask]),  # type: ignore[arg-type]
                                             now=model.now).verdicts[0]
                expected = model.permits(child, receiver, categories, purpose, named)  # type: ignore[arg-type]
                if phase is Phase.SEND and named is None:
                    expected = False  # a message about to leave must name its consent
                assert verdict.allowed is expected, (op, verdict.reason)
                if verdict.allowed:
                    assert verdict.consent_id in model.consents
                    assert verdict.lease_seconds > 0
            session.flush()
    engine.dispose()
