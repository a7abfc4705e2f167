"""Domain errors and their RFC 9457 problem+json rendering."""

from __future__ import annotations

import enum
import sqlite3
from typing import Any

from nats import errors as nats_errors
from sqlalchemy import exc as sa_exc

PROBLEM_BASE = "https://tillsammans.example/problems/"


class DomainError(Exception):
    """An expected refusal with a stable problem type; its detail must never quote personal data."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The problem+json body."""
        return {"type": PROBLEM_BASE + self.slug, "title": self.title, "status": self.status,
                "detail": self.detail, **self.extra}


class NotFound(DomainError):
    """The resource does not exist in this organisation (or the caller may not know it does)."""

    status, slug, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    status, slug, title = 409, "conflict", "Conflict"


class InvalidField(DomainError):
    """A field is valid in form but breaks a domain rule."""

    status, slug, title = 422, "validation-error", "Your request is not valid"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", errors=[{"field": field, "reason": reason}])


class ConsentRequired(DomainError):
    """No recorded consent covers this disclosure to another organisation."""

    status, slug, title = 403, "consent-required", "No consent covers this disclosure"


class ManualReviewRequired(DomainError):
    """The child has protected identity: a person must review every disclosure first."""

    status, slug, title = 403, "manual-review-required", "Protected identity needs manual review"


class Forbidden(DomainError):
    """The caller may not do this to this record (e.g. review a disclosure it asked for itself)."""

    status, slug, title = 403, "forbidden", "Forbidden"


class ServiceUnavailable(DomainError):
    """Something this request depends on (e.g. the consent service) did not answer; try again."""

    status, slug, title = 503, "service-unavailable", "Service unavailable"


class Failure(enum.Enum):
    """Whose fault a failed attempt was: the infrastructure's (retry while it lasts) or the message's own."""

    INFRASTRUCTURE = "infrastructure"
    MERIT = "merit"


# Errors of the database's operation, not of the statement or its data: locked, disk I/O error, disk
# full, read-only file, unable to open, connection lost or refused, pool exhausted, corrupt file.
_INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.InternalError, sa_exc.DisconnectionError,
    sa_exc.TimeoutError, sqlite3.OperationalError, sqlite3.InterfaceError, sqlite3.InternalError,
    OSError,  # also ConnectionError and TimeoutError
    nats_errors.Error,
)
# A statement or value the database refuses (constraint, bad data) or a bug: retrying cannot help.
_MERIT_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.IntegrityError, sa_exc.DataError, sa_exc.ProgrammingError, sa_exc.NotSupportedError,
    sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError, sqlite3.NotSupportedError,
)


def classify_failure(exc: BaseException) -> Failure:
    """Whether ``exc`` came from the infrastructure (database, disk, broker) or from the work's own merits."""
    seen: set[int] = set()
    current: BaseException | None = exc
    # Follow explicit causes (``raise ... from``): a wrapper around a lost connection is still one.
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _INFRASTRUCTURE_ERRORS):
            return Failure.INFRASTRUCTURE
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return Failure.INFRASTRUCTURE
        # A bare DatabaseError ("file is not a database", "database disk image is malformed") is the
        # file's fault, not the message's; its subclasses above are the statement's.
        if isinstance(current, (sa_exc.DatabaseError, sqlite3.DatabaseError)) and not isinstance(
                current, _MERIT_DATABASE_ERRORS):
            return Failure.INFRASTRUCTURE
        current = current.__cause__
    return Failure.MERIT
