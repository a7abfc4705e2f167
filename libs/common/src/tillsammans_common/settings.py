"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ORG_ID = re.compile(r"^[a-z][a-z0-9]{1,30}$")
DEVELOPMENT_PAIR_SEED = b"tillsammans-development-pair-secret"
DEVELOPMENT_CHILD_KEY_SECRET = "tillsammans-development-child-key"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
DAY_SECONDS = 24 * 3600.0
INBOX_MAX_AGE_SECONDS = 7 * DAY_SECONDS
EVENTS_MAX_AGE_SECONDS = 30 * DAY_SECONDS
EVENTS_MAX_BYTES = 1024**3
# JetStream drops a second publish with the same Nats-Msg-Id (the event id) within this window: it covers
# a relay that published and crashed before marking its row, and restarts within the window.
DUPLICATE_WINDOW_SECONDS = 120.0
PROCESSED_MESSAGE_RETENTION_SECONDS = 35 * DAY_SECONDS
IDEMPOTENCY_RETENTION_SECONDS = 7 * DAY_SECONDS
OUTBOX_PUBLISHED_RETENTION_SECONDS = 7 * DAY_SECONDS
AUDIT_MINIMUM_RETENTION_DAYS = 1827  # five years and the leap days; the audit trigger's floor too


@dataclass(frozen=True)
class StreamLimits:
    """How long and how much this organisation's streams keep, and on how many servers."""

    events_max_age_seconds: float = EVENTS_MAX_AGE_SECONDS
    events_max_bytes: int = EVENTS_MAX_BYTES
    inbox_max_age_seconds: float = INBOX_MAX_AGE_SECONDS
    duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS
    replicas: int = 1


class OrgKind(StrEnum):
    """What a member of the federation is (DOMAIN.md: the three principals around a child)."""

    EDUCATION = "education"
    """The municipality's preschools and schools, with their student health (elevhälsa)."""
    HEALTH_CARE = "health_care"
    """The region's health care: BVC, primary care, BUP, habilitation."""
    SOCIAL_SERVICES = "social_services"
    """The municipality's social services (socialtjänst): where an orosanmälan goes."""


class FederationMember(BaseModel):
    """One organisation of the federation: its kind and the municipalities whose children it serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: OrgKind
    name: str = Field(min_length=1, max_length=200)
    municipalities: frozenset[str] = Field(
        frozenset(), description="SCB codes (kommunkod, four digits) of the municipalities it serves.")
    counties: frozenset[str] = Field(
        frozenset(), description="SCB county codes (länskod, two digits): a region serves every municipality in them.")

    @field_validator("municipalities")
    @classmethod
    def _municipality_codes(cls, codes: frozenset[str]) -> frozenset[str]:
        bad = sorted(code for code in codes if not re.fullmatch(r"[0-9]{4}", code))
        if bad:
            raise ValueError(f"not four-digit municipality codes: {', '.join(bad)}")
        return codes

    @field_validator("counties")
    @classmethod
    def _county_codes(cls, codes: frozenset[str]) -> frozenset[str]:
        bad = sorted(code for code in codes if not re.fullmatch(r"[0-9]{2}", code))
        if bad:
            raise ValueError(f"not two-digit county codes: {', '.join(bad)}")
        return codes

    def serves(self, municipality_code: str) -> bool:
        """Whether this member serves the children of the municipality (by its code or its county's)."""
        return municipality_code in self.municipalities or municipality_code[:2] in self.counties


def _development_federation() -> dict[str, FederationMember]:
    # The three members `make up` runs: Eskilstuna's schools and social services, and Region Sörmland.
    return {
        "school": FederationMember(kind=OrgKind.EDUCATION, name="Eskilstuna kommun, förskola och skola",
                                   municipalities=frozenset({"0484"})),
        "region": FederationMember(kind=OrgKind.HEALTH_CARE, name="Region Sörmland", counties=frozenset({"04"})),
        "social": FederationMember(kind=OrgKind.SOCIAL_SERVICES, name="Eskilstuna kommun, socialtjänsten",
                                   municipalities=frozenset({"0484"})),
    }


class IntegrationClient(BaseModel):
    """An integration (a journal system) known to an issuer by its OAuth client id: the units it works for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    units: frozenset[str] = frozenset()


class IssuerConfig(BaseModel):
    """One OpenID provider an organisation trusts to sign in its people and integrations, and how to read its tokens.

    Claim names may be dotted paths into nested objects (``realm_access.roles``). A claim holding
    roles or units may be a list or one string separated by spaces or commas.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(min_length=1, description="The exact ``iss`` of the provider's tokens.")
    audience: str = Field(min_length=1, description="The ``aud`` a token must name: this federation member's API.")
    jwks_uri: str | None = Field(None, description="Where its signing keys are; default: found by OIDC discovery.")
    jwks: dict[str, Any] | None = Field(None, description="Pinned signing keys (a JWK set); then nothing is fetched.")
    leeway_seconds: float = Field(60.0, ge=0, le=600, description="Clock skew allowed on exp, nbf and iat.")
    user_claim: str = Field("sub", min_length=1, description="The claim naming the person, e.g. preferred_username.")
    roles_claim: str = Field("roles", min_length=1, description="The claim holding the caller's roles.")
    units_claim: str = Field("units", min_length=1, description="The claim holding the caller's units.")
    role_map: dict[str, str] = Field(
        default_factory=dict,
        description="The provider's role values to Tillsammans roles; empty: the values are Tillsammans role names. "
                    "Values mapped to nothing are ignored.")
    client_id_claim: str = Field("client_id", min_length=1,
                                 description="The claim naming the OAuth client (client_id, azp, appid).")
    client_marker: dict[str, str] | None = Field(
        None, description="Claim values that mark a client-credentials token (e.g. {\"idtyp\": \"app\"}); default "
                          "(RFC 9068): a token whose user claim is absent or equals its client id.")
    clients: dict[str, IntegrationClient] = Field(
        default_factory=dict,
        description="Integrations by client id, with their units; a client listed here gets these units "
                    "instead of the token's units claim.")
    development: bool = Field(False, description="A local development provider (refused outside dev mode).")

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("https", "http"):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("role_map")
    @classmethod
    def _tillsammans_roles(cls, value: dict[str, str]) -> dict[str, str]:
        from tillsammans_common.auth import Role  # auth reads this module: imported when first validated

        unknown = sorted(set(value.values()) - {role.value for role in Role})
        if unknown:
            raise ValueError(f"role_map maps to {', '.join(unknown)}, which are not roles: "
                             + ", ".join(role.value for role in Role))
        return value

    @property
    def insecure_transport(self) -> bool:
        """Whether its issuer or keys are reached over plain http beyond this machine."""
        return any(url is not None and urlsplit(url).scheme == "http" and urlsplit(url).hostname not in LOOPBACK_HOSTS
                   for url in (self.issuer, self.jwks_uri))


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
    federation: dict[str, FederationMember] = Field(
        default_factory=_development_federation,
        description="Every member of the federation (this organisation too) with its kind and the municipalities "
                    "it serves: suggestions and the orosanmälan are resolved to real organisations from it.")
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".tillsammans/data")
    wheels_dir: Path | None = Field(
        None, description="A folder of this organisation's own wheels and correspondences (*.json, decision 21), "
                          "installed beside the packaged ones; a malformed file stops start-up.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default is a SQLite file under data_dir.")
    auto_migrate: bool = Field(True, description="Run database migrations at start-up.")
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    dev_mode: bool = Field(
        False, description="Local development: allows the development secrets and development identity providers, "
                           "which a service refuses to start with otherwise.")
    oidc_issuers: dict[str, list[IssuerConfig]] = Field(
        default_factory=dict,
        description="The federation's trust list: by organisation, the OpenID providers whose tokens sign in its "
                    "people and integrations. An issuer (and a JWKS URI) belongs to one organisation only.")
    child_key_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_CHILD_KEY_SECRET),
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
    events_max_age_seconds: float = Field(
        EVENTS_MAX_AGE_SECONDS, gt=0,
        description="The longest the EVENTS stream (this organisation's own events) keeps a message; older ones "
                    "are dropped whether consumed or not. Like the INBOX settings, set it once for the organisation.")
    events_max_bytes: int = Field(
        EVENTS_MAX_BYTES, gt=0,
        description="The most the EVENTS stream keeps, in bytes; beyond it the oldest messages are dropped, so a "
                    "stream can never fill the broker's disk.")
    duplicate_window_seconds: float = Field(
        DUPLICATE_WINDOW_SECONDS, gt=0,
        description="Within this window JetStream drops a second publish of the same event id (a relay that "
                    "crashed between publishing and marking its row); later repeats are dropped by the "
                    "consumers' processed ids.")
    stream_replicas: int = Field(
        1, ge=1, le=5,
        description="Servers that hold each stream: 1 on a single broker, 3 in a JetStream cluster, so a stream "
                    "survives the loss of one server and its disk.")
    processed_message_retention_seconds: float = Field(
        PROCESSED_MESSAGE_RETENTION_SECONDS, gt=0,
        description="How long a consumer remembers an event id it applied. Must be longer than any stream keeps "
                    "a message (EVENTS and INBOX maximum age): a message can be redelivered at most that long "
                    "after it was published, and one redelivered after its id was forgotten would apply twice.")
    idempotency_retention_seconds: float = Field(
        IDEMPOTENCY_RETENTION_SECONDS, ge=3600,
        description="How long a POST's Idempotency-Key and first response are kept: the longest a client may "
                    "repeat the request and get the first answer back.")
    outbox_published_retention_seconds: float = Field(
        OUTBOX_PUBLISHED_RETENTION_SECONDS, gt=0,
        description="How long a published outbox row is kept after it was sent (for inspection); rows not yet "
                    "sent, and rows withheld by the consent service, are never pruned.")
    audit_retention_days: int = Field(
        3653, description="How long audit records are kept (default ten years) before the pruner deletes them. At "
                          "least 1827 days (five years): patient-data rules ask that an access to a child's data can "
                          "be reviewed for years, and the database refuses to delete younger records anyway.")

    @field_validator("audit_retention_days")
    @classmethod
    def _audit_kept_five_years(cls, value: int) -> int:
        if value < AUDIT_MINIMUM_RETENTION_DAYS:
            raise ValueError(f"audit_retention_days must be at least {AUDIT_MINIMUM_RETENTION_DAYS} (five years): "
                             "who accessed a child's data must stay reviewable that long (decision 18)")
        return value

    prune_interval_seconds: float = Field(
        300.0, gt=0, description="How often a service prunes processed ids, idempotency records and published "
                                 "outbox rows past their retention.")
    prune_batch_size: int = Field(
        500, ge=1, description="Rows deleted per statement when pruning: each batch is a short transaction, and "
                               "the service serves other work between batches.")
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL",
        description="SQLite's synchronous mode (WAL). NORMAL: a commit survives a crash of the process, not "
                    "necessarily of the OS or the power. FULL: the write-ahead log is synced to disk at every "
                    "commit, so a commit also survives those (docs/decisions/0015-durability.md).")
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

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _synchronous_upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _processed_ids_outlive_redelivery(self) -> Self:
        # The invariant that makes pruning safe: no stream still holds (and so can redeliver) a message
        # whose processed id has been forgotten. Infrastructure failures are retried for as long as they
        # last (decision 13), so the streams' maximum age is the only bound on a redelivery.
        longest = max(self.inbox_max_age_seconds, self.events_max_age_seconds)
        if self.processed_message_retention_seconds <= longest:
            raise ValueError(
                f"processed_message_retention_seconds ({self.processed_message_retention_seconds:g}) must be "
                f"longer than the longest a stream keeps a message ({longest:g} s, the larger of "
                "inbox_max_age_seconds and events_max_age_seconds), or a redelivery after pruning would apply twice")
        return self

    @model_validator(mode="after")
    def _federation_of_organisations(self) -> Self:
        bad = sorted(org for org in self.federation if not ORG_ID.match(org))
        if bad:
            raise ValueError(f"federation: {', '.join(map(repr, bad))} are not organisation ids")
        return self

    @model_validator(mode="after")
    def _one_issuer_one_organisation(self) -> Self:
        # The token's organisation is the one whose list holds its issuer: an issuer or a key set
        # shared by two organisations would let one of them sign in as the other.
        owners: dict[str, str] = {}
        for org, issuers in self.oidc_issuers.items():
            if not ORG_ID.match(org):
                raise ValueError(f"oidc_issuers: {org!r} is not an organisation id")
            for config in issuers:
                for kind, url in (("issuer", config.issuer), ("jwks_uri", config.jwks_uri)):
                    if url is None:
                        continue
                    key = f"{kind} {url.rstrip('/')}"
                    if key in owners:
                        raise ValueError(f"oidc_issuers: {kind} {url} is listed for {owners[key]} and {org}; an "
                                         "issuer and its keys may sign in one organisation only")
                    owners[key] = org
        return self

    @model_validator(mode="after")
    def _development_secrets_only_in_dev_mode(self) -> Self:
        if self.dev_mode:
            return self
        found = []
        if self.child_key_secret.get_secret_value() == DEVELOPMENT_CHILD_KEY_SECRET:
            found.append("the development child_key_secret (set TILLSAMMANS_CHILD_KEY_SECRET)")
        unpaired = sorted(peer for peer in set(self.peers) - {self.org} if peer not in self.pair_secrets)
        if unpaired:
            found.append("development pair secrets for " + ", ".join(unpaired) + " (set TILLSAMMANS_PAIR_SECRETS)")
        for org, issuers in sorted(self.oidc_issuers.items()):
            for config in issuers:
                if config.development:
                    found.append(f"the development identity provider {config.issuer} of {org}")
                elif config.insecure_transport:
                    found.append(f"the identity provider {config.issuer} of {org} over plain http")
        if found:
            raise ValueError("development settings outside development mode: " + "; ".join(found)
                             + ". Configure real ones, or set TILLSAMMANS_DEV_MODE=true on a developer's machine.")
        return self

    @property
    def stream_limits(self) -> StreamLimits:
        """The limits of this organisation's streams, as configured."""
        return StreamLimits(events_max_age_seconds=self.events_max_age_seconds, events_max_bytes=self.events_max_bytes,
                            inbox_max_age_seconds=self.inbox_max_age_seconds,
                            duplicate_window_seconds=self.duplicate_window_seconds, replicas=self.stream_replicas)

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

    def members_serving(self, kind: OrgKind, municipality_code: str | None) -> list[str]:
        """The members of ``kind`` serving the municipality (all of that kind when it is unknown), sorted."""
        return sorted(org for org, member in self.federation.items()
                      if member.kind is kind and (municipality_code is None or member.serves(municipality_code)))

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
