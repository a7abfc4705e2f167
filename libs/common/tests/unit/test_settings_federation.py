"""The federation directory: which member of which kind serves a child's municipality."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tillsammans_common.settings import FederationMember, OrgKind, ServiceSettings


def test_the_development_federation_names_the_three_members_by_kind() -> None:
    settings = ServiceSettings(dev_mode=True)
    assert settings.members_serving(OrgKind.SOCIAL_SERVICES, "0484") == ["social"]
    assert settings.members_serving(OrgKind.HEALTH_CARE, "0480") == ["region"]  # Nyköping: same county
    assert settings.members_serving(OrgKind.EDUCATION, "0480") == []


@pytest.mark.parametrize(("municipality", "expected"), [
    ("2080", ["falunsoc"]),
    ("0484", ["eskilstunasoc"]),
    ("0180", []),
    (None, ["eskilstunasoc", "falunsoc"]),
])
def test_a_kind_resolves_to_the_members_serving_the_municipality(municipality: str | None,
                                                                 expected: list[str]) -> None:
    members = {
        "eskilstunasoc": FederationMember(kind=OrgKind.SOCIAL_SERVICES, name="Eskilstuna",
                                          municipalities=frozenset({"0484"})),
        "falunsoc": FederationMember(kind=OrgKind.SOCIAL_SERVICES, name="Falun", municipalities=frozenset({"2080"})),
        "dalarna": FederationMember(kind=OrgKind.HEALTH_CARE, name="Region Dalarna", counties=frozenset({"20"})),
    }
    settings = ServiceSettings(dev_mode=True, federation=members)
    assert settings.members_serving(OrgKind.SOCIAL_SERVICES, municipality) == expected
    assert settings.members_serving(OrgKind.HEALTH_CARE, "2080") == ["dalarna"]


@pytest.mark.parametrize(("field", "value"), [("municipalities", ["484"]), ("counties", ["4"]),
                                              ("municipalities", ["04a4"])])
def test_codes_must_be_scb_codes(field: str, value: list[str]) -> None:
    with pytest.raises(ValidationError, match=field):
        FederationMember.model_validate({"kind": "education", "name": "x", field: value})


def test_federation_keys_are_organisation_ids() -> None:
    with pytest.raises(ValidationError, match="not organisation ids"):
        ServiceSettings(dev_mode=True, federation={"Not An Org": {"kind": "education", "name": "x"}})
