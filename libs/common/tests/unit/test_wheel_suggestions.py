"""Wheel areas suggest kinds of organisation with roles (decision 24); old files naming org ids still read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tillsammans_common.settings import OrgKind
from tillsammans_common.wheel import PACKAGED, WheelError, load

ROLES = {"source": "test", "roles": [
    {"code": "bvc_nurse", "kind": "health_care", "label_sv": "BVC-sjuksköterska", "label_en": "Child health nurse"},
    {"code": "family_therapist", "kind": "social_services", "label_sv": "Familjebehandlare",
     "label_en": "Family therapist"},
]}


def _wheel(*areas: dict[str, Any]) -> dict[str, Any]:
    return {"id": "lokal", "version": 1, "name": "Lokalt hjul", "source": "test", "areas": list(areas)}


def _area(code: str, suggests: list[Any]) -> dict[str, Any]:
    return {"code": code, "label_sv": code, "label_en": code, "suggests": suggests}


def _folder(tmp_path: Path, wheel: dict[str, Any], roles: dict[str, Any] | None = ROLES) -> Path:
    (tmp_path / "lokal-v1.json").write_text(json.dumps(wheel), encoding="utf-8")
    if roles is not None:
        (tmp_path / "lokal.roles.json").write_text(json.dumps(roles), encoding="utf-8")
    return tmp_path


def test_an_area_suggests_kinds_with_declared_roles(tmp_path: Path) -> None:
    folder = _folder(tmp_path, _wheel(
        _area("halsa", [{"kind": "health_care", "roles": ["bvc_nurse"]}]),
        _area("hemmet", [{"kind": "social_services", "roles": ["family_therapist"]},
                         {"kind": "health_care", "roles": ["bvc_nurse"]}])))
    registry = load([folder])
    wheel = registry.wheels[("lokal", 1)]
    assert wheel.suggested_kinds(["hemmet", "halsa"]) == [
        (OrgKind.HEALTH_CARE, ["bvc_nurse"], ["halsa", "hemmet"]),
        (OrgKind.SOCIAL_SERVICES, ["family_therapist"], ["hemmet"])]
    assert registry.roles["bvc_nurse"].label_sv == "BVC-sjuksköterska"


def test_a_deployed_wheel_naming_org_ids_reads_as_kinds_without_roles(tmp_path: Path) -> None:
    folder = _folder(tmp_path, _wheel(_area("kropp", ["region"]), _area("skola", ["school"]),
                                      _area("familj", ["social", "school"])), roles=None)
    wheel = load([folder]).wheels[("lokal", 1)]
    assert [(s.kind, s.roles) for s in wheel.areas[2].suggests] == [
        (OrgKind.SOCIAL_SERVICES, []), (OrgKind.EDUCATION, [])]
    assert [kind for kind, _, _ in wheel.suggested_kinds(["kropp", "skola"])] == [OrgKind.HEALTH_CARE,
                                                                                   OrgKind.EDUCATION]


def test_the_packaged_wheels_name_only_declared_roles_of_the_right_kind() -> None:
    registry = load([PACKAGED])
    for wheel in registry.wheels.values():
        for area in wheel.areas:
            assert area.suggests, f"{wheel.id}.{area.code} suggests nobody"
            for suggestion in area.suggests:
                assert all(registry.roles[code].kind is suggestion.kind for code in suggestion.roles)


@pytest.mark.parametrize(("suggests", "roles", "message"), [
    (["skolan"], ROLES, "neither a kind with roles nor one of school, region, social"),
    ([{"kind": "police", "roles": []}], ROLES, "kind"),
    ([{"kind": "health_care", "roles": ["kurator"]}], ROLES, "names role 'kurator', which no roles file declares"),
    ([{"kind": "health_care", "roles": ["family_therapist"]}], ROLES,
     "names role 'family_therapist' under health_care, but it is a role of social_services"),
    ([{"kind": "health_care"}, {"kind": "health_care", "roles": ["bvc_nurse"]}], ROLES,
     "each kind of organisation is suggested once"),
    ([{"kind": "health_care", "roles": ["Bad Code"]}], ROLES, "roles"),
    ([{"kind": "health_care", "roles": [], "extra": 1}], ROLES, "extra"),
    ([{"kind": "health_care", "roles": ["bvc_nurse"]}],
     {"source": "test", "roles": [{"code": "bvc_nurse", "kind": "school", "label_sv": "x", "label_en": "x"}]},
     "kind"),
], ids=["unknown-legacy-id", "unknown-kind", "undeclared-role", "role-of-another-kind", "kind-twice",
        "bad-role-code", "unknown-field", "bad-roles-file"])
def test_a_malformed_suggestion_is_refused_at_start_up_naming_the_file(
        tmp_path: Path, suggests: list[Any], roles: dict[str, Any], message: str) -> None:
    folder = _folder(tmp_path, _wheel(_area("halsa", suggests)), roles=roles)
    with pytest.raises(WheelError) as refused:
        load([folder])
    assert message in str(refused.value)
    assert "lokal" in str(refused.value)


def test_a_role_redefined_differently_by_a_local_file_is_refused(tmp_path: Path) -> None:
    changed = {"source": "local", "roles": [
        {"code": "bup", "kind": "social_services", "label_sv": "BUP", "label_en": "BUP"}]}
    folder = _folder(tmp_path, _wheel(_area("halsa", ["region"])), roles=changed)
    with pytest.raises(WheelError, match="role bup is already defined differently"):
        load([PACKAGED, folder])
