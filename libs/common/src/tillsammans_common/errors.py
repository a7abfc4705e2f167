"""Domain errors and their RFC 9457 problem+json rendering."""

from __future__ import annotations

from typing import Any

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
