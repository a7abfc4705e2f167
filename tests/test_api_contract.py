"""Every service's OpenAPI, fuzzed with schemathesis: bad input is refused, never a 5xx, and answers keep their schema.

Each service runs in-process on a real nats-server and SQLite file, with a few real records seeded
first, so that generated requests reach existing records and not only 404s. Every operation is run
with positive and negative data, once with generated path parameters and once with the seeded ones,
and every generated request is sent with a token of each role (and without one).

Checks: ``not_a_server_error``, ``response_schema_conformance``, ``status_code_conformance`` and
``content_type_conformance``. Left out: ``positive_data_acceptance``, as schema-valid input is still
refused (422) for rules no schema can state (a personnummer's check digit, a case that does not
exist, an organisation outside the federation); ``negative_data_rejection``, as schemathesis counts
an unknown query parameter as invalid, which routes with plain parameters ignore like most HTTP
APIs (filters given as a model, and every body, refuse unknown fields); and the stateful checks
that send requests of their own (``ignored_auth``, ``use_after_free``), as every call here already
runs under each role and without a token.

The apps run under schemathesis' own ASGI transport, which starts each app's lifespan once on its
event loop thread; the seeding requests go through the same transport, so each app starts once.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import Session, select

from tillsammans_common.auth import Role
from tillsammans_common.models import OutboxMessage
from tillsammans_common.testing import NatsServer, bearer, seed_case, wait_for

ORG = "school"
UNIT = "norrskolan"
CASE_BBA = "bba.norrskolan"
PERSONNUMMER = "20130412-1237"
CASE_ID = "4b7f3c1e-8a52-4d0e-9c1a-2f6e5d4c3b2a"
CHECKS = [schemathesis.checks.not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
# Examples per operation, generation mode and path-parameter variant; each is sent once per caller below.
MAX_EXAMPLES = int(os.environ.get("TILLSAMMANS_CONTRACT_EXAMPLES", "10"))
# Inside a Hypothesis property the global `random` is seeded, and the apps' trace ids (OpenTelemetry) use it.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
# One caller per role, each the one with most to see: the case's BBA, a mentor at its unit, an integration of it.
CALLERS: dict[str, dict[str, str]] = {
    "bba": bearer(ORG, Role.BBA, CASE_BBA, units=[UNIT]),
    "professional": bearer(ORG, Role.PROFESSIONAL, "mentor.anna", units=[UNIT]),
    "coordinator": bearer(ORG, Role.COORDINATOR, "samordnare.lo"),
    "integration": bearer(ORG, Role.INTEGRATION, "elevregister", units=[UNIT], client=True),
    "auditor": bearer(ORG, Role.AUDITOR, "granskare.eva"),
    "admin": bearer(ORG, Role.ADMIN, "drift.olle"),
    "reviewer": bearer(ORG, Role.REVIEWER, "granskare.per"),
    "anonymous": {},
}


@dataclass
class Findings:
    """Distinct failures (operation, check, status), each with the first request that showed it."""

    seen: dict[tuple[str, str, int], str] = field(default_factory=dict)
    calls: int = 0

    def report(self) -> str:
        """Every failure found, for the assertion message."""
        return "\n\n".join(f"{label} [{title}] {status}\n{detail}" for (label, title, status), detail
                           in sorted(self.seen.items()))


def _exercise(schema: Any, seeded: dict[str, str], findings: Findings) -> None:
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {parameter.name for parameter in operation.path_parameters}
        fixed = {name: value for name, value in seeded.items() if name in names}
        variants = [{}] + ([fixed] if fixed else [])
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            for path_parameters in variants:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
                try:
                    _run(strategy, findings)
                except Unsatisfiable:
                    # Nothing to make invalid: no parameters and no body, or only the seeded path parameters.
                    assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label


def _run(strategy: Any, findings: Findings) -> None:
    # No failure is raised inside the property, so Hypothesis never shrinks: every distinct failure is
    # collected, and the assertion at the end lists them all.
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def property_(case: Any) -> None:
        for role, headers in CALLERS.items():
            findings.calls += 1
            try:
                response = case.call(headers=headers)
            except Exception as exc:  # an exception the app let escape: the server would answer 500
                findings.seen.setdefault((case.operation.label, f"unhandled {type(exc).__name__}", 500),
                                         f"as {role}: {exc}"[:1500])
                continue
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    key = (case.operation.label, failure.title, response.status_code)
                    findings.seen.setdefault(key, f"as {role}: {failure.message}\n{case.as_curl_command(headers)}"
                                                  f"\n-> {response.text[:500]}")

    property_()


@pytest.fixture
def apps(nats_server: NatsServer) -> Iterator[None]:
    """Stop the apps schemathesis started (their lifespans run on its event loop thread), before their broker."""
    try:
        yield
    finally:
        asgi.shutdown_lifespans()


def _check(findings: Findings, started: float, name: str) -> None:
    print(f"{name}: {findings.calls} calls in {time.monotonic() - started:.1f} s")
    assert not findings.seen, f"{len(findings.seen)} contract failures:\n\n{findings.report()}"


def _outbox_drained(app: Any) -> bool:
    # Only this organisation's own subjects: invitations to another organisation's inbox have no stream on
    # this single-account broker and stay queued. Stopping mid-publish could hang the relay's shutdown.
    with Session(app.state.infra.engine) as session:
        rows = session.exec(select(OutboxMessage.nats_subject, OutboxMessage.published_at)).all()
    return all(published for subject, published in rows if subject.startswith(f"{ORG}."))


def _undeclared_path_parameters(spec: dict[str, Any]) -> list[str]:
    # OpenAPI requires each {name} of a path to be declared; schemathesis would make up values for one that is not.
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            missing += [f"{method.upper()} {path}: {name}" for name in re.findall(r"{(\w+)}", path)
                        if name not in declared]
    return missing


def _fuzz(name: str, app: Any, seeded: dict[str, Any], started: float, *others: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    assert not _undeclared_path_parameters(schema.raw_schema), _undeclared_path_parameters(schema.raw_schema)
    findings = Findings()
    _exercise(schema, seeded, findings)
    for each in (app, *others):
        wait_for(lambda each=each: _outbox_drained(each), message="outbox drained to NATS")
    _check(findings, started, name)


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def _seed_case(app: Any) -> None:
    seed_case(app.state.infra.engine, app.state.settings, case_id=CASE_ID, personnummer=PERSONNUMMER,
              unit_id=UNIT, bba_user=CASE_BBA)


def _consent(client: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return _created(client.post("/consents", headers=CALLERS["bba"], json={
        "case_id": CASE_ID, "child": {"personnummer": PERSONNUMMER}, "custody": "sole",
        "grantors": [{"role": "guardian", "name": "Vårdnadshavare", "given_at": now.isoformat()}],
        "child_view": {"heard": True, "agrees": True}, "receiving_orgs": ["region"],
        "categories": ["identity", "concern", "mapping_summary"], "purpose": "coordination_meeting",
        "valid_from": (now - timedelta(minutes=1)).isoformat(), "valid_until": (now + timedelta(days=30)).isoformat()}))


def test_intake_contract(tmp_path: Path, nats_url: str, apps: None) -> None:
    from tillsammans_intake.config import IntakeSettings
    from tillsammans_intake.main import create_app

    started = time.monotonic()
    app = create_app(IntakeSettings(org=ORG, nats_url=nats_url, data_dir=tmp_path / "data"))
    with asgi.get_client(app) as client:
        concern = _created(client.post("/concerns", headers=CALLERS["professional"], json={
            "unit_id": UNIT, "child": {"personnummer": PERSONNUMMER, "name": "Testbarn Testsson"},
            "wheel_areas": ["trygghet", "hemmet"], "description": "Frånvaron har ökat."}))
        delegation = _created(client.post(f"/cases/{concern['case_id']}/delegations", headers=CALLERS["bba"], json={
            "delegate_user": "mentor.anna", "valid_until": (datetime.now(UTC) + timedelta(days=30)).isoformat()}))
        report = _created(client.post(f"/concerns/{concern['id']}/report", headers=CALLERS["professional"],
                                      json={"grounds": "Eleven säger att hon inte vågar gå hem."}))
    _fuzz("intake", app, {"concern_id": concern["id"], "case_id": concern["case_id"],
                          "delegation_id": delegation["id"], "unit_id": UNIT, "report_id": report["id"]}, started)


def test_mapping_contract(tmp_path: Path, nats_url: str, apps: None) -> None:
    from tillsammans_mapping.config import MappingSettings
    from tillsammans_mapping.main import create_app

    started = time.monotonic()
    app = create_app(MappingSettings(org=ORG, nats_url=nats_url, data_dir=tmp_path / "data"))
    _seed_case(app)
    with asgi.get_client(app) as client:
        mapping = _created(client.post("/mappings", headers=CALLERS["bba"], json={"case_id": CASE_ID}))
        _created(client.put(f"/mappings/{mapping['id']}/areas/trygghet", headers=CALLERS["bba"],
                            json={"level": "serious_concern", "note": "Vill inte gå hem efter skolan."}))
    _fuzz("mapping", app, {"mapping_id": mapping["id"], "case_id": CASE_ID, "wheel_id": mapping["wheel_id"],
                           "version": mapping["wheel_version"], "area_code": "trygghet"}, started)


def test_consent_contract(tmp_path: Path, nats_url: str, apps: None) -> None:
    from tillsammans_consent.config import ConsentSettings
    from tillsammans_consent.main import create_app

    started = time.monotonic()
    app = create_app(ConsentSettings(org=ORG, nats_url=nats_url, data_dir=tmp_path / "data"))
    _seed_case(app)
    with asgi.get_client(app) as client:
        consent = _consent(client)
    _fuzz("consent", app, {"consent_id": consent["id"], "case_id": CASE_ID}, started)


def test_meetings_contract(tmp_path: Path, nats_url: str, apps: None) -> None:
    # The consent service runs beside meetings on the same broker, as in production: meetings asks it
    # about every invitation, so a 503 "consent service did not answer" would be a real failure here.
    from tillsammans_consent.config import ConsentSettings
    from tillsammans_consent.main import create_app as create_consent_app
    from tillsammans_meetings.config import MeetingsSettings
    from tillsammans_meetings.main import create_app

    started = time.monotonic()
    consent_app = create_consent_app(ConsentSettings(org=ORG, nats_url=nats_url, data_dir=tmp_path / "data"))
    app = create_app(MeetingsSettings(org=ORG, nats_url=nats_url, data_dir=tmp_path / "data"))
    _seed_case(consent_app)
    _seed_case(app)
    with asgi.get_client(consent_app) as consent_client, asgi.get_client(app) as client:
        _consent(consent_client)
        meeting = _created(client.post("/meetings", headers=CALLERS["bba"], json={
            "case_id": CASE_ID, "kind": "samverkansmote",
            "scheduled_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            "child": {"personnummer": PERSONNUMMER, "name": "Testbarn Testsson"}, "invited_orgs": ["region"],
            "flagged_areas": ["trygghet", "hemmet"], "concern_summary": "Ökad frånvaro, oro i hemmet."}))
        # A forum and a consultation on its agenda (decision 0027), so the fuzzing reaches real records.
        forum = _created(client.post("/forums", headers=CALLERS["bba"], json={
            "name": "Elevhälsoteam", "kind": "elevhalsoteam", "member_orgs": ["region"],
            "rrule": "FREQ=MONTHLY;BYDAY=1TU", "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "duration_minutes": 60, "location": "Konferensrum 2"}))
        consultation = _created(client.post("/consultations", headers=CALLERS["bba"], json={
            "invited_orgs": ["region"], "age_band": "10-12", "wheel_areas": ["trygghet"],
            "question": "Hur stöttar vi en elev med oro?"}))
        occurrences = client.get(f"/forums/{forum['id']}/occurrences", headers=CALLERS["bba"])
        assert occurrences.status_code == 200, occurrences.text
        occurrence = occurrences.json()[0]
        _created(client.post(f"/forums/{forum['id']}/occurrences/{occurrence['date']}/agenda", headers=CALLERS["bba"],
                             json={"consultation_id": consultation["id"]}))
    _fuzz("meetings", app, {"meeting_id": meeting["id"], "forum_id": forum["id"], "consultation_id": consultation["id"],
                            "occurrence_date": occurrence["date"]}, started, consent_app)
