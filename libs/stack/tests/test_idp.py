"""The development OpenID provider (oidc-provider-mock with our additions), served for real, signing in at a service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tillsammans_common.auth import Principal, Role, TokenVerifier, require
from tillsammans_common.settings import ServiceSettings
from tillsammans_common.testing import free_port
from tillsammans_stack.idp import create_app, serving
from tillsammans_stack.signin import REDIRECT_URI, SignInError, client_token, user_token

AUDIENCE = "tillsammans-school"


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    """The school's development provider on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(create_app(issuer=url, audience=AUDIENCE), port=port):
        yield url


@pytest.fixture
def service(issuer: str) -> TestClient:
    """A school service trusting that provider (found by discovery), with a route any of its people may call."""
    settings = ServiceSettings(org="school", dev_mode=True,
                               oidc_issuers={"school": [{"issuer": issuer, "audience": AUDIENCE, "development": True}]})
    app = FastAPI()
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier.for_settings(settings)

    @app.get("/whoami")
    async def whoami(principal: Principal = require()) -> dict[str, Any]:
        return {"user": principal.user, "roles": sorted(principal.roles), "units": sorted(principal.units),
                "client": principal.client}

    return TestClient(app)


def _whoami(service: TestClient, token: str) -> httpx.Response:
    return service.get("/whoami", headers={"Authorization": f"Bearer {token}"})


def test_a_person_signed_in_by_the_code_flow_is_accepted_with_roles_and_units(issuer: str, service: TestClient) -> None:
    token = user_token(issuer, client_id=AUDIENCE, user="anna.bba", roles=["bba", "coordinator"],
                       units=["norrskolan"])
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("RS256", "at+jwt")
    answer = _whoami(service, token)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"user": "anna.bba", "roles": ["bba", "coordinator"], "units": ["norrskolan"],
                             "client": False}


def test_an_integration_takes_a_client_credentials_token_with_the_units_it_was_registered_for(
        issuer: str, service: TestClient) -> None:
    answer = _whoami(service, client_token(issuer, client_id="journal-system", units=["norrskolan", "sodraskolan"]))
    assert answer.json() == {"user": "journal-system", "roles": [Role.INTEGRATION.value],
                             "units": ["norrskolan", "sodraskolan"], "client": True}


def test_a_client_with_the_wrong_secret_gets_no_token(issuer: str) -> None:
    client_token(issuer, client_id="journal-system")
    refused = httpx.post(issuer + "/oauth2/token", data={"grant_type": "client_credentials"},
                         auth=("journal-system", "guessed-secret"), trust_env=False)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_the_id_token_of_the_code_flow_is_no_access_token_for_the_api(issuer: str, service: TestClient) -> None:
    # The ID token is for the app that signed the user in (aud = its client id), not for the API.
    with httpx.Client(trust_env=False) as http:
        http.put(f"{issuer}/users/anna", json={"roles": ["bba"]}).raise_for_status()
        answer = http.post(f"{issuer}/oauth2/authorize", data={"sub": "anna"}, params={
            "response_type": "code", "client_id": "some-app", "scope": "openid", "redirect_uri": REDIRECT_URI})
        code = httpx.URL(answer.headers["location"]).params["code"]
        tokens = http.post(f"{issuer}/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                                           "redirect_uri": REDIRECT_URI, "client_id": "some-app",
                                                           "client_secret": "x"}).json()
    assert _whoami(service, tokens["id_token"]).status_code == 401
    assert _whoami(service, tokens["access_token"]).status_code == 200


def test_a_token_of_another_provider_instance_under_the_same_name_is_refused(issuer: str, service: TestClient) -> None:
    # Same issuer URL and audience, another key: what a restarted provider's tokens look like before a refetch
    # would find its key, and what a forger's look like for ever.
    port = free_port()
    with serving(create_app(issuer=issuer, audience=AUDIENCE), port=port):
        forged = user_token(f"http://127.0.0.1:{port}", client_id=AUDIENCE, user="anna", roles=["admin"])
    assert _whoami(service, user_token(issuer, client_id=AUDIENCE, user="anna", roles=["bba"])).status_code == 200
    assert _whoami(service, forged).status_code == 401


def test_no_provider_no_token() -> None:
    with pytest.raises(SignInError, match="did not answer"):
        user_token(f"http://127.0.0.1:{free_port()}", client_id=AUDIENCE, user="anna", roles=["bba"])
