"""Which failures are the infrastructure's (retried while they last) and which the message's own (poison)."""

from __future__ import annotations

import sqlite3

import nats.errors
import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc

from tillsammans_common.errors import Failure, classify_failure
from tillsammans_common.messaging.consumer import MeritFailures, infrastructure_delay
from tillsammans_common.messaging.refusals import Reject, Retry


def _wrapped(kind: type[sa_exc.DBAPIError], orig: Exception) -> BaseException:
    # How SQLAlchemy hands a driver's error to our code: the statement and parameters ride along.
    return kind("INSERT INTO t VALUES (?)", ("20130412-1237",), orig)


def _validation_error() -> ValidationError:
    class Model(BaseModel):
        x: int

    try:
        Model.model_validate({"x": "not a number"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


def _caused_by(cause: BaseException) -> BaseException:
    try:
        raise RuntimeError("wrapper") from cause
    except RuntimeError as exc:
        return exc


INFRASTRUCTURE = Failure.INFRASTRUCTURE
MERIT = Failure.MERIT
TABLE: list[tuple[str, BaseException, Failure]] = [
    ("database is locked", _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")),
     INFRASTRUCTURE),
    ("disk I/O error", _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("disk I/O error")), INFRASTRUCTURE),
    ("disk full", _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database or disk is full")),
     INFRASTRUCTURE),
    ("read-only", _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("attempt to write a readonly database")),
     INFRASTRUCTURE),
    ("unable to open", _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("unable to open database file")),
     INFRASTRUCTURE),
    ("corrupt file", _wrapped(sa_exc.DatabaseError, sqlite3.DatabaseError("file is not a database")), INFRASTRUCTURE),
    ("raw sqlite error", sqlite3.OperationalError("disk I/O error"), INFRASTRUCTURE),
    ("PostgreSQL connection refused", _wrapped(sa_exc.OperationalError, Exception("connection refused")),
     INFRASTRUCTURE),
    ("PostgreSQL connection dropped", _wrapped(sa_exc.InterfaceError, Exception("connection already closed")),
     INFRASTRUCTURE),
    ("pool exhausted", sa_exc.TimeoutError("QueuePool limit reached"), INFRASTRUCTURE),
    ("socket error", ConnectionRefusedError(111, "refused"), INFRASTRUCTURE),
    ("broker timeout", nats.errors.TimeoutError(), INFRASTRUCTURE),
    ("broker gone", nats.errors.ConnectionClosedError(), INFRASTRUCTURE),
    ("wrapper of a lost database", _caused_by(sqlite3.OperationalError("disk I/O error")), INFRASTRUCTURE),
    ("Reject", Reject("child key does not match"), MERIT),
    ("Retry: consent not yet arrived", Retry("no consent covers it", code="not_covered"), MERIT),
    ("invalid message", _validation_error(), MERIT),
    ("ValueError", ValueError("not JSON"), MERIT),
    ("constraint", _wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("FOREIGN KEY constraint failed")), MERIT),
    ("bad data", _wrapped(sa_exc.DataError, Exception("value too long")), MERIT),
    ("bug in SQL", _wrapped(sa_exc.ProgrammingError, Exception("syntax error")), MERIT),
    ("bug in code", KeyError("missing"), MERIT),
]


@pytest.mark.parametrize(("exc", "expected"), [(exc, expected) for _, exc, expected in TABLE],
                         ids=[name for name, _, _ in TABLE])
def test_classify_failure(exc: BaseException, expected: Failure) -> None:
    assert classify_failure(exc) is expected


def test_infrastructure_delay_doubles_up_to_its_cap() -> None:
    delays = [infrastructure_delay(n, initial=0.5, cap=30.0) for n in range(1, 10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert infrastructure_delay(0, initial=0.5, cap=30.0) == 0.5
    assert infrastructure_delay(10_000, initial=0.5, cap=30.0) == 30.0


def test_merit_failures_are_bounded_and_forgotten_when_settled() -> None:
    counts = MeritFailures(limit=2)
    assert [counts.add(1), counts.add(1), counts.add(2)] == [1, 2, 1]
    counts.add(3)  # the oldest (1) goes: it would start its count again
    assert (counts.get(1), counts.get(2), counts.get(3)) == (0, 1, 1)
    counts.forget(2)
    assert counts.get(2) == 0


def test_the_delivery_metrics_carry_only_our_own_names_and_codes() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tillsammans_common.telemetry import delivery_counters

    reader = InMemoryMetricReader()
    made = delivery_counters(MeterProvider(metric_readers=[reader]))
    made.redelivered.add(1, {"consumer": "meetings-invitations-received", "kind": "infrastructure"})
    made.publish_failed.add(2, {"destination": "inbox.region", "error_type": "NoRespondersError"})
    made.ready.set(0, {"part": "database"})
    data = reader.get_metrics_data()
    assert data is not None
    seen = {metric.name: [(dict(point.attributes or {}), point.value) for point in metric.data.data_points]
            for resource in data.resource_metrics for scope in resource.scope_metrics for metric in scope.metrics}
    assert seen == {
        "tillsammans.messages.redelivered": [
            ({"consumer": "meetings-invitations-received", "kind": "infrastructure"}, 1)],
        "tillsammans.outbox.publish_failed": [({"destination": "inbox.region", "error_type": "NoRespondersError"}, 2)],
        "tillsammans.ready": [({"part": "database"}, 0)],
    }
