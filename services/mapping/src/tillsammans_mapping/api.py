"""Mapping's HTTP API: thin routes over service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import JSONResponse

from tillsammans_common.policy import Access, Action, CurrentPrincipal, allowed, facts_of_case, on_record
from tillsammans_common.web import run_command, run_query
from tillsammans_common.wheel import AREA_CODE_PATTERN, WHEEL_ID_PATTERN, Correspondence, Wheel
from tillsammans_mapping import service
from tillsammans_mapping.models import (
    AreaAssessmentPublic,
    AreaAssessmentPut,
    FiveQuestions,
    MappingAsWheel,
    MappingComplete,
    MappingCreate,
    MappingPublic,
    Perspective,
    WheelHistory,
    WheelSummary,
)

router = APIRouter(tags=["mapping"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Repeat-safe POSTs.")]
# The child's BBA maps, or a colleague the BBA delegated the case to; integrations act for their unit.
MappingReader = Annotated[Access, on_record(Action.CASE_READ, service.mapping_facts, param="mapping_id")]
MappingWriter = Annotated[Access, on_record(Action.CASE_WORK, service.mapping_facts, param="mapping_id")]
CaseReader = Annotated[Access, on_record(Action.CASE_READ, facts_of_case, param="case_id")]
WheelReader = Annotated[Access, allowed(Action.WHEEL_READ)]
WheelId = Annotated[str, Path(min_length=1, max_length=64, pattern=WHEEL_ID_PATTERN,
                              description="The wheel's id (see GET /wheels).")]
WheelVersion = Annotated[int, Path(ge=1, description="The wheel's version.")]
AreaCodePath = Annotated[str, Path(pattern=AREA_CODE_PATTERN, description="An area of the mapping's wheel.")]
PerspectivePath = Annotated[Perspective, Path(description="Whose view: professional, child or guardians.")]
SVG = "image/svg+xml"


@router.get("/wheels", response_model=list[WheelSummary], summary="The installed well-being wheels")
async def list_wheels(_: WheelReader) -> list[WheelSummary]:
    """Every wheel version; configuration, not child data, so any role may look."""
    return service.list_wheels()


@router.get("/wheels/{wheel_id}", response_model=Wheel, summary="The latest version of a wheel")
async def get_wheel(wheel_id: WheelId, _: WheelReader) -> Wheel:
    """The newest version of a wheel with its areas and the organisations each area points to."""
    return service.get_wheel(wheel_id=wheel_id)


@router.get("/wheels/{wheel_id}/versions/{version}", response_model=Wheel, summary="One version of a wheel")
async def get_wheel_version(wheel_id: WheelId, version: WheelVersion, _: WheelReader) -> Wheel:
    """A given version of a wheel, as old mappings were made on it."""
    return service.get_wheel(wheel_id=wheel_id, version=version)


@router.get("/correspondences", response_model=list[Correspondence],
            summary="The declared correspondences between wheels")
async def list_correspondences(_: WheelReader) -> list[Correspondence]:
    """Which areas of two wheels examine the same thing, as GET /mappings/{id}/as/{wheel_id} reads them."""
    return service.list_correspondences()


@router.post("/mappings", status_code=201, response_model=MappingPublic,
             summary="Open a mapping (kartläggning) of a case on a wheel")
async def open_mapping(request: Request, body: MappingCreate, principal: CurrentPrincipal,
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Open a mapping of a case the caller works on (403 otherwise); 422 names an unknown case or wheel."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=principal, idempotency_key=idempotency_key, request=request,
        body=body, action=lambda session: service.open_mapping(session, settings=settings, principal=principal,
                                                               data=body),
    )


@router.get("/mappings/{mapping_id}", response_model=MappingPublic, summary="Read a mapping")
async def get_mapping(request: Request, access: MappingReader) -> MappingPublic:
    """Read one mapping with its areas (audited); flagged areas and suggestions once completed."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_mapping(
        session, access=access))


@router.get("/mappings/{mapping_id}/as/{wheel_id}", response_model=MappingAsWheel,
            summary="Read a mapping on another wheel, through the declared correspondence")
async def read_as_wheel(request: Request, wheel_id: WheelId, access: MappingReader) -> MappingAsWheel:
    """Each area of the other wheel with the linked assessments of this one (audited); 404 if none is declared."""
    return await run_query(request.app.state.infra.engine, lambda session: service.mapping_as_wheel(
        session, access=access, as_wheel_id=wheel_id))


@router.get("/mappings/{mapping_id}/wheel.svg", response_class=Response, summary="The mapping drawn as its wheel",
            responses={200: {"content": {SVG: {"schema": {"type": "string"}}},
                             "description": "One sector per area, one ring per perspective; no identity."}})
async def wheel_picture(request: Request, access: MappingReader) -> Response:
    """The wheel picture for the conversation with the family (audited); it names no child, case or mapping."""
    picture = await run_query(request.app.state.infra.engine, lambda session: service.wheel_picture(
        session, access=access))
    # The picture is the child's data even without a name: no shared cache may keep it.
    return Response(picture, media_type=SVG, headers={"Cache-Control": "no-store"})


@router.put("/mappings/{mapping_id}/areas/{area_code}", response_model=AreaAssessmentPublic,
            summary="Assess one area of the wheel")
async def assess_area(request: Request, area_code: AreaCodePath, body: AreaAssessmentPut,
                      access: MappingWriter) -> AreaAssessmentPublic:
    """Set the professional's level and note; 422 if the wheel has no such area or step, 409 once completed."""
    return await run_query(request.app.state.infra.engine, lambda session: service.assess_area(
        session, access=access, area_code=area_code, data=body))


@router.put("/mappings/{mapping_id}/areas/{area_code}/perspectives/{perspective}",
            response_model=AreaAssessmentPublic,
            summary="Record one perspective on an area: the professional's, the child's own voice, the guardians'")
async def assess_area_perspective(request: Request, area_code: AreaCodePath, perspective: PerspectivePath,
                                  body: AreaAssessmentPut, access: MappingWriter) -> AreaAssessmentPublic:
    """Record the child's own voice or the guardians' view of an area (professional: as PUT .../areas/{area})."""
    return await run_query(request.app.state.infra.engine, lambda session: service.assess_area(
        session, access=access, area_code=area_code, data=body, perspective=perspective))


@router.put("/mappings/{mapping_id}/questions", response_model=MappingPublic,
            summary="Answer the five questions (fem frågor)")
async def answer_questions(request: Request, body: FiveQuestions, access: MappingWriter) -> MappingPublic:
    """Replace all five answers (an omitted one stays unanswered); 409 once completed."""
    return await run_query(request.app.state.infra.engine, lambda session: service.answer_questions(
        session, access=access, data=body))


@router.post("/mappings/{mapping_id}/complete", status_code=200, response_model=MappingPublic,
             summary="Complete a mapping: Trappan step, flagged areas, organisations to involve")
async def complete_mapping(request: Request, body: MappingComplete, access: MappingWriter,
                           idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Complete; 422 names each missing answer or the lack of assessed areas; 409 if already completed."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, status_code=200,
        action=lambda session: service.complete_mapping(session, settings=settings, access=access, data=body),
    )


@router.get("/cases/{case_id}/wheel-history", response_model=WheelHistory,
            summary="A child's wheel over time: per area and perspective, with the change since the mapping before")
async def wheel_history(request: Request, access: CaseReader) -> WheelHistory:
    """The case's mappings oldest first and each area's levels per perspective with their changes (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.wheel_history(
        session, access=access))


@router.get("/cases/{case_id}/mappings", response_model=list[MappingPublic], summary="A case's mappings")
async def case_history(request: Request, access: CaseReader) -> list[MappingPublic]:
    """Every mapping of a case, newest first (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.case_history(
        session, access=access))
