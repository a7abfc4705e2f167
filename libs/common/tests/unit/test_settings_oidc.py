"""The trust list and development mode in the settings: one issuer one organisation, no development secret."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tillsammans_common.settings import ServiceSettings

PRODUCTION = {
    "dev_mode": False,
    "child_key_secret": "a-real-secret-of-the-school",
    "peers": ["school", "region"],
    "pair_secrets": {"region": "shared-with-region-only"},
    "oidc_issuers": {"school": [{"issuer": "https://login.school.example", "audience": "tillsammans-school"}],
                     "region": [{"issuer": "https://idp.region.example/realms/vard", "audience": "tillsammans-region",
                                 "jwks_uri": "https://idp.region.example/realms/vard/certs"}]},
}


def _settings(**overrides: Any) -> ServiceSettings:
    return ServiceSettings(org="school", **{**PRODUCTION, **overrides})


def test_a_production_configuration_is_accepted() -> None:
    settings = _settings()
    assert not settings.dev_mode
    assert [config.issuer for config in settings.oidc_issuers["region"]] == ["https://idp.region.example/realms/vard"]
    assert settings.oidc_issuers["school"][0].leeway_seconds == 60


def test_the_trust_list_is_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLSAMMANS_OIDC_ISSUERS", '{"school": [{"issuer": "https://login.school.example", '
                                                   '"audience": "a", "roles_claim": "realm_access.roles"}]}')
    settings = ServiceSettings(org="school", dev_mode=True)
    assert settings.oidc_issuers["school"][0].roles_claim == "realm_access.roles"


@pytest.mark.parametrize(("overrides", "named"), [
    ({"child_key_secret": "tillsammans-development-child-key"}, "child_key_secret"),
    ({"pair_secrets": {}}, "development pair secrets for region"),
    ({"oidc_issuers": {"school": [{"issuer": "http://127.0.0.1:8131", "audience": "a", "development": True}]}},
     "development identity provider http://127.0.0.1:8131"),
    ({"oidc_issuers": {"school": [{"issuer": "http://login.school.example", "audience": "a"}]}}, "plain http"),
])
def test_development_settings_are_refused_outside_development_mode(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match="TILLSAMMANS_DEV_MODE=true") as refused:
        _settings(**overrides)
    assert named in str(refused.value)
    _settings(**overrides, dev_mode=True)  # a developer's machine


def test_a_provider_on_this_machine_may_use_plain_http() -> None:
    _settings(oidc_issuers={"school": [{"issuer": "http://localhost:9000", "audience": "a"}]})


@pytest.mark.parametrize("second", [
    {"issuer": "https://login.school.example", "audience": "b"},
    {"issuer": "https://other.example", "audience": "b", "jwks_uri": "https://idp.region.example/realms/vard/certs"},
])
def test_an_issuer_or_its_keys_sign_in_one_organisation_only(second: dict[str, Any]) -> None:
    issuers = {**PRODUCTION["oidc_issuers"], "social": [second]}  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="one organisation only"):
        _settings(oidc_issuers=issuers, peers=["school", "region", "social"],
                  pair_secrets={"region": "r", "social": "s"})


def test_a_role_map_names_tillsammans_roles() -> None:
    with pytest.raises(ValidationError, match="not roles"):
        _settings(oidc_issuers={"school": [{"issuer": "https://a.example", "audience": "a",
                                            "role_map": {"rektor": "headmaster"}}]})


def test_no_development_token_secret_remains() -> None:
    assert "dev_token_secret" not in ServiceSettings.model_fields
