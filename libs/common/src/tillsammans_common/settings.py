"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ORG_ID = re.compile(r"^[a-z][a-z0-9]{1,30}$")
DEVELOPMENT_PAIR_SEED = b"tillsammans-development-pair-secret"
INBOX_MAX_AGE_SECONDS = 7 * 24 * 3600.0


class ServiceSettings(BaseSettings):
    """Configuration of one service of one organisation.

    A value is read from ``TILLSAMMANS_<SERVICE>_<NAME>`` first, then from the shared
    ``TILLSAMMANS_<NAME>``, so an organisation sets its identity and broker once and each
    service its own database and port.
    """

    service_name: ClassVar[str] = "service"
    model_config = SettingsConfigDict(env_prefix="TILLSAMMANS_SERVICE_", extra="ignore")

    org: str = Field("school", description="This organisation's id (lowercase, also its NATS account).")
    peers: list[str] = Field(
        default_factory=lambda: ["school", "region", "social"],
        description="Organisations in the federation that may receive cross-organisation messages.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".tillsammans/data")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default is a SQLite file under data_dir.")
    auto_migrate: bool = Field(True, description="Run database migrations at start-up.")
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    dev_token_secret: SecretStr = Field(
        SecretStr("tillsammans-development-only"),
        description="Development only: the per-organisation token keys are derived from it.",
    )
    child_key_secret: SecretStr = Field(
        SecretStr("tillsammans-development-child-key"),
        description="This organisation's own key for the pseudonymous child key its services share; never leaves it.",
    )
    pair_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="One secret per other member, shared with that member only: the child key that crosses "
                    "between the two is keyed with it. Unset pairs fall back to a development derivation.",
    )
    relay_sweep_seconds: float = Field(1.0, description="How often the outbox relay re-checks for unsent rows.")
    relay_backoff_initial_seconds: float = Field(
        0.2, gt=0, description="First pause of the outbox relay for a destination whose publish failed (refused or "
                               "unreachable); it doubles on each further failure, with jitter. Other destinations "
                               "go on meanwhile.")
    relay_backoff_max_seconds: float = Field(
        30.0, gt=0, description="Cap of that doubling pause: the longest a failing destination waits before the "
                                "relay tries it again.")
    max_deliveries: int = Field(
        5, ge=1, description="Attempts that fail on the message's own merits (invalid, refused by a rule) before it "
                             "is dead-lettered; failures of the infrastructure never count.")
    redelivery_backoff_seconds: list[float] = Field(
        default_factory=lambda: [0.2, 1.0, 5.0, 15.0],
        description="Delays before the 1st, 2nd, ... retry of a message that failed on its own merits.")
    infrastructure_retry_initial_seconds: float = Field(
        0.5, gt=0, description="First delay before retrying a message whose attempt failed because the database or "
                               "broker could not do its work; it doubles on each such failure of that message.")
    infrastructure_retry_max_seconds: float = Field(
        30.0, gt=0, description="Cap of that doubling delay: the longest a message waits for the infrastructure "
                                "to recover before it is tried again (it is retried for as long as the fault lasts).")
    unavailable_retry_after_seconds: int = Field(
        5, ge=1, description="Retry-After of a 503 answered because the database cannot do the request's work now.")
    inbox_max_age_seconds: float = Field(
        INBOX_MAX_AGE_SECONDS, gt=0,
        description="Backstop: the longest a message from another organisation stays in the INBOX stream. "
                    "A message leaves as soon as every consumer that wants it has acknowledged it (interest "
                    "retention); this bounds how long an unprocessed one (e.g. for a service that is down) is "
                    "kept. The stream is the organisation's, shared by its services: set it once for all of them "
                    "(TILLSAMMANS_INBOX_MAX_AGE_SECONDS), as the last service to start applies its value.",
    )
    dead_letter_max_age_seconds: float = Field(
        30 * 24 * 3600.0, gt=0,
        description="How long the DEADLETTER stream keeps a dead letter for an operator to list, replay or discard. "
                    "The stream is the organisation's: set it once for all of its services.")
    dead_letter_max_bytes: int = Field(
        256 * 1024 * 1024, gt=0,
        description="Size cap of the DEADLETTER stream; beyond it the oldest dead letters go first.")
    parking_timeout_seconds: float = Field(
        24 * 3600.0, ge=0,
        description="How long a message from another organisation that waits for its consent stays parked (and is "
                    "retried when a consent arrives) before it is dead-lettered; 0 dead-letters it at once.")
    parking_sweep_seconds: float = Field(
        60.0, gt=0, description="How often parked messages are retried and checked for their timeout, besides "
                                "at once whenever a consent is granted or withdrawn.")
    log_level: str = "INFO"
    max_request_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted; larger is 413.")

    @field_validator("org")
    @classmethod
    def _org_is_slug(cls, value: str) -> str:
        if not ORG_ID.match(value):
            raise ValueError("org must be 2-31 lowercase letters or digits, starting with a letter")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Service-specific variables win over the shared ``TILLSAMMANS_`` ones."""
        shared = EnvSettingsSource(settings_cls, env_prefix="TILLSAMMANS_")
        return (init_settings, env_settings, shared, dotenv_settings, file_secret_settings)

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``<data_dir>/<org>/<service>.db``."""
        if self.database_url:
            return self.database_url
        path = (self.data_dir / self.org / f"{self.service_name}.db").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    def pair_secret(self, other: str) -> str:
        """The secret this organisation shares with ``other`` alone (a development derivation if unset)."""
        configured = self.pair_secrets.get(other)
        if configured is not None:
            return configured.get_secret_value()
        # Development only: anyone who reads this source can derive it, which is why the launcher
        # generates real pair secrets and production must configure them.
        pair = "|".join(sorted((self.org, other)))
        return hmac.new(DEVELOPMENT_PAIR_SEED, pair.encode(), hashlib.sha256).hexdigest()

    @property
    def source(self) -> str:
        """The CloudEvents source of this service: ``/orgs/<org>/<service>``."""
        return f"/orgs/{self.org}/{self.service_name}"
