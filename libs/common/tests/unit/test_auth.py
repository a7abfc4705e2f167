"""Development tokens: verification, and the cache of tokens already verified."""

from __future__ import annotations

import time

import jwt
import pytest

from tillsammans_common import auth
from tillsammans_common.auth import Role, TokenVerifier, mint_token

SECRET = "test-secret"


def _counting(verifier: TokenVerifier) -> list[str]:
    calls: list[str] = []
    real = verifier._verify

    def counted(token: str) -> tuple[auth.Principal, float]:
        calls.append(token)
        return real(token)

    verifier._verify = counted  # type: ignore[method-assign]
    return calls


def test_a_token_is_checked_once_and_again_after_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(dev_secret=SECRET, orgs=["school", "region"])
    calls = _counting(verifier)
    token = mint_token(dev_secret=SECRET, org="school", user="anna", role=Role.BBA, ttl_seconds=60)

    first, second = verifier.verify(token), verifier.verify(token)
    assert first == second and (first.org, first.user, first.role) == ("school", "anna", Role.BBA)
    assert len(calls) == 1

    now = time.time()
    monkeypatch.setattr(auth.time, "time", lambda: now + 61)  # past the token's expiry
    verifier.verify(token)  # not served from the cache: checked again (jwt itself runs on real time)
    assert len(calls) == 2


def test_refused_tokens_are_never_remembered() -> None:
    verifier = TokenVerifier(dev_secret=SECRET, orgs=["school"])
    forged = mint_token(dev_secret="another-secret", org="school", user="anna", role=Role.BBA)
    for _ in range(2):
        with pytest.raises(jwt.InvalidSignatureError):
            verifier.verify(forged)
    expired = mint_token(dev_secret=SECRET, org="school", user="anna", role=Role.BBA, ttl_seconds=-1)
    with pytest.raises(jwt.ExpiredSignatureError):
        verifier.verify(expired)
    unknown_org = mint_token(dev_secret=SECRET, org="police", user="x", role=Role.BBA)
    with pytest.raises(jwt.InvalidIssuerError):
        verifier.verify(unknown_org)


def test_the_cache_is_bounded() -> None:
    verifier = TokenVerifier(dev_secret=SECRET, orgs=["school"], cache_size=2)
    calls = _counting(verifier)
    tokens = [mint_token(dev_secret=SECRET, org="school", user=f"user{n}", role=Role.BBA) for n in range(3)]
    for token in tokens:
        verifier.verify(token)
    verifier.verify(tokens[0])  # the oldest was evicted, so it is checked again
    assert len(calls) == 4
    assert len(verifier._verified) == 2


@pytest.mark.parametrize("user", ["", "   ", "x" * 129])
def test_a_token_without_a_usable_user_is_refused(user: str) -> None:
    verifier = TokenVerifier(dev_secret=SECRET, orgs=["school"])
    with pytest.raises(jwt.InvalidTokenError):
        verifier.verify(mint_token(dev_secret=SECRET, org="school", user=user, role=Role.BBA))
    assert verifier.verify(mint_token(dev_secret=SECRET, org="school", user="bba.x", role=Role.BBA)).user == "bba.x"
