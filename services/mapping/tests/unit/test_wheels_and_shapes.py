"""Wheel data as mapping uses it, and the validation rules of mapping's API shapes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tillsammans_common.settings import OrgKind
from tillsammans_common.wheel import correspondence, latest, wheels
from tillsammans_mapping.models import (
    FLAGGING_LEVELS,
    ConcernLevel,
    FiveQuestions,
    MappingComplete,
    MappingCreate,
)


def test_sormland_wheel_has_the_seven_areas_of_seed_001() -> None:
    wheel = latest("sormland")
    assert wheel is not None
    assert wheel.version == 1
    assert [area.code for area in wheel.areas] == [
        "halsa", "utveckling", "larande", "omsorg", "hemmet", "relationer", "trygghet"]


def test_girfec_wheel_has_the_eight_shanarri_indicators() -> None:
    wheel = wheels()[("girfec", 1)]
    assert [area.label_en for area in wheel.areas] == [
        "Safe", "Healthy", "Achieving", "Nurtured", "Active", "Respected", "Responsible", "Included"]


def test_suggestions_follow_wheel_order_not_flagging_order() -> None:
    wheel = wheels()[("sormland", 1)]
    # hemmet (social services) comes before relationer (health care, social services) in the JSON.
    assert wheel.suggested_kinds(["trygghet", "hemmet", "relationer"]) == [
        (OrgKind.SOCIAL_SERVICES, ["social_worker", "family_therapist"], ["hemmet", "relationer", "trygghet"]),
        (OrgKind.HEALTH_CARE, ["bup"], ["relationer"])]
    assert wheel.suggested_kinds(["larande"]) == [
        (OrgKind.EDUCATION, ["special_educator", "school_psychologist"], ["larande"])]
    assert wheel.suggested_kinds([]) == []


def test_only_some_and_serious_concern_flag_an_area() -> None:
    assert FLAGGING_LEVELS == {ConcernLevel.SOME_CONCERN, ConcernLevel.SERIOUS_CONCERN}


@pytest.mark.parametrize("case_id", ["20130412-1237", "201304121237", "130412-1237"])
def test_a_personnummer_is_never_accepted_as_case_id(case_id: str) -> None:
    with pytest.raises(ValidationError) as raised:
        MappingCreate(case_id=case_id)
    assert "never a personnummer" in str(raised.value)


def test_an_opaque_case_id_is_accepted_with_the_sormland_default() -> None:
    created = MappingCreate(case_id="6f1c2a1e-3f0b-4c59-9a57-0d6f0a3f2f10")
    assert (created.wheel_id, created.wheel_version) == ("sormland", None)


def test_a_blank_answer_is_no_answer_and_answers_are_bounded() -> None:
    with pytest.raises(ValidationError):
        FiveQuestions(obstacles="   ")
    with pytest.raises(ValidationError):
        FiveQuestions(help_needed="x" * 2001)
    assert FiveQuestions(obstacles="  Otrygghet  ").obstacles == "Otrygghet"


@pytest.mark.parametrize("step", [-1, 4])
def test_trappan_has_steps_0_to_3(step: int) -> None:
    with pytest.raises(ValidationError):
        MappingComplete(trappan_step=step)
    assert MappingComplete(trappan_step=3).trappan_step == 3


def test_question_text_is_in_the_api_schema_in_swedish_and_english() -> None:
    schema = FiveQuestions.model_json_schema()["properties"]
    assert "Vad står i vägen för barnets välmående?" in schema["obstacles"]["description"]
    assert "What additional help do I need from others?" in schema["help_needed"]["description"]


def test_settings_read_the_mapping_prefix_before_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from tillsammans_mapping.config import MappingSettings

    assert MappingSettings().port == 8002
    monkeypatch.setenv("TILLSAMMANS_ORG", "region")
    monkeypatch.setenv("TILLSAMMANS_PORT", "9000")
    monkeypatch.setenv("TILLSAMMANS_MAPPING_PORT", "9002")
    settings = MappingSettings()
    assert (settings.org, settings.port, settings.source) == ("region", 9002, "/orgs/region/mapping")


def test_the_packaged_wheels_state_the_concern_scale_their_levels_always_had() -> None:
    for wheel in wheels().values():
        assert wheel.scale.codes() == ["no_concern", "some_concern", "serious_concern", "unknown"]
        assert [step.code for step in wheel.scale.steps if step.flags] == [level.value for level in ConcernLevel
                                                                           if level in FLAGGING_LEVELS]


def test_sormland_and_girfec_correspond_in_both_directions_and_cover_every_area() -> None:
    declared = correspondence("girfec", "sormland")
    assert declared is not None and declared is correspondence("sormland", "girfec")
    assert declared.targets("sormland", "hemmet") == ["nurtured", "safe"]
    assert declared.targets("girfec", "safe") == ["hemmet", "trygghet"]
    sormland, girfec = latest("sormland"), latest("girfec")
    assert sormland is not None and girfec is not None
    assert {a for a, _ in declared.links} == sormland.area_codes()
    assert {b for _, b in declared.links} == girfec.area_codes()
