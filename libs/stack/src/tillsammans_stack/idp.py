"""A local OpenID provider for one demo organisation: oidc-provider-mock with signed access tokens and integrations.

The mock (oidc-provider-mock, pinned at 0.3.4) signs in whichever user is chosen on its authorization
form, with the claims set beforehand by ``PUT /users/<sub>``; its ID tokens are RS256 JWTs. Two things
the services need it lacks, and this wrapper adds through public Flask and Authlib hooks:

- access tokens as JWTs (RFC 9068) instead of opaque strings, with the audience of the organisation's
  API and the user's claims (roles, units), signed with the same key its JWKS publishes, so the services
  verify them as they would a production provider's;
- the client credentials grant for integrations: ``PUT /clients/<client_id>`` with
  ``{"secret": ..., "units": [...]}`` registers one, and ``POST /oauth2/token`` with
  ``grant_type=client_credentials`` (HTTP Basic or form credentials) answers a JWT whose subject is the
  client and which carries the units of its registration.

Development only: anyone who reaches it signs in as anyone. Reach it at its issuer URL, which every token names.
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import flask
import jwt
import pydantic
import werkzeug.serving
from werkzeug.debug import DebuggedApplication

with warnings.catch_warnings():
    # The mock 0.3.4 imports parts of Authlib that Authlib now calls deprecated; nothing we can act on.
    warnings.simplefilter("ignore")
    import oidc_provider_mock

TOKEN_TTL_SECONDS = 8 * 3600
_TOKEN_VIEW = "oidc-provider-mock.issue_token"
# Claims a user's stored claims may not override: they say who signed the token, for whom and until when.
_RESERVED = frozenset({"iss", "aud", "sub", "client_id", "iat", "nbf", "exp", "jti", "scope"})


class IntegrationRegistration(pydantic.BaseModel):
    """An integration's registration at the provider: its secret and the units it works for."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    secret: str = pydantic.Field(min_length=8)
    units: list[str] = []


def _signing_key() -> tuple[Any, str]:
    """The mock's private key and its kid, the key its JWKS publishes."""
    # The mock keeps its key in its per-app storage, set on flask.g before each request; no public accessor
    # exists in 0.3.4 (pinned in constraints.txt), so a new version must be checked against this line.
    jwk = flask.g.oidc_provider_mock_storage.jwk
    data = jwk.as_dict(is_private=True)
    return jwt.PyJWK(data).key, str(data["kid"])


def _sign(claims: dict[str, Any], *, issuer: str, audience: str, ttl_seconds: int) -> str:
    key, kid = _signing_key()
    now = int(time.time())
    full = {**claims, "iss": issuer, "aud": audience, "iat": now, "exp": now + ttl_seconds,
            "jti": secrets.token_urlsafe(16)}
    return jwt.encode(full, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})


def create_app(*, issuer: str, audience: str, ttl_seconds: int = TOKEN_TTL_SECONDS) -> flask.Flask:
    """The provider's Flask app: the mock, its access tokens made JWTs, and the client credentials grant."""
    app = flask.Flask(__name__)

    def access_token(client: Any, grant_type: str, user: Any, scope: str) -> str:
        claims = {name: value for name, value in user.claims.items() if name not in _RESERVED}
        return _sign({**claims, "sub": user.sub, "client_id": client.get_client_id(), "scope": scope},
                     issuer=issuer, audience=audience, ttl_seconds=ttl_seconds)

    # Authlib's documented hook: its bearer token generator calls this for every access token it issues.
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = access_token
    oidc_provider_mock.init_app(app, issue_refresh_token=False, access_token_max_age=timedelta(seconds=ttl_seconds))
    # init_app turns on debug mode and werkzeug's interactive debugger, which runs code sent to it: off.
    app.debug = False
    if isinstance(app.wsgi_app, DebuggedApplication):
        app.wsgi_app = app.wsgi_app.app  # type: ignore[method-assign,assignment]  # Flask's documented middleware slot
    app.secret_key = secrets.token_bytes(32)

    integrations: dict[str, IntegrationRegistration] = {}
    issue_token = app.view_functions[_TOKEN_VIEW]

    def token_endpoint() -> Any:
        if flask.request.form.get("grant_type") != "client_credentials":
            return issue_token()
        credentials = flask.request.authorization
        client_id = credentials.username if credentials else flask.request.form.get("client_id")
        secret = credentials.password if credentials else flask.request.form.get("client_secret")
        registration = integrations.get(client_id or "")
        if registration is None or not hmac.compare_digest((secret or "").encode(), registration.secret.encode()):
            return {"error": "invalid_client"}, HTTPStatus.UNAUTHORIZED, {"WWW-Authenticate": "Basic"}
        token = _sign({"sub": client_id, "client_id": client_id, "units": registration.units},
                      issuer=issuer, audience=audience, ttl_seconds=ttl_seconds)
        return ({"access_token": token, "token_type": "Bearer", "expires_in": ttl_seconds}, HTTPStatus.OK,
                {"Cache-Control": "no-store"})

    app.view_functions[_TOKEN_VIEW] = token_endpoint

    def register_integration(client_id: str) -> Any:
        try:
            integrations[client_id] = IntegrationRegistration.model_validate(flask.request.get_json(force=True))
        except pydantic.ValidationError as exc:
            return {"error": "invalid_client_metadata", "error_description": str(exc)}, HTTPStatus.BAD_REQUEST
        return "", HTTPStatus.NO_CONTENT

    app.add_url_rule("/clients/<client_id>", "register_integration", register_integration, methods=["PUT"])
    return app


@contextmanager
def serving(app: flask.Flask, *, port: int, host: str = "127.0.0.1") -> Iterator[werkzeug.serving.BaseWSGIServer]:
    """Serve ``app`` on a background thread (for tests) until the block ends."""
    import threading

    server = werkzeug.serving.make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one organisation's provider in the foreground: ``python -m tillsammans_stack.idp --port P --audience A``."""
    parser = argparse.ArgumentParser(prog="python -m tillsammans_stack.idp", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--audience", required=True, help="the aud of its access tokens, e.g. tillsammans-school")
    parser.add_argument("--ttl", type=int, default=TOKEN_TTL_SECONDS, help="token lifetime in seconds")
    args = parser.parse_args(argv)
    issuer = f"http://{args.host}:{args.port}"
    werkzeug.serving.run_simple(args.host, args.port, create_app(issuer=issuer, audience=args.audience,
                                                                 ttl_seconds=args.ttl), threaded=True)


if __name__ == "__main__":
    main()
