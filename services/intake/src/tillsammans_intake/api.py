"""Intake's HTTP API: thin routes over service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from tillsammans_common.auth import Principal, Role, require
from tillsammans_common.web import run_command, run_query
from tillsammans_intake import service
from tillsammans_intake.models import ConcernCreate, ConcernPublic, InboxItemPublic, UnitPublic, UnitPut

router = APIRouter(tags=["intake"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Repeat-safe POSTs.")]


@router.post("/concerns", status_code=201, response_model=ConcernPublic,
             summary="Raise a concern (oro) and route it to the child's BBA")
async def raise_concern(request: Request, body: ConcernCreate, idempotency_key: IdempotencyKey = None,
                        principal: Principal = require(Role.PROFESSIONAL, Role.BBA, Role.INTEGRATION)) -> JSONResponse:
    """Raise a concern; 422 names any invalid field; repeat with the same Idempotency-Key is safe."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: service.raise_concern(session, settings=settings, principal=principal,
                                                                data=body),
    )


@router.get("/concerns/{concern_id}", response_model=ConcernPublic, summary="Read a concern")
async def get_concern(request: Request, concern_id: str,
                      principal: Principal = require(Role.BBA, Role.INTEGRATION)) -> ConcernPublic:
    """Read one concern (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_concern(
        session, principal=principal, concern_id=concern_id))


@router.get("/inbox", response_model=list[InboxItemPublic], summary="The calling BBA's inbox")
async def inbox(request: Request, principal: Principal = require(Role.BBA)) -> list[InboxItemPublic]:
    """Concerns routed to the calling BBA."""
    return await run_query(request.app.state.infra.engine, lambda session: service.inbox(session, principal=principal))


@router.get("/units", response_model=list[UnitPublic], summary="The unit and BBA directory")
async def list_units(request: Request, _: Principal = require(*Role)) -> list[UnitPublic]:
    """Every unit with its BBA; any role of this organisation may look up whom to tell."""
    return await run_query(request.app.state.infra.engine, service.list_units)


@router.put("/units/{unit_id}", response_model=UnitPublic, summary="Create or replace a unit")
async def put_unit(request: Request, unit_id: str, body: UnitPut,
                   principal: Principal = require(Role.ADMIN)) -> UnitPublic:
    """Keep the directory current (seed 002: a stale contact list fails the children)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.put_unit(
        session, principal=principal, unit_id=unit_id, data=body))
