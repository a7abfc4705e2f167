"""Intake's HTTP API: thin routes over service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, select

from tillsammans_common.auth import Principal, Role, require
from tillsammans_common.db import session_scope
from tillsammans_common.web import run_command
from tillsammans_intake import service
from tillsammans_intake.models import ConcernCreate, ConcernPublic, InboxItemPublic, Unit, UnitPublic, UnitPut

router = APIRouter(tags=["intake"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Repeat-safe POSTs.")]


@router.post("/concerns", status_code=201, response_model=ConcernPublic,
             summary="Raise a concern (oro) and route it to the child's BBA")
def raise_concern(request: Request, body: ConcernCreate, idempotency_key: IdempotencyKey = None,
                  principal: Principal = require(Role.PROFESSIONAL, Role.BBA, Role.INTEGRATION)) -> JSONResponse:
    """Raise a concern; 422 names any invalid field; repeat with the same Idempotency-Key is safe."""
    settings = request.app.state.settings
    return run_command(
        request.app.state.infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: ConcernPublic.model_validate(
            service.raise_concern(session, settings=settings, principal=principal, data=body), from_attributes=True),
    )


@router.get("/concerns/{concern_id}", response_model=ConcernPublic, summary="Read a concern")
def get_concern(request: Request, concern_id: str,
                principal: Principal = require(Role.BBA, Role.INTEGRATION)) -> ConcernPublic:
    """Read one concern (audited)."""
    with session_scope(request.app.state.infra.engine) as session:
        concern = service.get_concern(session, principal=principal, concern_id=concern_id)
        return ConcernPublic.model_validate(concern, from_attributes=True)


@router.get("/inbox", response_model=list[InboxItemPublic], summary="The calling BBA's inbox")
def inbox(request: Request, principal: Principal = require(Role.BBA)) -> list[InboxItemPublic]:
    """Concerns routed to the calling BBA."""
    with session_scope(request.app.state.infra.engine) as session:
        return service.inbox(session, principal=principal)


@router.get("/units", response_model=list[UnitPublic], summary="The unit and BBA directory")
def list_units(request: Request, _: Principal = require(*Role)) -> list[UnitPublic]:
    """Every unit with its BBA; any role of this organisation may look up whom to tell."""
    with Session(request.app.state.infra.engine) as session:
        units = session.exec(select(Unit).order_by(col(Unit.id))).all()
        return [UnitPublic.model_validate(unit, from_attributes=True) for unit in units]


@router.put("/units/{unit_id}", response_model=UnitPublic, summary="Create or replace a unit")
def put_unit(request: Request, unit_id: str, body: UnitPut, principal: Principal = require(Role.ADMIN)) -> UnitPublic:
    """Keep the directory current (seed 002: a stale contact list fails the children)."""
    with session_scope(request.app.state.infra.engine) as session:
        unit = service.put_unit(session, principal=principal, unit_id=unit_id, data=body)
        session.flush()
        return UnitPublic.model_validate(unit, from_attributes=True)
