"""Bearer tokens: OpenID Connect tokens of the federation's identity providers, read as a ``Principal``.

Each organisation names the OpenID providers that sign in its people and integrations
(``oidc_issuers`` in the settings). An issuer belongs to one organisation only, so a token's issuer
says whose it is. Every service trusts every federation member's issuers, so a valid token of
another organisation is recognised and refused with 403, not mistaken for garbage. Keys come from
the provider's JWKS (pinned, configured, or found by OIDC discovery), cached, and fetched again when
a token names a key not seen yet and after a while, so a provider rotates its keys without a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple
from urllib.parse import urlsplit

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tillsammans_common.settings import LOOPBACK_HOSTS, IssuerConfig

if TYPE_CHECKING:
    from tillsammans_common.settings import ServiceSettings

log = logging.getLogger(__name__)

# Asymmetric only: with HS* anyone holding the verification key could sign, and "none" signs nothing.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
KEYS_MAX_AGE_SECONDS = 300.0
"""Keys are fetched again this long after the last fetch, so a key the provider withdrew stops working."""
UNKNOWN_KEY_REFETCH_SECONDS = 30.0
"""A token naming a key not seen yet fetches the keys again, at most this often per issuer (no flood of fetches)."""
FAILED_FETCH_RETRY_SECONDS = 2.0
FETCH_TIMEOUT_SECONDS = 3.0
MAX_USER_LENGTH = 128
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class Role(StrEnum):
    """What a caller does in the process."""

    BBA = "bba"
    PROFESSIONAL = "professional"
    COORDINATOR = "coordinator"
    INTEGRATION = "integration"
    AUDITOR = "auditor"
    ADMIN = "admin"
    REVIEWER = "reviewer"
    """Holds the right to review disclosures about children with protected identity (four eyes)."""


class Principal(BaseModel):
    """The authenticated caller: a person signed in at their organisation's IdP, or an integration client."""

    model_config = ConfigDict(frozen=True)

    org: str
    user: str
    roles: frozenset[Role] = Field(min_length=1)
    units: frozenset[str] = frozenset()
    """The units (school, preschool, BVC...) the caller works at, from the IdP; an integration's scope."""
    client: bool = False
    """A machine client (OAuth client credentials), not a person."""

    @model_validator(mode="before")
    @classmethod
    def _one_role(cls, data: Any) -> Any:
        # Shorthand for the common case of a single role: Principal(org=..., user=..., role=Role.BBA).
        if isinstance(data, dict) and "role" in data and "roles" not in data:
            data = {**data, "roles": frozenset({Role(data.pop("role"))})}
        return data

    @property
    def role(self) -> Role:
        """The caller's first role in declaration order, named where one role is recorded (events, decisions)."""
        return next(role for role in Role if role in self.roles)

    @property
    def role_names(self) -> str:
        """Every role, comma-separated in declaration order (for audit records)."""
        return ",".join(role.value for role in Role if role in self.roles)

    def holds(self, *roles: Role) -> bool:
        """Whether the caller holds any of ``roles``."""
        return not self.roles.isdisjoint(roles)


_ROLE_NAMES = frozenset(role.value for role in Role)


class AccessRefused(HTTPException):
    """A 401 or 403 that the audit trail records: who was refused what, and why (a fixed reason code)."""

    def __init__(self, status_code: int, detail: str, *, reason: str, principal: Principal | None = None,
                 action: str | None = None, case_id: str | None = None) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status_code == status.HTTP_401_UNAUTHORIZED else None
        super().__init__(status_code, detail, headers=headers)
        self.reason = reason
        self.principal = principal
        self.action = action
        self.case_id = case_id


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``realm_access.roles``) in a token's claims, or None."""
    # A claim whose own name holds dots (some providers name claims by URL) is taken whole.
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def claim_names(value: Any) -> list[str]:
    """The names in a roles or units claim: a list of strings, or one string separated by spaces or commas."""
    if value is None:
        return []
    if isinstance(value, str):
        return [name for name in re.split(r"[\s,]+", value) if name]
    if isinstance(value, list | tuple) and all(isinstance(name, str) for name in value):
        return [name for name in value if name]
    raise jwt.InvalidTokenError("a roles or units claim must be a list of strings or one string")


MAX_DOCUMENT_BYTES = 1_048_576
"""A discovery document or key set larger than this is refused (a provider answers a few kB)."""


def _get_json(url: str) -> Any:
    parts = urlsplit(url)
    direct = parts.hostname in LOOPBACK_HOSTS
    # Only the web, and only encrypted beyond this machine: a discovery document that names a file: or
    # plain-http key set must not make a service read local files or trust keys anyone could swap.
    if parts.scheme != "https" and not (parts.scheme == "http" and direct):
        raise ValueError(f"refusing to fetch keys over {parts.scheme or 'no scheme'}: https is required")
    # A proxy from the environment may be needed to reach a provider, never to reach this machine.
    opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if direct else []))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (scheme checked)
    with opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
        body = response.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    return json.loads(body)


async def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON object (a discovery document or a JWK set) with a short timeout, off the event loop.

    The standard library's client, in a worker thread: keys are fetched a few times an hour, and an
    HTTP client library would cost every service its memory for that.
    """
    data = await asyncio.to_thread(_get_json, url)
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return data


class SigningKey(NamedTuple):
    """A provider's public key, and the one algorithm it is for when the provider says so."""

    key: jwt.PyJWK
    algorithm: str | None


def _key_set(jwks: Mapping[str, Any]) -> dict[str | None, SigningKey]:
    """The usable signing keys of a JWK set by ``kid`` (keys for encryption and unknown kinds left out)."""
    keys: dict[str | None, SigningKey] = {}
    for data in jwks.get("keys", []):
        if not isinstance(data, dict) or data.get("use", "sig") != "sig" or data.get("alg", "RS256") not in ALGORITHMS:
            continue
        try:
            keys[data.get("kid")] = SigningKey(jwt.PyJWK(data), data.get("alg"))
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
    return keys


class IssuerKeys:
    """The signing keys of one issuer: pinned, or fetched from its JWKS and fetched again when they may have changed."""

    def __init__(self, config: IssuerConfig, *, org: str = "", key_owners: dict[str, str] | None = None,
                 fetch: Callable[[str], Any] = fetch_json, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.org = org
        # Which organisation each key set signs for, shared by the issuers of one verifier: the settings
        # check the configured ones, this the ones discovery finds.
        self._key_owners = key_owners if key_owners is not None else {}
        self.jwks_uri = config.jwks_uri
        self._fetch = fetch
        self._clock = clock
        self._pinned = config.jwks is not None
        self._keys = _key_set(config.jwks) if config.jwks is not None else {}
        self._fetched_at = -math.inf
        self._next_attempt = -math.inf
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    async def key(self, kid: str | None) -> SigningKey:
        """The key that signed a token naming ``kid``; raises ``jwt.InvalidTokenError`` when there is none."""
        if not self._pinned and self._due(kid):
            async with self._guard():
                if self._due(kid):  # another request may have fetched them while this one waited
                    await self._refresh()
        return self._find(kid)

    def _due(self, kid: str | None) -> bool:
        now = self._clock()
        stale = now - self._fetched_at >= KEYS_MAX_AGE_SECONDS
        unknown = kid not in self._keys if kid is not None else not self._keys
        return (stale or unknown) and now >= self._next_attempt

    def _guard(self) -> asyncio.Lock:
        # A lock belongs to one event loop; tests run an app in more than one.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _refresh(self) -> None:
        issuer = self.config.issuer
        try:
            if self.jwks_uri is None:
                discovered = await self._fetch(issuer.rstrip("/") + "/.well-known/openid-configuration")
                if discovered.get("issuer") != issuer or not isinstance(discovered.get("jwks_uri"), str):
                    raise ValueError("the discovery document names another issuer or no jwks_uri")
                uri = str(discovered["jwks_uri"])
                if self._key_owners.setdefault(uri.rstrip("/"), self.org) != self.org:
                    raise ValueError("its keys are another organisation's")
                self.jwks_uri = uri
            keys = _key_set(await self._fetch(self.jwks_uri))
        except (OSError, ValueError) as exc:  # unreachable, an HTTP error status, a timeout, not JSON
            # The keys known so far stay in use: a provider that is briefly down signs nobody out.
            self._next_attempt = self._clock() + FAILED_FETCH_RETRY_SECONDS
            log.warning("could not fetch the signing keys of an identity provider",
                        extra={"issuer": issuer, "error_type": type(exc).__name__, "reason": str(exc)[:200]})
            return
        now = self._clock()
        self._keys, self._fetched_at, self._next_attempt = keys, now, now + UNKNOWN_KEY_REFETCH_SECONDS

    def _find(self, kid: str | None) -> SigningKey:
        if kid is None:
            # A token may leave out kid only where there is no choice to make.
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise jwt.InvalidTokenError("the token names no key and the issuer has several")
        key = self._keys.get(kid)
        if key is None:
            raise jwt.InvalidTokenError("the token is signed with a key its issuer does not publish")
        return key


class TokenVerifier:
    """Verifies the OpenID Connect tokens of the federation's organisations and reads them as a ``Principal``."""

    def __init__(self, issuers: Mapping[str, Sequence[IssuerConfig]], *, cache_size: int = 1024,
                 fetch: Callable[[str], Any] = fetch_json, clock: Callable[[], float] = time.monotonic) -> None:
        self._issuers: dict[str, tuple[str, IssuerKeys]] = {}
        key_owners = {config.jwks_uri.rstrip("/"): org for org, configs in issuers.items() for config in configs
                      if config.jwks_uri is not None}
        for org, configs in issuers.items():
            for config in configs:
                if config.issuer in self._issuers:
                    raise ValueError(f"issuer {config.issuer} is listed twice; it may sign in one organisation only")
                self._issuers[config.issuer] = (org, IssuerKeys(config, org=org, key_owners=key_owners, fetch=fetch,
                                                                clock=clock))
        # A journal system sends the same token with every call until it expires: remember the
        # verified ones (until their expiry) instead of checking the signature each time.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def for_settings(cls, settings: ServiceSettings) -> TokenVerifier:
        """The verifier of a service: it trusts the issuers of its own organisation and of its peers."""
        members = {settings.org, *settings.peers}
        return cls({org: issuers for org, issuers in settings.oidc_issuers.items() if org in members})

    async def verify(self, token: str) -> Principal:
        """Return the principal, or raise ``jwt.InvalidTokenError`` (or ``ValueError``)."""
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            self._verified.move_to_end(token)
            return known[0]
        try:
            principal, expires = await self._verify(token)
        except jwt.PyJWTError as exc:
            if isinstance(exc, jwt.InvalidTokenError):
                raise
            # A key of the wrong type for the token's algorithm, and the like: still a token refused, not a fault.
            raise jwt.InvalidTokenError(type(exc).__name__) from exc
        self._verified[token] = (principal, expires)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise jwt.InvalidAlgorithmError("only asymmetric signatures are accepted")
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        found = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if found is None:
            raise jwt.InvalidIssuerError("the token's issuer is not trusted by the federation")
        org, keys = found
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise jwt.InvalidTokenError("kid must be a string")
        signing = await keys.key(kid)
        if (signing.algorithm is not None and signing.algorithm != algorithm) \
                or signing.key.key_type != _KEY_TYPES[algorithm[:2]]:
            raise jwt.InvalidAlgorithmError("the token's algorithm is not its key's")
        config = keys.config
        claims = jwt.decode(token, signing.key.key, algorithms=[algorithm], audience=config.audience,
                            issuer=config.issuer, leeway=config.leeway_seconds,
                            options={"require": ["exp", "iss", "aud"]})
        return principal_from_claims(org, config, claims), float(claims["exp"])


def principal_from_claims(org: str, config: IssuerConfig, claims: Mapping[str, Any]) -> Principal:
    """Read verified claims as a person (roles and units from the token) or an integration (client credentials)."""
    user = claim(claims, config.user_claim)
    client_id = claim(claims, config.client_id_claim)
    if config.client_marker is not None:
        client = all(claim(claims, name) == value for name, value in config.client_marker.items())
    else:
        # RFC 9068: a token no person took part in names its client as subject, or no subject at all.
        client = isinstance(client_id, str) and (user is None or user == client_id)
    if client:
        if not isinstance(client_id, str):
            raise jwt.InvalidTokenError("a client's token names no client")
        registered = config.clients.get(client_id)
        units = (registered.units if registered is not None
                 else frozenset(claim_names(claim(claims, config.units_claim))))
        user, roles = client_id, frozenset({Role.INTEGRATION})
    else:
        values = claim_names(claim(claims, config.roles_claim))
        mapped = [config.role_map.get(value) for value in values] if config.role_map else values
        roles = frozenset(Role(name) for name in mapped if name in _ROLE_NAMES)
        units = frozenset(claim_names(claim(claims, config.units_claim)))
    if not isinstance(user, str) or not user.strip() or len(user) > MAX_USER_LENGTH:
        # Every audit record names its user: a token without one is no token.
        raise jwt.InvalidTokenError("the token names no user")
    if not roles:
        raise jwt.InvalidTokenError("the token carries no Tillsammans role")
    return Principal(org=org, user=user, roles=roles, units=units, client=client)


_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str, reason: str) -> AccessRefused:
    return AccessRefused(status.HTTP_401_UNAUTHORIZED, detail, reason=reason)


def require(*roles: Role) -> Any:
    """A dependency: the caller must belong to this organisation and hold one of ``roles``.

    Used as a parameter default, ``principal: Principal = require(Role.BBA)``; typed ``Any`` because
    FastAPI's ``Depends`` marker stands in for the ``Principal`` it resolves to.
    """

    # On the event loop: verification awaits only a rare fetch of keys, and a cached token costs a lookup.
    async def dependency(request: Request,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        if credentials is None:
            raise _unauthorized("a bearer token is required", "no-token")
        verifier: TokenVerifier = request.app.state.token_verifier
        try:
            principal = await verifier.verify(credentials.credentials)
        except (jwt.InvalidTokenError, ValueError):
            raise _unauthorized("the bearer token is invalid or expired", "invalid-token") from None
        if principal.org != request.app.state.settings.org:
            raise AccessRefused(status.HTTP_403_FORBIDDEN, "the token belongs to another organisation",
                                reason="other-organisation", principal=principal)
        if roles and not principal.holds(*roles):
            raise AccessRefused(status.HTTP_403_FORBIDDEN,
                                f"role '{principal.role_names}' may not do this; needs one of: "
                                + ", ".join(r.value for r in roles), reason="role", principal=principal)
        return principal

    return Depends(dependency)
