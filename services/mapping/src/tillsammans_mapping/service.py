"""Mapping's domain operations: open a mapping, assess areas, answer the five questions, complete, read back."""

from __future__ import annotations

import uuid

from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.auth import Principal
from tillsammans_common.cases import case_in_body, get_case
from tillsammans_common.db import utcnow
from tillsammans_common.errors import Conflict, InvalidField, NotFound
from tillsammans_common.events.mapping import MappingCompleted, MappingOpened, Suggestion
from tillsammans_common.messaging.outbox import record_event
from tillsammans_common.settings import ServiceSettings
from tillsammans_common.wheel import Correspondence, Wheel, correspondence, latest, registry, wheels
from tillsammans_mapping import picture
from tillsammans_mapping.config import MappingSettings
from tillsammans_mapping.models import (
    PERSPECTIVE_ORDER,
    REQUIRED_ANSWERS,
    AreaAsRead,
    AreaAssessment,
    AreaAssessmentPublic,
    AreaAssessmentPut,
    CorrespondingAssessment,
    FiveQuestions,
    Mapping,
    MappingAsWheel,
    MappingComplete,
    MappingCreate,
    MappingPublic,
    MappingStatus,
    Perspective,
    SuggestionPublic,
    WheelHistory,
    WheelHistoryArea,
    WheelHistoryMapping,
    WheelHistoryPoint,
    WheelSummary,
)

PURPOSE = "early_support"


def list_wheels() -> list[WheelSummary]:
    """Every installed wheel version, by id then version."""
    return [WheelSummary(id=wheel.id, version=wheel.version, name=wheel.name)
            for _, wheel in sorted(wheels().items())]


def list_correspondences() -> list[Correspondence]:
    """Every installed correspondence between two wheels."""
    return list(registry().correspondences)


def get_wheel(*, wheel_id: str, version: int | None = None) -> Wheel:
    """One wheel version with its areas; the latest when ``version`` is None."""
    wheel = latest(wheel_id) if version is None else wheels().get((wheel_id, version))
    if wheel is None:
        raise NotFound("no such wheel or wheel version")
    return wheel


def mapping_facts(session: Session, mapping_id: str) -> policy.Facts:
    """The policy's view of a mapping: the child's case it belongs to."""
    mapping = _mapping(session, mapping_id)
    return policy.Facts(case=policy.case_facts(session, get_case(session, mapping.case_id)), record_id=mapping.id)


def open_mapping(session: Session, *, settings: MappingSettings, principal: Principal,
                 data: MappingCreate) -> MappingPublic:
    """Open a mapping of a case on a wheel and announce it, in one transaction (the case's BBA or delegate)."""
    case = case_in_body(session, data.case_id)
    access = policy.check(principal, policy.Action.CASE_WORK, policy.Facts(case=policy.case_facts(session, case)))
    if latest(data.wheel_id) is None:
        raise InvalidField("wheel_id", "no such wheel; see GET /wheels")
    wheel = latest(data.wheel_id) if data.wheel_version is None else wheels().get((data.wheel_id, data.wheel_version))
    if wheel is None:
        raise InvalidField("wheel_version", "no such version of this wheel; see GET /wheels")
    mapping = Mapping(id=str(uuid.uuid4()), case_id=data.case_id, wheel_id=wheel.id, wheel_version=wheel.version,
                      opened_by=principal.user)
    session.add(mapping)
    record_event(session, MappingOpened(
        mapping_id=mapping.id, case_id=mapping.case_id, wheel_id=wheel.id, wheel_version=wheel.version,
    ), source=settings.source, org=settings.org, subject=mapping.case_id)
    policy.audit_access(session, access, "mapping.open", purpose=PURPOSE, record_id=mapping.id)
    return _public(session, mapping, [])


def get_mapping(session: Session, *, access: policy.Access) -> MappingPublic:
    """Read a mapping with its areas; the read is audited."""
    mapping = _mapping(session, access.facts.record_id or "")
    policy.audit_access(session, access, "mapping.read", purpose=PURPOSE)
    return _public(session, mapping)


def case_history(session: Session, *, access: policy.Access) -> list[MappingPublic]:
    """Every mapping of a case, newest first; the read is audited even when there are none."""
    mappings = session.exec(
        select(Mapping).where(Mapping.case_id == access.case_id).order_by(col(Mapping.created_at).desc())
    ).all()
    policy.audit_access(session, access, "mapping.history", purpose=PURPOSE)
    return [_public(session, mapping) for mapping in mappings]


def assess_area(session: Session, *, access: policy.Access, area_code: str, data: AreaAssessmentPut,
                perspective: Perspective = Perspective.PROFESSIONAL) -> AreaAssessmentPublic:
    """Set how one area looks from one perspective, on the wheel's scale; refused once the mapping is completed."""
    principal = access.principal
    mapping = _open_mapping(session, access.facts.record_id or "")
    wheel = _wheel_of(mapping)
    if area_code not in wheel.area_codes():
        raise InvalidField("area_code", f"not an area of wheel {mapping.wheel_id} v{mapping.wheel_version}; "
                                        "see GET /wheels/{wheel_id}/versions/{version}")
    if data.level not in wheel.scale.codes():
        raise InvalidField("level", f"not a step of the scale of wheel {mapping.wheel_id} v{mapping.wheel_version}: "
                                    f"one of {', '.join(wheel.scale.codes())}")
    assessment = session.exec(select(AreaAssessment).where(
        AreaAssessment.mapping_id == mapping.id, AreaAssessment.area_code == area_code,
        AreaAssessment.perspective == perspective.value)).first()
    if assessment is None:
        assessment = AreaAssessment(mapping_id=mapping.id, area_code=area_code, perspective=perspective.value,
                                    level=data.level, assessed_by=principal.user)
    assessment.level, assessment.note = data.level, data.note
    assessment.assessed_by, assessment.updated_at = principal.user, utcnow()
    session.add(assessment)
    action = "mapping.assess_area" if perspective is Perspective.PROFESSIONAL else f"mapping.record_{perspective.value}"
    policy.audit_access(session, access, action, purpose=PURPOSE)
    return _assessment_public(assessment, wheel)


def answer_questions(session: Session, *, access: policy.Access, data: FiveQuestions) -> MappingPublic:
    """Replace the answers to the five questions; refused once the mapping is completed."""
    mapping = _open_mapping(session, access.facts.record_id or "")
    for field, value in data.model_dump().items():
        setattr(mapping, field, value)
    session.add(mapping)
    policy.audit_access(session, access, "mapping.answer_questions", purpose=PURPOSE)
    return _public(session, mapping)


def complete_mapping(session: Session, *, settings: MappingSettings, access: policy.Access,
                     data: MappingComplete) -> MappingPublic:
    """Complete a mapping: fix the Trappan step, the flagged areas and the organisations they call for."""
    principal = access.principal
    mapping = _open_mapping(session, access.facts.record_id or "")
    wheel = _wheel_of(mapping)
    assessments = _assessments(session, mapping)
    professional = [a for a in assessments if a.perspective == Perspective.PROFESSIONAL.value]
    missing = [(f"questions.{name}", "the question must be answered before completing")
               for name in REQUIRED_ANSWERS if getattr(mapping, name) in (None, "")]
    if not professional:
        missing.insert(0, ("areas", "assess at least one area of the wheel before completing"))
    if missing:
        raise _invalid_fields(missing)
    # The professional's assessment decides whom to involve; the child's and guardians' views are heard
    # beside it (and shown in the meeting), not counted as votes.
    flagged = [a.area_code for a in professional if _flags(wheel, a.level)]
    suggestions = suggest(settings, wheel, flagged, municipality=get_case(session, mapping.case_id).municipality_code)
    suggested = [suggestion.org for suggestion in suggestions]
    mapping.status, mapping.trappan_step = MappingStatus.COMPLETED, data.trappan_step
    mapping.flagged_areas, mapping.suggested_orgs = flagged, suggested
    mapping.suggestions = [suggestion.model_dump(mode="json") for suggestion in suggestions]
    mapping.completed_by, mapping.completed_at = principal.user, utcnow()
    session.add(mapping)
    record_event(session, MappingCompleted(
        mapping_id=mapping.id, case_id=mapping.case_id, wheel_id=mapping.wheel_id,
        wheel_version=mapping.wheel_version, flagged_areas=flagged, suggested_orgs=suggested,
        trappan_step=data.trappan_step, suggestions=suggestions,
    ), source=settings.source, org=settings.org, subject=mapping.case_id)
    policy.audit_access(session, access, "mapping.complete", purpose=PURPOSE)
    return _public(session, mapping, assessments)


def suggest(settings: ServiceSettings, wheel: Wheel, flagged: list[str], *,
            municipality: str | None) -> list[Suggestion]:
    """The members of the federation the flagged areas call for, serving the child's municipality, in wheel order.

    Each kind the areas name resolves to the members of that kind serving the municipality (every
    member of the kind when it is unknown, so nobody is left out for want of an address); this
    organisation is already involved, and only peers can be invited.
    """
    found: dict[str, Suggestion] = {}
    for kind, roles, areas in wheel.suggested_kinds(flagged):
        for org in settings.members_serving(kind, municipality):
            if org == settings.org or org not in settings.peers or org in found:
                continue
            found[org] = Suggestion(org=org, name=settings.federation[org].name, kind=kind, roles=roles, areas=areas)
    return list(found.values())


def _mapping(session: Session, mapping_id: str, *, for_update: bool = False) -> Mapping:
    mapping = session.get(Mapping, mapping_id, with_for_update=for_update or None)
    if mapping is None:
        raise NotFound("no such mapping")
    return mapping


def _open_mapping(session: Session, mapping_id: str) -> Mapping:
    # The row lock serialises writers of one mapping, so nothing lands after a concurrent completion.
    mapping = _mapping(session, mapping_id, for_update=True)
    if mapping.status != MappingStatus.OPEN:
        raise Conflict("the mapping is completed and can no longer change; open a new mapping of the case",
                       mapping_status=mapping.status.value)
    return mapping


def wheel_history(session: Session, *, access: policy.Access) -> WheelHistory:
    """A child's mappings over time, per wheel, area and perspective, each with the change since the one before."""
    mappings = session.exec(
        select(Mapping).where(Mapping.case_id == access.case_id).order_by(col(Mapping.created_at), col(Mapping.id))
    ).all()
    series: dict[tuple[str, str, str], list[WheelHistoryPoint]] = {}
    for mapping in mappings:
        wheel = wheels().get((mapping.wheel_id, mapping.wheel_version))
        for assessment in _assessments(session, mapping):
            points = series.setdefault((mapping.wheel_id, assessment.area_code, assessment.perspective), [])
            value = _value(wheel, assessment.level)
            before = points[-1] if points else None
            # Values are comparable within one wheel id: a new version keeps its scale or it is a new wheel.
            change = value - before.value if before and before.value is not None and value is not None else None
            points.append(WheelHistoryPoint(
                mapping_id=mapping.id, level=assessment.level, value=value,
                previous_mapping_id=before.mapping_id if before else None,
                previous_level=before.level if before else None, change=change))
    policy.audit_access(session, access, "mapping.wheel_history", purpose=PURPOSE)
    return WheelHistory(
        case_id=access.case_id or "",
        mappings=[WheelHistoryMapping(mapping_id=m.id, wheel_id=m.wheel_id, wheel_version=m.wheel_version,
                                      status=m.status, created_at=m.created_at, completed_at=m.completed_at)
                  for m in mappings],
        areas=[WheelHistoryArea(wheel_id=wheel_id, area_code=area, perspective=Perspective(perspective),
                                points=points)
               for (wheel_id, area, perspective), points in series.items()],
    )


def mapping_as_wheel(session: Session, *, access: policy.Access, as_wheel_id: str) -> MappingAsWheel:
    """Read a mapping on another wheel through the declared correspondence of the two (audited)."""
    mapping = _mapping(session, access.facts.record_id or "")
    target = latest(as_wheel_id)
    if target is None:
        raise NotFound("no such wheel; see GET /wheels")
    declared = correspondence(mapping.wheel_id, as_wheel_id) if as_wheel_id != mapping.wheel_id else None
    if declared is None:
        raise NotFound(f"no correspondence between wheels {mapping.wheel_id} and {as_wheel_id} is declared")
    own = wheels().get((mapping.wheel_id, mapping.wheel_version))
    linked: dict[tuple[str, str], list[CorrespondingAssessment]] = {}
    for assessment in _assessments(session, mapping):
        for area_code in declared.targets(mapping.wheel_id, assessment.area_code):
            linked.setdefault((area_code, assessment.perspective), []).append(CorrespondingAssessment(
                area_code=assessment.area_code, level=assessment.level, value=_value(own, assessment.level),
                flags=_flags(own, assessment.level)))
    areas = [AreaAsRead(area_code=area.code, label_sv=area.label_sv, label_en=area.label_en,
                        perspective=perspective, flagged=any(a.flags for a in linked[(area.code, perspective.value)]),
                        from_areas=linked[(area.code, perspective.value)])
             for area in target.areas for perspective in PERSPECTIVE_ORDER if (area.code, perspective.value) in linked]
    covered = {area.area_code for area in areas}
    policy.audit_access(session, access, "mapping.read_as_wheel", purpose=PURPOSE)
    return MappingAsWheel(mapping_id=mapping.id, wheel_id=mapping.wheel_id, wheel_version=mapping.wheel_version,
                          as_wheel_id=target.id, as_wheel_version=target.version, correspondence_id=declared.id,
                          areas=areas, not_covered=[a.code for a in target.areas if a.code not in covered])


def wheel_picture(session: Session, *, access: policy.Access) -> bytes:
    """The mapping drawn as its wheel (SVG), every perspective, without anything that identifies the child."""
    mapping = _mapping(session, access.facts.record_id or "")
    wheel = _wheel_of(mapping)
    levels = {(a.area_code, a.perspective): a.level for a in _assessments(session, mapping)}
    policy.audit_access(session, access, "mapping.wheel_picture", purpose=PURPOSE)
    return picture.draw(wheel, levels)


def _wheel_of(mapping: Mapping) -> Wheel:
    wheel = wheels().get((mapping.wheel_id, mapping.wheel_version))
    if wheel is None:
        raise Conflict("the wheel version this mapping uses is no longer installed")
    return wheel


def _value(wheel: Wheel | None, level: str) -> int | None:
    step = wheel.scale.step(level) if wheel else None
    return step.value if step else None


def _flags(wheel: Wheel | None, level: str) -> bool:
    step = wheel.scale.step(level) if wheel else None
    return step is not None and step.flags


def _assessments(session: Session, mapping: Mapping) -> list[AreaAssessment]:
    """The mapping's assessments in wheel order (the order people read the wheel in), then by perspective."""
    rows = {(a.area_code, a.perspective): a for a in session.exec(
        select(AreaAssessment).where(AreaAssessment.mapping_id == mapping.id)).all()}
    wheel = wheels().get((mapping.wheel_id, mapping.wheel_version))
    # A wheel version taken out of the configuration must not make its old mappings unreadable.
    order = [area.code for area in wheel.areas] if wheel else sorted({code for code, _ in rows})
    return [rows[(code, p.value)] for code in order for p in PERSPECTIVE_ORDER if (code, p.value) in rows]


def _assessment_public(assessment: AreaAssessment, wheel: Wheel | None) -> AreaAssessmentPublic:
    return AreaAssessmentPublic(
        area_code=assessment.area_code, perspective=Perspective(assessment.perspective), level=assessment.level,
        value=_value(wheel, assessment.level), note=assessment.note, assessed_by=assessment.assessed_by,
        updated_at=assessment.updated_at)


def _public(session: Session, mapping: Mapping, assessments: list[AreaAssessment] | None = None) -> MappingPublic:
    if assessments is None:
        assessments = _assessments(session, mapping)
    wheel = wheels().get((mapping.wheel_id, mapping.wheel_version))
    return MappingPublic(
        id=mapping.id, case_id=mapping.case_id, wheel_id=mapping.wheel_id, wheel_version=mapping.wheel_version,
        status=mapping.status, trappan_step=mapping.trappan_step,
        questions=FiveQuestions.model_validate(mapping, from_attributes=True),
        areas=[_assessment_public(a, wheel) for a in assessments],
        flagged_areas=mapping.flagged_areas, suggested_orgs=mapping.suggested_orgs,
        suggestions=_suggestions_public(mapping),
        opened_by=mapping.opened_by, created_at=mapping.created_at,
        completed_by=mapping.completed_by, completed_at=mapping.completed_at,
    )


def _suggestions_public(mapping: Mapping) -> list[SuggestionPublic] | None:
    if mapping.suggestions is None:
        # Completed before decision 24: only the ids were kept.
        return None if mapping.status == MappingStatus.OPEN else []
    labels = registry().roles
    return [SuggestionPublic(**item, role_labels_sv=[labels[code].label_sv if code in labels else code
                                                     for code in item["roles"]])
            for item in mapping.suggestions]


def _invalid_fields(errors: list[tuple[str, str]]) -> InvalidField:
    # InvalidField names one field; a completion can miss several, and the caller should see them all at once.
    problem = InvalidField(*errors[0])
    problem.detail = "; ".join(f"{field}: {reason}" for field, reason in errors)
    problem.extra["errors"] = [{"field": field, "reason": reason} for field, reason in errors]
    return problem
