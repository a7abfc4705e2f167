"""The audit log: every read and write of child data in the same transaction as the access, every refusal
in a transaction of its own, every message a consumer applies (docs/decisions/0018-audit-trail.md).

Records are only ever inserted: nothing here (or in any route) updates or deletes one, and the database
refuses it too (triggers; only the retention pruner deletes, and only records past the legal floor).
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import Connection, Engine, insert
from sqlmodel import Session

from tillsammans_common.auth import Principal
from tillsammans_common.db import utcnow
from tillsammans_common.models import AuditRecord
from tillsammans_common.telemetry import current_trace_id

_INSERT_AUDIT = insert(AuditRecord.__table__)  # type: ignore[attr-defined]
ANONYMOUS = "anonymous"
# Which service writes to which database, so a route's audit() need not name it (see name_service).
_SERVICES: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def name_service(engine: Engine, service: str) -> None:
    """Record that ``service`` is the one writing audit records through ``engine``."""
    _SERVICES[engine] = service


def service_of(engine: Engine) -> str | None:
    """The service named for ``engine``, if any."""
    return _SERVICES.get(engine)


def principal_fields(principal: Principal) -> dict[str, Any]:
    """The columns that describe who acted: organisation, user, roles, units and kind."""
    return {"org": principal.org, "user": principal.user, "role": principal.role_names,
            "units": ",".join(sorted(principal.units))[:255] or None,
            "principal_kind": "client" if principal.client else "person"}


def write(connection: Connection, *, action: str, outcome: str, service: str | None, **fields: Any) -> None:
    """Insert one audit record with ``fields`` (column names) on ``connection``; time and trace id are added."""
    # A plain INSERT (append-only, never read back here): cheaper than an ORM object, and it happens on
    # every request.
    row = {"at": utcnow(), "action": action[:128], "outcome": outcome, "service": service,
           "trace_id": current_trace_id(), "case_id": None, "purpose": None, "unit_id": None, "record_id": None,
           "basis": None, "reason": None, "protected": False, "units": None, "principal_kind": "person", **fields}
    connection.execute(_INSERT_AUDIT, row)


def audit(session: Session, principal: Principal, action: str, *, case_id: str | None = None,
          purpose: str | None = None, outcome: str = "ok", unit_id: str | None = None, record_id: str | None = None,
          basis: str | None = None, protected: bool = False) -> None:
    """Record who did what to which case and record, on what basis (need-to-know relation) and why."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else None
    write(session.connection(), action=action, outcome=outcome,
          service=service_of(engine) if engine is not None else None, case_id=case_id, purpose=purpose,
          unit_id=unit_id, record_id=record_id, basis=basis, protected=protected, **principal_fields(principal))
