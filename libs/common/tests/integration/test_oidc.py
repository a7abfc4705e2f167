"""Sign-in through HTTP: keys served by a real local HTTP server (discovery, rotation), a service's 401 and 403."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tillsammans_common.auth import (
    KEYS_MAX_AGE_SECONDS,
    UNKNOWN_KEY_REFETCH_SECONDS,
    Principal,
    Role,
    TokenVerifier,
    require,
)
from tillsammans_common.settings import IssuerConfig, ServiceSettings
from tillsammans_common.testing import ManualClock, TestIssuer, issuer_of


class Provider:
    """An OpenID provider's public face on a real port: its discovery document and its JWKS, which a test changes."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.jwks_uri: str | None = None  # what discovery names; default its own /keys
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server interface)
                provider.requests.append(self.path)
                documents = {"/.well-known/openid-configuration": {"issuer": provider.issuer,
                                                                   "jwks_uri": provider.jwks_uri
                                                                   or provider.issuer + "/keys"},
                             "/keys": {"keys": provider.keys}}
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def signer(self, kid: str) -> TestIssuer:
        """A signing key of this provider (not published until the test says so)."""
        return TestIssuer("school", issuer=self.issuer, audience="tillsammans-school", kid=kid)

    def publish(self, *signers: TestIssuer) -> None:
        """Serve exactly these keys from now on."""
        self.keys = [key for signer in signers for key in signer.jwks["keys"]]

    def fetches(self) -> int:
        """How often the JWKS was fetched."""
        return self.requests.count("/keys")


@pytest.fixture
def provider() -> Iterator[Provider]:
    """A provider serving discovery and keys on a free port."""
    yield from _served()


@pytest.fixture
def second_provider() -> Iterator[Provider]:
    """Another provider, of another organisation."""
    yield from _served()


def _served() -> Iterator[Provider]:
    served = Provider()
    served.thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


async def test_keys_are_found_by_discovery_and_fetched_once(provider: Provider) -> None:
    key = provider.signer("k1")
    provider.publish(key)
    verifier = TokenVerifier({"school": [IssuerConfig(issuer=provider.issuer, audience="tillsammans-school")]})
    for user in ("anna", "bo"):
        assert (await verifier.verify(key.user_token(user, [Role.BBA]))).user == user
    assert provider.requests == ["/.well-known/openid-configuration", "/keys"]


async def test_a_rotated_key_is_fetched_when_a_token_names_it_at_most_every_30_seconds(provider: Provider) -> None:
    old, new, other = provider.signer("2026-01"), provider.signer("2026-02"), provider.signer("2026-03")
    provider.publish(old)
    clock = ManualClock()
    verifier = TokenVerifier({"school": [IssuerConfig(issuer=provider.issuer, audience="tillsammans-school",
                                                      jwks_uri=provider.issuer + "/keys")]}, clock=clock)
    await verifier.verify(old.user_token("anna", [Role.BBA]))
    provider.publish(old, new)  # the provider rotates: the new key signs, the old one still verifies

    # Too soon after the last fetch: a token naming a key not seen is refused without asking the provider.
    with pytest.raises(Exception, match="does not publish"):
        await verifier.verify(new.user_token("anna", [Role.BBA]))
    assert provider.fetches() == 1

    clock.now += UNKNOWN_KEY_REFETCH_SECONDS
    assert (await verifier.verify(new.user_token("anna", [Role.BBA]))).user == "anna"
    assert provider.fetches() == 2
    for _ in range(3):  # an attacker's stream of made-up key ids costs no fetch within the 30 s
        with pytest.raises(Exception, match="does not publish"):
            await verifier.verify(other.user_token("anna", [Role.BBA]))
    assert provider.fetches() == 2


async def test_a_key_the_provider_withdrew_stops_working_once_the_keys_are_fetched_again(provider: Provider) -> None:
    old, new = provider.signer("old"), provider.signer("new")
    provider.publish(old, new)
    clock = ManualClock()
    verifier = TokenVerifier({"school": [IssuerConfig(issuer=provider.issuer, audience="tillsammans-school")]},
                             clock=clock)
    await verifier.verify(old.user_token("anna", [Role.BBA]))
    provider.publish(new)
    clock.now += KEYS_MAX_AGE_SECONDS
    with pytest.raises(Exception, match="does not publish"):
        await verifier.verify(old.user_token("bo", [Role.BBA]))
    assert (await verifier.verify(new.user_token("bo", [Role.BBA]))).user == "bo"


async def test_keys_known_stay_in_use_while_the_provider_is_down(provider: Provider) -> None:
    key = provider.signer("k1")
    provider.publish(key)
    clock = ManualClock()
    verifier = TokenVerifier({"school": [IssuerConfig(issuer=provider.issuer, audience="tillsammans-school")]},
                             clock=clock)
    await verifier.verify(key.user_token("anna", [Role.BBA]))
    provider.server.shutdown()
    provider.server.server_close()
    clock.now += KEYS_MAX_AGE_SECONDS
    assert (await verifier.verify(key.user_token("bo", [Role.BBA]))).user == "bo"


def _service(**settings: Any) -> TestClient:
    """A service of the school reduced to one route a BBA may call, with the verifier every service builds."""
    configured = ServiceSettings(org="school", **settings)
    app = FastAPI()
    app.state.settings = configured
    app.state.token_verifier = TokenVerifier.for_settings(configured)

    @app.get("/whoami")
    async def whoami(principal: Principal = require(Role.BBA)) -> dict[str, Any]:
        return {"org": principal.org, "user": principal.user, "units": sorted(principal.units)}

    return TestClient(app)


def _get(client: TestClient, token: str) -> int:
    return int(client.get("/whoami", headers={"Authorization": f"Bearer {token}"}).status_code)


def test_a_service_tells_a_stranger_from_another_member() -> None:
    school, region = issuer_of("school"), issuer_of("region")
    client = _service()  # the test issuers of the federation, from the environment the plugin set
    own = school.user_token("anna", [Role.BBA], units=["norrskolan"])
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {own}"})
    assert answer.json() == {"org": "school", "user": "anna", "units": ["norrskolan"]}
    assert _get(client, region.user_token("anna", [Role.BBA])) == 403  # valid, but another member's
    assert _get(client, school.user_token("anna", [Role.PROFESSIONAL])) == 403  # this member's, wrong role
    assert _get(client, TestIssuer("school", issuer="https://evil.test").user_token("anna", [Role.BBA])) == 401
    assert _get(client, TestIssuer("school").user_token("anna", [Role.BBA])) == 401  # the issuer's name, not its key
    assert _get(client, school.sign({"sub": "anna", "roles": ["bba"], "aud": "tillsammans-region"})) == 401
    assert _get(client, school.user_token("anna", [Role.BBA], ttl_seconds=-300)) == 401
    assert _get(client, "not-a-jwt") == 401
    assert client.get("/whoami").status_code == 401


def test_a_service_that_is_not_a_peer_of_an_organisation_does_not_know_its_tokens() -> None:
    client = _service(peers=["school", "region"])
    assert _get(client, issuer_of("social").user_token("anna", [Role.BBA])) == 401


def test_a_service_reads_its_organisations_claims_its_own_way(provider: Provider) -> None:
    key = provider.signer("k1")
    provider.publish(key)
    issuers = {"school": [{"issuer": provider.issuer, "audience": "tillsammans-school",
                           "user_claim": "preferred_username", "roles_claim": "realm_access.roles",
                           "role_map": {"elevhalsa-bba": "bba"}}]}
    client = _service(oidc_issuers=issuers)
    token = key.sign({"sub": "uuid-1", "preferred_username": "anna.bba", "realm_access": {"roles": ["elevhalsa-bba"]}})
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["user"] == "anna.bba"
    assert _get(client, key.sign({"sub": "anna", "roles": ["bba"]})) == 401  # "bba" is not this provider's name


async def test_discovery_cannot_lend_one_organisations_keys_to_another(provider: Provider,
                                                                       second_provider: Provider) -> None:
    school_key = provider.signer("k1")
    provider.publish(school_key)
    second_provider.jwks_uri = provider.issuer + "/keys"  # the region's discovery names the school's keys
    verifier = TokenVerifier({
        "school": [IssuerConfig(issuer=provider.issuer, audience="tillsammans-school")],
        "region": [IssuerConfig(issuer=second_provider.issuer, audience="tillsammans-region")]})
    await verifier.verify(school_key.user_token("anna", [Role.BBA]))
    forged = TestIssuer("region", issuer=second_provider.issuer, kid="k1")
    forged.private_key = school_key.private_key  # whoever holds the school's key
    with pytest.raises(Exception, match="does not publish|names no key"):
        await verifier.verify(forged.user_token("anna", [Role.ADMIN]))


@pytest.mark.parametrize("named", ["file:///etc/passwd", "http://keys.example.test/jwks", "ftp://127.0.0.1/keys"])
async def test_discovery_naming_a_key_set_off_the_encrypted_web_signs_nobody_in(provider: Provider,
                                                                                named: str) -> None:
    key = provider.signer("k1")
    provider.publish(key)
    provider.jwks_uri = named
    verifier = TokenVerifier({"school": [IssuerConfig(issuer=provider.issuer, audience="tillsammans-school")]})
    with pytest.raises(Exception, match="does not publish"):
        await verifier.verify(key.user_token("anna", [Role.BBA]))
    assert provider.fetches() == 0
