"""Intake's HTTP API: thin routes over service.py; each states its access rule in its signature (policy.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from tillsammans_common.policy import Access, Action, CurrentPrincipal, RecordId, allowed, facts_of_case, on_record
from tillsammans_common.web import run_command, run_query
from tillsammans_intake import service
from tillsammans_intake.models import (
    CasePublic,
    CaseSummary,
    ConcernCreate,
    ConcernPublic,
    ConcernStatusPublic,
    DelegationCreate,
    DelegationPublic,
    DirectoryImportResult,
    InboxItemPublic,
    ReceivedReportPublic,
    ReceivedReportSummary,
    ReportCreate,
    ReportPublic,
    TransferCreate,
    TransferPublic,
    UnitPublic,
    UnitPut,
)
from tillsammans_intake.ss12000 import SS12000Export

router = APIRouter(tags=["intake"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Repeat-safe POSTs.")]
UnitId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$",
                             description="The unit's id in the directory (lowercase).")]

ConcernReader = Annotated[Access, on_record(Action.CASE_READ, service.concern_facts, param="concern_id")]
ConcernStatusReader = Annotated[Access, on_record(Action.CONCERN_STATUS, service.concern_facts, param="concern_id")]
CaseReader = Annotated[Access, on_record(Action.CASE_READ, facts_of_case, param="case_id")]
CaseDelegator = Annotated[Access, on_record(Action.CASE_DELEGATE, facts_of_case, param="case_id")]
CaseHandover = Annotated[Access, on_record(Action.CASE_TRANSFER, facts_of_case, param="case_id")]
ConcernRaiser = Annotated[Access, allowed(Action.CONCERN_RAISE)]
InboxOwner = Annotated[Access, allowed(Action.INBOX_READ)]
DirectoryReader = Annotated[Access, allowed(Action.DIRECTORY_READ)]
DirectoryEditor = Annotated[Access, allowed(Action.DIRECTORY_WRITE)]
CaseReporter = Annotated[Access, on_record(Action.REPORT_FILE, facts_of_case, param="case_id")]
ConcernReporter = Annotated[Access, on_record(Action.REPORT_FILE, service.concern_facts, param="concern_id")]
ReportReader = Annotated[Access, on_record(Action.REPORT_READ, service.report_facts, param="report_id")]
ReceivedReportsReader = Annotated[Access, allowed(Action.RECEIVED_REPORTS_READ)]


@router.post("/concerns", status_code=201, response_model=ConcernPublic,
             summary="Raise a concern (oro) and route it to the BBA of the child's case")
async def raise_concern(request: Request, body: ConcernCreate, access: ConcernRaiser,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Raise a concern; a child with an open case joins it; 422 names any invalid field; repeat-safe."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: service.raise_concern(
            session, settings=settings, principal=access.principal, data=body),
    )


@router.get("/concerns/{concern_id}", response_model=ConcernPublic, summary="Read a concern with the child")
async def get_concern(request: Request, access: ConcernReader) -> ConcernPublic:
    """Read one concern (audited): the case's BBA, its delegates, and integrations of its unit."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_concern(
        session, access=access))


@router.get("/concerns/{concern_id}/status", response_model=ConcernStatusPublic, summary="Where a concern is")
async def concern_status(request: Request, access: ConcernStatusReader) -> ConcernStatusPublic:
    """The concern's status, for the one who raised it as for the case's BBA (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.concern_status(
        session, access=access))


@router.get("/cases", response_model=list[CaseSummary], summary="The cases the caller has a need to know")
async def list_cases(request: Request, principal: CurrentPrincipal) -> list[CaseSummary]:
    """Cases of the caller's units (BBA, integration) and cases delegated to the caller, newest first."""
    return await run_query(request.app.state.infra.engine, lambda session: service.list_cases(
        session, principal=principal))


@router.get("/cases/{case_id}", response_model=CasePublic, summary="A child's case")
async def get_case(request: Request, access: CaseReader) -> CasePublic:
    """The child's case with its concerns and delegations (audited)."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_case_detail(
        session, access=access))


@router.post("/cases/{case_id}/delegations", status_code=201, response_model=DelegationPublic,
             summary="Delegate access to the case for a period (the case's BBA)")
async def delegate(request: Request, body: DelegationCreate, access: CaseDelegator,
                   idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Give a colleague the BBA's access to this case until valid_until (at most a year); 422 otherwise."""
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: service.delegate(
            session, settings=settings, access=access, data=body),
    )


@router.post("/cases/{case_id}/delegations/{delegation_id}/revoke", response_model=DelegationPublic,
             summary="Take a delegation back (the case's BBA)")
async def revoke_delegation(request: Request, delegation_id: RecordId, access: CaseDelegator) -> DelegationPublic:
    """Revoke from now on; 409 if already revoked."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.revoke_delegation(
        session, settings=settings, access=access, delegation_id=delegation_id))


@router.post("/cases/{case_id}/transfer", response_model=TransferPublic,
             summary="Hand the case over to another unit and its BBA (the case's BBA, e.g. the intake desk)")
async def transfer_case(request: Request, body: TransferCreate, access: CaseHandover) -> TransferPublic:
    """Move the case and its concerns to the unit's BBA; to the unit it is at, nothing changes; 422 names the field."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.transfer_case(
        session, settings=settings, access=access, data=body))


@router.get("/inbox", response_model=list[InboxItemPublic], summary="The calling BBA's inbox")
async def inbox(request: Request, access: InboxOwner) -> list[InboxItemPublic]:
    """Concerns routed to the calling BBA."""
    return await run_query(request.app.state.infra.engine, lambda session: service.inbox(session, access=access))


@router.get("/units", response_model=list[UnitPublic], summary="The unit and BBA directory")
async def list_units(request: Request, _: DirectoryReader, stale: Annotated[bool | None, Query(
        description="true: only units not confirmed within the staleness period (or never); false: only the others."
)] = None) -> list[UnitPublic]:
    """Every unit with its BBA, deputies and when it was last confirmed; any role of this organisation may look."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.list_units(
        session, settings=settings, stale=stale))


@router.put("/units/{unit_id}", response_model=UnitPublic, summary="Create or replace a unit")
async def put_unit(request: Request, unit_id: UnitId, body: UnitPut, access: DirectoryEditor) -> UnitPublic:
    """Keep the directory current (seed 002: a stale contact list fails the children)."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.put_unit(
        session, settings=settings, principal=access.principal, unit_id=unit_id, data=body))


@router.post("/units/{unit_id}/confirm", response_model=UnitPublic, summary="Confirm a unit and its BBA are current")
async def confirm_unit(request: Request, unit_id: UnitId, access: DirectoryEditor) -> UnitPublic:
    """Record that the unit was checked now: it leaves the stale list for the staleness period; 404 if unknown."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.confirm_unit(
        session, settings=settings, principal=access.principal, unit_id=unit_id))


@router.post("/directory/import", response_model=DirectoryImportResult,
             summary="Load or refresh the directory from an SS 12000 export (all or nothing)")
async def import_directory(request: Request, body: SS12000Export, access: DirectoryEditor) -> DirectoryImportResult:
    """Create or refresh the export's school units with their BBA and deputies, confirming them; 422 changes nothing."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.import_directory(
        session, settings=settings, principal=access.principal, export=body))


@router.post("/concerns/{concern_id}/report", status_code=201, response_model=ReportPublic,
             summary="File an orosanmälan with social services from a concern (no consent needed)")
async def report_concern(request: Request, body: ReportCreate, access: ConcernReporter,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Report the concern's child to the social services of the child's municipality (SoL 14 kap. 1 §).

    The raiser of the concern, the case's BBA, a delegate or an integration of the unit; 422 names the field
    when the child's municipality is unknown or no social services serves it; repeat-safe.
    """
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: service.file_report(
            session, settings=settings, access=access, data=body, concern_id=access.facts.record_id),
    )


@router.post("/cases/{case_id}/reports", status_code=201, response_model=ReportPublic,
             summary="File an orosanmälan with social services from a case or its mapping (no consent needed)")
async def report_case(request: Request, body: ReportCreate, access: CaseReporter,
                      idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Report the case's child to the social services of the child's municipality (SoL 14 kap. 1 §).

    The case's BBA, a delegate or an integration of the unit; a mapping_id carries its flagged areas; repeat-safe.
    """
    settings = request.app.state.settings
    return await run_command(
        request.app.state.infra.engine, principal=access.principal, idempotency_key=idempotency_key,
        request=request, body=body, action=lambda session: service.file_report(
            session, settings=settings, access=access, data=body),
    )


@router.get("/reports/{report_id}", response_model=ReportPublic, summary="An orosanmälan filed here, and where it is")
async def get_report(request: Request, access: ReportReader) -> ReportPublic:
    """Queued, sent or acknowledged (with social services' reference): its reporter and the case's BBA; audited."""
    return await run_query(request.app.state.infra.engine, lambda session: service.get_report(
        session, access=access))


@router.get("/received-reports", response_model=list[ReceivedReportSummary],
            summary="Orosanmälningar received by social services' intake desk")
async def list_received_reports(request: Request, access: ReceivedReportsReader) -> list[ReceivedReportSummary]:
    """Urgent first, then newest; the intake desk's staff only (403 otherwise); every report shown is audited."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.list_received_reports(
        session, settings=settings, access=access))


@router.get("/received-reports/{report_id}", response_model=ReceivedReportPublic,
            summary="One received orosanmälan with the child and the grounds")
async def get_received_report(request: Request, report_id: RecordId,
                              access: ReceivedReportsReader) -> ReceivedReportPublic:
    """The intake desk's staff only (403 otherwise); audited."""
    settings = request.app.state.settings
    return await run_query(request.app.state.infra.engine, lambda session: service.get_received_report(
        session, settings=settings, access=access, report_id=report_id))
