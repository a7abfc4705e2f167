"""The audit log: every read and write of child data, in the same transaction as the access."""

from __future__ import annotations

from sqlalchemy import insert
from sqlmodel import Session

from tillsammans_common.auth import Principal
from tillsammans_common.db import utcnow
from tillsammans_common.models import AuditRecord
from tillsammans_common.telemetry import current_trace_id

_INSERT_AUDIT = insert(AuditRecord.__table__)  # type: ignore[attr-defined]


def audit(session: Session, principal: Principal, action: str, *, case_id: str | None = None,
          purpose: str | None = None, outcome: str = "ok") -> None:
    """Record who did what to which case and why."""
    # A plain INSERT on the session's connection (append-only, never read back here): cheaper than
    # an ORM object, and it happens on every request.
    session.connection().execute(_INSERT_AUDIT, {
        "at": utcnow(), "org": principal.org, "user": principal.user, "role": principal.role_names,
        "action": action, "case_id": case_id, "purpose": purpose, "outcome": outcome,
        "trace_id": current_trace_id()})
