"""Bearer tokens carrying organisation, user and role.

Development tokens are HS256 JWTs signed with a per-organisation key derived from
``TILLSAMMANS_DEV_TOKEN_SECRET``. Every service can verify every federation member's tokens, so a
valid token of another organisation is recognised and refused with 403, not mistaken for garbage.
Production swaps ``TokenVerifier`` for one that checks each organisation's OIDC issuer.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

ISSUER_PREFIX = "tillsammans-dev:"


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


def org_token_key(dev_secret: str, org: str) -> bytes:
    """The development signing key of one organisation."""
    return hmac.new(dev_secret.encode(), f"token:{org}".encode(), hashlib.sha256).digest()


def mint_token(*, dev_secret: str, org: str, user: str, role: Role | str, ttl_seconds: int = 8 * 3600) -> str:
    """Mint a development token for a user of an organisation."""
    now = int(time.time())
    claims = {"iss": ISSUER_PREFIX + org, "sub": user, "org": org, "role": str(Role(role)),
              "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, org_token_key(dev_secret, org), algorithm="HS256")


class TokenVerifier:
    """Verifies development tokens of the federation's organisations."""

    def __init__(self, *, dev_secret: str, orgs: list[str], cache_size: int = 1024) -> None:
        self._keys = {org: org_token_key(dev_secret, org) for org in orgs}
        # A journal system sends the same token with every call until it expires: remember the
        # verified ones (until their expiry) instead of decoding and checking each time.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, token: str) -> Principal:
        """Return the principal, or raise ``jwt.InvalidTokenError``."""
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            self._verified.move_to_end(token)
            return known[0]
        principal, expires = self._verify(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        unverified = jwt.decode(token, options={"verify_signature": False})
        org = unverified.get("org")
        key = self._keys.get(org) if isinstance(org, str) else None
        if key is None or not isinstance(org, str):
            raise jwt.InvalidIssuerError("unknown organisation")
        claims = jwt.decode(token, key, algorithms=["HS256"], issuer=ISSUER_PREFIX + org,
                            options={"require": ["exp", "sub", "org", "role"]})
        user = claims["sub"]
        if not isinstance(user, str) or not user.strip() or len(user) > 128:
            # Every audit record names its user: a token without one is no token.
            raise jwt.InvalidTokenError("the token names no user")
        return Principal(org=claims["org"], user=claims["sub"], role=Role(claims["role"])), float(claims["exp"])


_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str, reason: str) -> AccessRefused:
    return AccessRefused(status.HTTP_401_UNAUTHORIZED, detail, reason=reason)


def require(*roles: Role) -> Any:
    """A dependency: the caller must belong to this organisation and hold one of ``roles``.

    Used as a parameter default, ``principal: Principal = require(Role.BBA)``; typed ``Any`` because
    FastAPI's ``Depends`` marker stands in for the ``Principal`` it resolves to.
    """

    # async (though it never awaits) so FastAPI runs it on the event loop, not in a worker thread.
    async def dependency(request: Request,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        if credentials is None:
            raise _unauthorized("a bearer token is required", "no-token")
        verifier: TokenVerifier = request.app.state.token_verifier
        try:
            principal = verifier.verify(credentials.credentials)
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
