"""Tokens from a development OpenID provider (``tillsammans_stack.idp``), obtained the way an application would.

A person: their claims (roles, units) are set at the provider, then they sign in through the
authorization-code flow and the JWT access token is returned. An integration: it is registered with
its units, then takes a token by the client credentials grant. The services accept either token as
they would one of a production provider.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from urllib.parse import parse_qs, quote, urlsplit

import httpx

# Never requested: the provider redirects here with the code, and the code is read from that redirect.
REDIRECT_URI = "http://127.0.0.1/signed-in"


class SignInError(RuntimeError):
    """The provider did not hand out a token."""


def _client() -> httpx.Client:
    # Loopback: no proxies from the environment.
    return httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False)


def _checked(response: httpx.Response, what: str) -> httpx.Response:
    if response.is_error:
        raise SignInError(f"{what}: the provider answered {response.status_code}: {response.text[:300]}")
    return response


def user_token(issuer: str, *, client_id: str, user: str, roles: Iterable[str], units: Iterable[str] = ()) -> str:
    """Sign ``user`` in at the development provider ``issuer`` with ``roles`` and ``units``; their access token."""
    issuer = issuer.rstrip("/")
    state = secrets.token_urlsafe(12)
    try:
        with _client() as http:
            _checked(http.put(f"{issuer}/users/{quote(user, safe='')}",
                              json={"roles": list(roles), "units": list(units)}), "setting the user's claims")
            # The provider's sign-in form, submitted as the user would: choose who signs in.
            answer = _checked(http.post(f"{issuer}/oauth2/authorize", data={"sub": user},
                                        params={"response_type": "code", "client_id": client_id, "scope": "openid",
                                                "redirect_uri": REDIRECT_URI, "state": state}), "signing in")
            query = parse_qs(urlsplit(answer.headers.get("location", "")).query)
            if query.get("state") != [state] or "code" not in query:
                raise SignInError(f"signing in: no authorization code in the provider's answer ({answer.status_code})")
            tokens = _checked(http.post(f"{issuer}/oauth2/token", data={
                "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT_URI,
                "client_id": client_id, "client_secret": "development"}), "exchanging the code")
    except httpx.HTTPError as exc:
        raise SignInError(f"the provider at {issuer} did not answer ({type(exc).__name__}); is the stack up?") from exc
    return str(tokens.json()["access_token"])


def client_token(issuer: str, *, client_id: str, units: Iterable[str] = ()) -> str:
    """Register the integration ``client_id`` with ``units`` at the development provider; its client token."""
    issuer = issuer.rstrip("/")
    secret = secrets.token_urlsafe(24)  # a fresh registration each time: development has no secret store
    try:
        with _client() as http:
            _checked(http.put(f"{issuer}/clients/{quote(client_id, safe='')}",
                              json={"secret": secret, "units": list(units)}), "registering the integration")
            tokens = _checked(http.post(f"{issuer}/oauth2/token", data={"grant_type": "client_credentials"},
                                        auth=(client_id, secret)), "taking a client-credentials token")
    except httpx.HTTPError as exc:
        raise SignInError(f"the provider at {issuer} did not answer ({type(exc).__name__}); is the stack up?") from exc
    return str(tokens.json()["access_token"])
