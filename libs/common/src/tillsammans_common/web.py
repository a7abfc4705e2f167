"""HTTP plumbing shared by the services: problem+json errors and Idempotency-Key handling."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats import errors as nats_errors
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, select
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillsammans_common.audit import ANONYMOUS, principal_fields, write
from tillsammans_common.auth import AccessRefused, Principal
from tillsammans_common.db import run_db, session_scope
from tillsammans_common.errors import PROBLEM_BASE, Conflict, DomainError, Failure, InvalidField, classify_failure
from tillsammans_common.models import IdempotencyRecord
from tillsammans_common.telemetry import current_trace_id

log = logging.getLogger(__name__)
T = TypeVar("T")
PROBLEM_JSON = "application/problem+json"

PROBLEM_SCHEMA = {
    "description": "An RFC 9457 problem",
    "content": {PROBLEM_JSON: {"schema": {"type": "object", "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}}}}},
}
# 400 is a body that is not even text (not UTF-8), 413 one over the size limit (BodyLimit): any route may answer them.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: PROBLEM_SCHEMA for code in (400, 401, 403, 404, 409, 413, 422, 503)
}
DEFAULT_RETRY_AFTER_SECONDS = 5
# Where an infrastructure failure can come from; classify_failure decides each one.
_MAYBE_INFRASTRUCTURE: tuple[type[Exception], ...] = (SQLAlchemyError, sqlite3.Error, OSError, nats_errors.Error)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    """Render a problem body with its media type and the trace id ops can search for."""
    trace_id = current_trace_id()
    if trace_id:
        body = {**body, "trace_id": trace_id}
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


_TITLES = {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 415: "Unsupported media type"}


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error an RFC 9457 problem; validation errors name each field and reason."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for error in exc.errors():
            location = [str(part) for part in error["loc"]]
            where = location[0] if location else "body"
            field = ".".join(location[1:]) or where
            # The input itself is left out on purpose: it may be a personnummer or a name.
            errors.append({"field": field, "in": where, "reason": error["msg"].removeprefix("Value error, ")})
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem_response({"type": PROBLEM_BASE + "validation-error", "title": "Your request is not valid",
                                 "status": 422, "detail": detail, "errors": errors})

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem_response(exc.problem())

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _http_problem(exc)

    anonymous = AnonymousRefusals()

    @app.exception_handler(AccessRefused)
    async def _refused(request: Request, exc: AccessRefused) -> JSONResponse:
        await audit_refusal(request, exc, anonymous)
        return _http_problem(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return _internal_error()

    async def _infrastructure(request: Request, exc: Exception) -> JSONResponse:
        if classify_failure(exc) is Failure.INFRASTRUCTURE:
            return _unavailable(request, exc)
        log.error("unhandled error", exc_info=exc)
        return _internal_error()

    # Registered by class rather than in the catch-all: Starlette re-raises whatever reaches the
    # catch-all, and the server would then log the SQL error's text (statement and parameters).
    for family in _MAYBE_INFRASTRUCTURE:
        app.add_exception_handler(family, _infrastructure)


def _http_problem(exc: StarletteHTTPException) -> JSONResponse:
    slug = {401: "unauthorized", 403: "forbidden", 404: "not-found"}.get(exc.status_code, "http-error")
    return problem_response({"type": PROBLEM_BASE + slug, "title": _TITLES.get(exc.status_code, "Error"),
                             "status": exc.status_code, "detail": str(exc.detail)},
                            headers=getattr(exc, "headers", None))


class AnonymousRefusals:
    """Coalesces identical anonymous refusals: the first of each (reason, action) per minute is recorded.

    A 401 names nobody and touched nothing, so its repeats add no "who" to the trail, while a flood of
    them could otherwise grow the table without bound. What is left out is counted and logged (without
    personal data) when the minute ends, so a flood is never silent. Refusals of an identified caller
    (every 403) are all recorded.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._minute: int | None = None
        self._seen: dict[tuple[str, str], int] = {}

    def admit(self, reason: str, action: str) -> bool:
        """Whether this anonymous refusal is to be recorded (the first like it this minute)."""
        minute = int(self._clock() // 60)
        if minute != self._minute:
            self._report()
            self._minute, self._seen = minute, {}
        count = self._seen.get((reason, action), 0)
        self._seen[(reason, action)] = count + 1
        return count == 0

    def _report(self) -> None:
        for (reason, action), count in self._seen.items():
            if count > 1:
                log.warning("anonymous refusals coalesced in the audit trail",
                            extra={"reason": reason, "action": action, "not_recorded": count - 1})


def _route_action(request: Request) -> str:
    # The route's template, never the path itself: a path holds ids, and a client could put anything there.
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', '?')}"


async def audit_refusal(request: Request, exc: AccessRefused, anonymous: AnonymousRefusals | None = None) -> None:
    """Record a 401 or 403 in a transaction of its own (the refused request has none); never raises."""
    infra = getattr(request.app.state, "infra", None)
    engine: Engine | None = getattr(infra, "engine", None)
    if engine is None:
        return
    action = exc.action or _route_action(request)
    if exc.principal is None and anonymous is not None and not anonymous.admit(exc.reason, action):
        return
    who = principal_fields(exc.principal) if exc.principal is not None else {
        "org": "", "user": ANONYMOUS, "role": "", "principal_kind": "unknown"}
    settings = getattr(request.app.state, "settings", None)
    outcome = "unauthenticated" if exc.status_code == 401 else "denied"

    def record() -> None:
        with engine.begin() as connection:
            write(connection, action=action, outcome=outcome, service=getattr(settings, "service_name", None),
                  case_id=exc.case_id, reason=exc.reason[:32], **who)

    try:
        await run_db(engine, record)
    except Exception as failure:
        # The caller still gets the 401/403; the type only, as a database error's text can quote its parameters.
        log.warning("refusal could not be written to the audit trail",
                    extra={"error_type": type(failure).__name__, "reason": exc.reason})


def _internal_error() -> JSONResponse:
    return problem_response({"type": PROBLEM_BASE + "internal-error", "title": "Internal error",
                             "status": 500, "detail": "the request failed; nothing was saved"})


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database (or broker) cannot do the work now: the client's request was fine, so say when to
    # come back. Only the error's type is logged and nothing of it answered: SQL errors quote
    # statements and parameters, which can be a child's identity.
    settings = getattr(request.app.state, "settings", None)
    retry_after = getattr(settings, "unavailable_retry_after_seconds", DEFAULT_RETRY_AFTER_SECONDS)
    log.warning("request failed on unavailable infrastructure", extra={"error_type": type(exc).__name__})
    return problem_response(
        {"type": PROBLEM_BASE + "service-unavailable", "title": "Service unavailable", "status": 503,
         "detail": "the service cannot store or read data right now (its database is unavailable, full or "
                   f"read-only); nothing was saved. Send the same request again after {retry_after} seconds, "
                   "with the same Idempotency-Key if it is a write"},
        headers={"Retry-After": str(retry_after)})


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is refused with 413 problem+json, read no further.

    Declared lengths are refused before anything is read; a chunked body is counted as it arrives
    and refused once it passes the limit, so nobody can make a service buffer more than it allows.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 413 when its body is too large."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        too_large = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Read no further; the app sees an ended body, and its answer is replaced below.
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._refuse(send)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"type": PROBLEM_BASE + "payload-too-large", "title": "Request body too large",
                             "status": 413, "detail": f"the request body must be at most {self.max_bytes} bytes"})
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class TraceIdHeader:
    """ASGI middleware: every response carries ``X-Trace-Id``, the id integrators quote to ops.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each
    request through an extra task and memory streams, which costs more than the header is worth.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the header to the response start of an HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_trace_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                trace_id = current_trace_id()
                if trace_id:  # the trace id carries nothing about the child
                    message["headers"] = [*message.get("headers", []), (b"x-trace-id", trace_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_trace_id)


async def run_command(
    engine: Engine,
    *,
    principal: Principal,
    idempotency_key: str | None,
    request: Request,
    body: BaseModel | None,
    action: Callable[[Session], BaseModel],
    status_code: int = 201,
) -> JSONResponse:
    """Run a write in one transaction; with an Idempotency-Key, a repeat returns the first result.

    The idempotency record commits with the change, so a crash leaves either both or neither.
    """
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 128:
        raise InvalidField("Idempotency-Key", "must be 1 to 128 characters")
    fingerprint = hashlib.sha256(
        f"{request.method} {request.url.path} ".encode() + (body.model_dump_json().encode() if body else b"")
    ).hexdigest()

    def command() -> JSONResponse:
        with Session(engine, expire_on_commit=False) as session:
            if idempotency_key:
                replay = _replay(session, principal, idempotency_key, fingerprint)
                if replay is not None:
                    return replay
            result = action(session).model_dump(mode="json")
            if idempotency_key:
                session.add(IdempotencyRecord(org=principal.org, user=principal.user, key=idempotency_key,
                                              fingerprint=fingerprint, status_code=status_code, response=result))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                replay = _replay(session, principal, idempotency_key, fingerprint) if idempotency_key else None
                if replay is None:
                    raise
                return replay
        return JSONResponse(result, status_code=status_code)

    return await run_db(engine, command)


async def run_query(engine: Engine, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction (a read is audited, so it writes too); commits on success."""

    def unit_of_work() -> T:
        with session_scope(engine) as session:
            return work(session)

    return await run_db(engine, unit_of_work)


def _replay(session: Session, principal: Principal, key: str, fingerprint: str) -> JSONResponse | None:
    prior = session.exec(select(IdempotencyRecord).where(
        IdempotencyRecord.org == principal.org, IdempotencyRecord.user == principal.user,
        IdempotencyRecord.key == key)).first()
    if prior is None:
        return None
    if prior.fingerprint != fingerprint:
        raise Conflict("this Idempotency-Key was already used for a different request")
    return JSONResponse(prior.response, status_code=prior.status_code, headers={"Idempotent-Replayed": "true"})
