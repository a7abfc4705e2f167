"""How a consumer's handler says a message is not applied: not yet (Retry) or never (Reject).

A module of its own so that the pure consent rules (consent_replica) can refuse without importing
the consumer machinery that imports them.
"""

from __future__ import annotations


class Refusal(Exception):
    """A message is not applied; ``code`` is a short, fixed reason for metrics and logs (never data)."""

    default_code = "refused"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code


class Retry(Refusal):
    """The message cannot be applied yet (e.g. its consent has not arrived); try again later."""

    default_code = "not_yet_applicable"


class Reject(Refusal):
    """The message can never be applied; it goes to the dead letters at once."""

    default_code = "rejected"
