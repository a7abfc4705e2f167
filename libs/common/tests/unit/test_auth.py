"""OIDC tokens: verification, claim mapping, client credentials, and the cache of tokens already verified."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tillsammans_common import auth
from tillsammans_common.auth import Role, TokenVerifier
from tillsammans_common.settings import IssuerConfig
from tillsammans_common.testing import TestIssuer

SCHOOL = TestIssuer("school")
REGION = TestIssuer("region")


def _verifier(*issuers: TestIssuer, cache_size: int = 1024, **overrides: Any) -> TokenVerifier:
    return TokenVerifier({issuer.org: [IssuerConfig(**issuer.config(**overrides))] for issuer in issuers},
                         cache_size=cache_size)


async def _refused(verifier: TokenVerifier, token: str) -> type[Exception]:
    with pytest.raises((jwt.InvalidTokenError, ValueError)) as refused:
        await verifier.verify(token)
    return refused.type


def _counting(verifier: TokenVerifier) -> list[str]:
    calls: list[str] = []
    real = verifier._verify

    async def counted(token: str) -> tuple[auth.Principal, float]:
        calls.append(token)
        return await real(token)

    verifier._verify = counted  # type: ignore[method-assign]
    return calls


async def test_a_users_token_names_organisation_user_roles_and_units() -> None:
    principal = await _verifier(SCHOOL, REGION).verify(
        REGION.user_token("anna", [Role.BBA, Role.COORDINATOR], units=["bvc-norr"]))
    assert (principal.org, principal.user, principal.roles, principal.units, principal.client) == (
        "region", "anna", {Role.BBA, Role.COORDINATOR}, {"bvc-norr"}, False)


async def test_a_token_is_checked_once_and_again_after_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _verifier(SCHOOL, REGION)
    calls = _counting(verifier)
    token = SCHOOL.user_token("anna", [Role.BBA], ttl_seconds=60)

    first, second = await verifier.verify(token), await verifier.verify(token)
    assert first == second and (first.org, first.user, first.role) == ("school", "anna", Role.BBA)
    assert len(calls) == 1

    now = time.time()
    monkeypatch.setattr(auth.time, "time", lambda: now + 61)  # past the token's expiry
    await verifier.verify(token)  # not served from the cache: checked again (jwt itself runs on real time)
    assert len(calls) == 2


async def test_refused_tokens_are_never_remembered() -> None:
    verifier = _verifier(SCHOOL)
    forged = TestIssuer("school").user_token("anna", [Role.BBA])  # same issuer and kid, another key
    for _ in range(2):
        assert await _refused(verifier, forged) is jwt.InvalidSignatureError
    expired = SCHOOL.user_token("anna", [Role.BBA], ttl_seconds=-120)
    assert await _refused(verifier, expired) is jwt.ExpiredSignatureError
    assert await _refused(verifier, TestIssuer("police").user_token("x", [Role.BBA])) is jwt.InvalidIssuerError
    assert not verifier._verified


async def test_expiry_allows_the_configured_clock_skew() -> None:
    late = SCHOOL.user_token("anna", [Role.BBA], ttl_seconds=-30)
    assert (await _verifier(SCHOOL).verify(late)).user == "anna"  # within the default 60 s
    assert await _refused(_verifier(SCHOOL, leeway_seconds=0), late) is jwt.ExpiredSignatureError


async def test_the_audience_must_be_this_federation_members() -> None:
    elsewhere = SCHOOL.sign({"sub": "anna", "roles": ["bba"], "aud": "some-other-api"})
    assert await _refused(_verifier(SCHOOL), elsewhere) is jwt.InvalidAudienceError
    no_audience = jwt.encode({"iss": SCHOOL.issuer, "sub": "anna", "roles": ["bba"], "exp": time.time() + 60},
                             SCHOOL.private_key, algorithm="RS256", headers={"kid": SCHOOL.kid})
    assert issubclass(await _refused(_verifier(SCHOOL), no_audience), jwt.InvalidTokenError)


@pytest.mark.parametrize("algorithm", ["HS256", "none"])
async def test_only_asymmetric_signatures_are_accepted(algorithm: str) -> None:
    claims = {"iss": SCHOOL.issuer, "aud": SCHOOL.audience, "sub": "anna", "roles": ["bba"], "exp": time.time() + 60}
    # HS256 keyed with the public JWK's modulus: the classic confusion attack on a careless verifier.
    key = SCHOOL.jwks["keys"][0]["n"] if algorithm == "HS256" else None
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": SCHOOL.kid})
    assert await _refused(_verifier(SCHOOL), token) is jwt.InvalidAlgorithmError


async def test_a_token_naming_an_unknown_key_is_refused() -> None:
    token = SCHOOL.sign({"sub": "anna", "roles": ["bba"]}, kid="rotated-out")
    assert issubclass(await _refused(_verifier(SCHOOL), token), jwt.InvalidTokenError)


async def test_the_cache_is_bounded() -> None:
    verifier = _verifier(SCHOOL, cache_size=2)
    calls = _counting(verifier)
    tokens = [SCHOOL.user_token(f"user{n}", [Role.BBA]) for n in range(3)]
    for token in tokens:
        await verifier.verify(token)
    await verifier.verify(tokens[0])  # the oldest was evicted, so it is checked again
    assert len(calls) == 4
    assert len(verifier._verified) == 2


@pytest.mark.parametrize("user", ["", "   ", "x" * 129])
async def test_a_token_without_a_usable_user_is_refused(user: str) -> None:
    verifier = _verifier(SCHOOL)
    assert issubclass(await _refused(verifier, SCHOOL.user_token(user, [Role.BBA])), jwt.InvalidTokenError)
    assert (await verifier.verify(SCHOOL.user_token("bba.x", [Role.BBA]))).user == "bba.x"


async def test_a_token_without_a_tillsammans_role_is_refused() -> None:
    token = SCHOOL.sign({"sub": "anna", "roles": ["offline_access", "uma_authorization"]})
    assert issubclass(await _refused(_verifier(SCHOOL), token), jwt.InvalidTokenError)


async def test_claims_are_mapped_per_issuer() -> None:
    # A Keycloak-like provider: the user in preferred_username, roles nested, its own role names.
    verifier = _verifier(SCHOOL, user_claim="preferred_username", roles_claim="realm_access.roles",
                         units_claim="org.units", role_map={"elevhalsa-bba": "bba", "rektor": "auditor"})
    token = SCHOOL.sign({"sub": "3f1c-uuid", "preferred_username": "anna.bba",
                         "realm_access": {"roles": ["elevhalsa-bba", "rektor", "bba", "offline_access"]},
                         "org": {"units": "norrskolan, sodraskolan"}})
    principal = await verifier.verify(token)
    # "bba" itself is not in the role map: with a map, only what it maps counts.
    assert (principal.user, principal.roles, principal.units) == (
        "anna.bba", {Role.BBA, Role.AUDITOR}, {"norrskolan", "sodraskolan"})


async def test_roles_may_be_one_string_separated_by_spaces_or_commas() -> None:
    token = SCHOOL.sign({"sub": "anna", "roles": "bba coordinator,auditor"})
    assert (await _verifier(SCHOOL).verify(token)).roles == {Role.BBA, Role.COORDINATOR, Role.AUDITOR}


async def test_a_client_credentials_token_is_an_integration_with_its_units() -> None:
    principal = await _verifier(SCHOOL).verify(SCHOOL.client_token("journal", units=["norrskolan"]))
    assert (principal.user, principal.roles, principal.units, principal.client) == (
        "journal", {Role.INTEGRATION}, {"norrskolan"}, True)


async def test_a_registered_client_gets_the_units_of_its_registration_not_of_its_token() -> None:
    verifier = _verifier(SCHOOL, clients={"journal": {"units": ["sodraskolan"]}})
    principal = await verifier.verify(SCHOOL.client_token("journal", units=["norrskolan", "vasterskolan"]))
    assert principal.units == {"sodraskolan"} and principal.client


async def test_a_client_may_be_recognised_by_a_marker_claim() -> None:
    # Entra ID-like: an app token says so in idtyp, names its client in azp and has a uuid subject.
    verifier = _verifier(SCHOOL, client_id_claim="azp", client_marker={"idtyp": "app"})
    app = await verifier.verify(SCHOOL.sign({"sub": "9b2e-uuid", "azp": "journal", "idtyp": "app"}))
    assert (app.user, app.roles, app.client) == ("journal", {Role.INTEGRATION}, True)
    person = await verifier.verify(SCHOOL.sign({"sub": "anna", "azp": "journal", "roles": ["bba"]}))
    assert (person.user, person.client) == ("anna", False)


async def test_a_person_signed_in_through_an_app_is_no_client() -> None:
    token = SCHOOL.sign({"sub": "anna", "client_id": "tillsammans-school", "roles": ["integration"]})
    principal = await _verifier(SCHOOL).verify(token)
    assert (principal.user, principal.client) == ("anna", False)


def test_one_issuer_is_one_organisations() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        TokenVerifier({"school": [IssuerConfig(**SCHOOL.config())], "region": [IssuerConfig(**SCHOOL.config())]})


async def test_a_token_whose_algorithm_does_not_fit_its_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    rsa_key = {name: value for name, value in SCHOOL.jwks["keys"][0].items() if name != "alg"}
    verifier = TokenVerifier({"school": [IssuerConfig(issuer=SCHOOL.issuer, audience=SCHOOL.audience,
                                                      jwks={"keys": [rsa_key]})]})
    token = jwt.encode({"iss": SCHOOL.issuer, "aud": SCHOOL.audience, "sub": "anna", "roles": ["bba"],
                        "exp": time.time() + 60}, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                       headers={"kid": SCHOOL.kid})
    assert await _refused(verifier, token) is jwt.InvalidAlgorithmError
    assert (await verifier.verify(SCHOOL.user_token("anna", [Role.BBA]))).user == "anna"
