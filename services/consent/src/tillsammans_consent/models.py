"""Consent's tables and API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime, Index, Integer, String
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper
from sqlmodel import Field, SQLModel

from tillsammans_common.db import utcnow
from tillsammans_common.models import ConsentGrant
from tillsammans_common.personnummer import Personnummer
from tillsammans_common.settings import ORG_ID
from tillsammans_common.timestamps import UtcDatetime, UtcInput


class Custody(StrEnum):
    """Who has custody (vårdnad) of the child, which decides whose consent is needed."""

    JOINT = "joint"
    SOLE = "sole"
    OTHER = "other"


class GrantorRole(StrEnum):
    """In which capacity a person gave consent."""

    GUARDIAN = "guardian"
    CHILD = "child"


class ConsentCategory(StrEnum):
    """A named category of information a consent lets this organisation disclose."""

    IDENTITY = "identity"
    CONCERN = "concern"
    MAPPING_SUMMARY = "mapping_summary"
    HEALTH = "health"
    SOCIAL_SERVICES = "social_services"


class ConsentPurpose(StrEnum):
    """What the disclosure is for: a samverkansmöte, a SIP (samordnad individuell plan) or a follow-up (uppföljning)."""

    COORDINATION_MEETING = "coordination_meeting"
    SIP = "sip"
    FOLLOW_UP = "follow_up"


class LegalBasis(StrEnum):
    """The GDPR Art. 6(1) basis of the processing; separate from the secrecy consent, which lifts secrecy only."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


class ConsentStatus(StrEnum):
    """Whether a consent still stands."""

    ACTIVE = "active"
    WITHDRAWN = "withdrawn"


class DecisionOutcome(StrEnum):
    """What the disclosure gate answered."""

    PERMIT = "permit"
    DENY = "deny"


class HistoryAction(StrEnum):
    """What happened to a consent."""

    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    AMENDED = "amended"


class Grantor(BaseModel):
    """A person who gave consent: a guardian (vårdnadshavare) or the child."""

    model_config = ConfigDict(extra="forbid")
    role: GrantorRole
    name: str = PydanticField(min_length=1, max_length=200)
    given_at: UtcInput = PydanticField(description="When this person gave consent.")


class ChildView(BaseModel):
    """The child's own view, heard by age and maturity (barnets åsikt)."""

    model_config = ConfigDict(extra="forbid")
    heard: bool = PydanticField(description="Whether the child was asked.")
    agrees: bool | None = PydanticField(None, description="The child's answer, when heard.")
    note: str | None = PydanticField(None, max_length=2000, description="Why the child was not heard, or context.")


class LegalBasisIn(BaseModel):
    """The GDPR legal basis of the processing (Art. 6), with a note, e.g. the law that gives the task."""

    model_config = ConfigDict(extra="forbid")
    basis: LegalBasis
    note: str | None = PydanticField(None, max_length=500, description="E.g. 'SoL 2 kap. 7 §' or 'skollagen'.")


class Consent(SQLModel, table=True):
    """The authoritative record of a consent this organisation may disclose under; the identity stays here."""

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(index=True, max_length=64)
    child_personnummer: str = Field(index=True, max_length=12)
    child_key: str = Field(index=True, max_length=64)
    custody: Custody
    grantors: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    child_view: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    disclosing_org: str = Field(max_length=32)
    receiving_orgs: list[str] = Field(sa_column=Column(JSON, nullable=False))
    categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    purpose: ConsentPurpose
    valid_from: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    valid_until: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: ConsentStatus = ConsentStatus.ACTIVE
    version: int = Field(default=1, description="Goes up with every change; decisions name the version they read.")
    withdrawn_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    withdrawn_by: str | None = Field(default=None, max_length=200)
    recorded_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    legal_basis: str = Field(default=LegalBasis.PUBLIC_TASK.value,
                             sa_column=Column(String(32), nullable=False, server_default=LegalBasis.PUBLIC_TASK.value))
    legal_basis_note: str | None = Field(default=None, max_length=500)
    revision: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"),
                          description="1 for a consent as first given, n+1 for the amendment of revision n.")
    amends: str | None = Field(default=None, max_length=64, index=True,
                               description="The consent (revision) this one replaced.")
    amended_by: str | None = Field(default=None, max_length=64, description="The consent that replaced this one.")


class ConsentHistory(SQLModel, table=True):
    """One step in a consent's life; append-only, so the record of who consented survives withdrawal."""

    __tablename__ = "consent_history"

    id: int | None = Field(default=None, primary_key=True)
    consent_id: str = Field(foreign_key="consent.id", index=True, max_length=64)
    action: HistoryAction
    by: str = Field(max_length=200, description="Who granted (grantor roles) or withdrew (e.g. guardian).")
    recorded_by: str = Field(max_length=128, description="The user who entered it.")
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class DisclosureDecision(SQLModel, table=True):
    """One answer of the disclosure gate (permit or deny), kept so every disclosure rests on a named consent.

    Append-only but for the settlement of a permit (what the relay did with it). Holds no identity:
    the child is the consent's case.
    """

    __tablename__ = "disclosure_decision"
    __table_args__ = (Index("ix_decision_open_leases", "consent_id", "settled_at"),)

    id: str = Field(primary_key=True, max_length=64)
    decided_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    phase: str = Field(max_length=16, description="queue: the user asked; send: the message was about to leave.")
    event_id: str = Field(index=True, max_length=64)
    event_type: str = Field(max_length=128)
    consent_id: str | None = Field(default=None, max_length=64)
    consent_version: int | None = None
    case_id: str | None = Field(default=None, max_length=64, index=True)
    purpose: str = Field(max_length=64)
    categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    receiving_org: str = Field(max_length=32)
    requested_by: str = Field(max_length=128)
    requested_role: str = Field(max_length=32)
    trace_id: str | None = Field(default=None, max_length=32)
    outcome: DecisionOutcome
    reason: str = Field(max_length=255)
    lease_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    settled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    settlement: str | None = Field(default=None, max_length=16)


class AppendOnlyError(RuntimeError):
    """Someone tried to change or remove a consent history row."""


@sa_event.listens_for(ConsentHistory, "before_update")
@sa_event.listens_for(ConsentHistory, "before_delete")
def _history_is_append_only(_mapper: Mapper[Any], _connection: Connection, _target: ConsentHistory) -> None:
    # Public records are archived, not rewritten: the trail of a consent must outlive any mistake.
    raise AppendOnlyError("consent history is append-only")


class ChildIn(BaseModel):
    """The child a consent or a decision is about."""

    model_config = ConfigDict(extra="forbid")
    personnummer: Personnummer


OrgId = Annotated[str, StringConstraints(pattern=ORG_ID.pattern)]
"""An organisation id of the federation (also its NATS account)."""

CASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


class ConsentCreate(BaseModel):
    """Record a consent to disclose named categories to named organisations for a purpose and period."""

    model_config = ConfigDict(extra="forbid")
    case_id: str = PydanticField(min_length=1, max_length=64, pattern=CASE_ID_PATTERN,
                                 description="The opaque case id (from intake); never an identity number.")
    child: ChildIn
    custody: Custody
    grantors: list[Grantor] = PydanticField(min_length=1)
    child_view: ChildView | None = PydanticField(
        None, description="Required for a child under the mature age: heard, or not heard with a note why.")
    receiving_orgs: list[OrgId] = PydanticField(min_length=1, description="Organisations this one may disclose to.")
    categories: list[ConsentCategory] = PydanticField(min_length=1)
    purpose: ConsentPurpose
    valid_from: UtcInput
    valid_until: UtcInput
    legal_basis: LegalBasisIn | None = PydanticField(
        None, description="The GDPR basis of the processing; default: the organisation's configured basis.")


class ConsentAmend(BaseModel):
    """Amend a consent: its new terms, narrower or wider, and who agreed to them; the child, case and purpose stay.

    The amendment is a new revision that replaces the old one (which is withdrawn in the same transaction).
    """

    model_config = ConfigDict(extra="forbid")
    custody: Custody | None = PydanticField(None, description="Default: as before.")
    grantors: list[Grantor] = PydanticField(min_length=1, description="Who agreed to the amended terms.")
    child_view: ChildView | None = None
    receiving_orgs: list[OrgId] = PydanticField(min_length=1)
    categories: list[ConsentCategory] = PydanticField(min_length=1)
    valid_from: UtcInput
    valid_until: UtcInput
    legal_basis: LegalBasisIn | None = PydanticField(None, description="Default: as before.")


class ConsentWithdraw(BaseModel):
    """Withdraw a consent (possible at any time)."""

    model_config = ConfigDict(extra="forbid")
    withdrawn_by: str = PydanticField(min_length=1, max_length=200, description="Who withdrew it, e.g. guardian.")


class HistoryEntry(BaseModel):
    """A step in a consent's history."""

    action: HistoryAction
    by: str
    recorded_by: str
    at: UtcDatetime


class ConsentPublic(BaseModel):
    """A consent without the child's identity or the grantors' names (what commands return)."""

    id: str
    case_id: str
    child_key: str
    custody: Custody
    grantor_roles: list[GrantorRole]
    disclosing_org: str
    receiving_orgs: list[str]
    categories: list[ConsentCategory]
    purpose: ConsentPurpose
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    status: ConsentStatus
    withdrawn_at: UtcDatetime | None
    withdrawn_by: str | None
    recorded_by: str
    created_at: UtcDatetime
    legal_basis: LegalBasis = PydanticField(description="The GDPR Art. 6 basis of the processing (not the consent).")
    legal_basis_note: str | None
    revision: int = PydanticField(description="1 as first given; each amendment is a new consent one higher.")
    amends: str | None = PydanticField(description="The consent this one replaced.")
    amended_by: str | None = PydanticField(description="The consent that replaced this one (it is then withdrawn).")

    @classmethod
    def of(cls, consent: Consent) -> ConsentPublic:
        """The public view of a stored consent."""
        roles = sorted({GrantorRole(grantor["role"]) for grantor in consent.grantors})
        return cls.model_validate({**consent.model_dump(), "grantor_roles": roles})


class ConsentDetail(ConsentPublic):
    """The full consent as this organisation's own users read it: identity, grantors, child's view, history,
    and per receiver whether it confirmed a withdrawal."""

    child_personnummer: str
    grantors: list[Grantor]
    child_view: ChildView | None
    history: list[HistoryEntry]
    receivers: list[ReceiverState]
    text: str = PydanticField(description="What the grantors agreed to, in Swedish, to print and sign "
                                          "(also GET /consents/{consent_id}/text).")

    @classmethod
    def of_with_history(cls, consent: Consent, history: list[ConsentHistory],
                        receipts: list[WithdrawalReceipt], text: str) -> ConsentDetail:
        """The detail view of a stored consent, its history and the receivers' withdrawal receipts."""
        public = ConsentPublic.of(consent).model_dump()
        by_org = {receipt.receiving_org: receipt for receipt in receipts}
        receivers = []
        for org in consent.receiving_orgs:
            receipt = by_org.get(org)
            if consent.status is ConsentStatus.ACTIVE:
                receivers.append(ReceiverState(org=org, state="active"))
            elif receipt is None:
                receivers.append(ReceiverState(org=org, state="pending"))
            else:
                receivers.append(ReceiverState(org=org, state="purged", purged_at=receipt.purged_at,
                                               purged_records=receipt.purged_records))
        return cls.model_validate({
            **public, "child_personnummer": consent.child_personnummer, "grantors": consent.grantors,
            "child_view": consent.child_view,
            "history": [HistoryEntry.model_validate(entry, from_attributes=True) for entry in history],
            "receivers": receivers, "text": text,
        })


class DecisionRequest(BaseModel):
    """May ``disclosing_org`` disclose these categories about this child to ``receiving_org`` for the purpose?

    Give the child either by personnummer (only this organisation's users know it) or by child key.
    """

    model_config = ConfigDict(extra="forbid")
    disclosing_org: OrgId
    receiving_org: OrgId
    child: ChildIn | None = None
    child_key: str | None = PydanticField(None, pattern=r"^[0-9a-f]{64}$",
                                          description="The pseudonymous federation-wide key of the child.")
    categories: list[ConsentCategory] = PydanticField(min_length=1)
    purpose: ConsentPurpose
    at: UtcInput | None = PydanticField(None, description="When the disclosure would happen; default now.")


class ReplicaPublic(BaseModel):
    """A consent another organisation recorded and replicated here (pseudonymous: the pair's child key only)."""

    consent_id: str
    child_key: str
    disclosing_org: str
    receiving_orgs: list[str]
    categories: list[str]
    purpose: str
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    withdrawn_at: UtcDatetime | None
    status: ConsentStatus

    @classmethod
    def of(cls, grant: ConsentGrant) -> ReplicaPublic:
        """The public view of a replicated consent."""
        status = ConsentStatus.ACTIVE if grant.withdrawn_at is None else ConsentStatus.WITHDRAWN
        return cls.model_validate({**grant.model_dump(), "status": status})


class DecisionRecordPublic(BaseModel):
    """A disclosure decision as an auditor reads and exports it (no identity: the consent and its case)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    decided_at: UtcDatetime
    phase: str
    event_id: str
    event_type: str
    consent_id: str | None
    consent_version: int | None
    case_id: str | None
    purpose: str
    categories: list[str]
    receiving_org: str
    requested_by: str
    requested_role: str
    trace_id: str | None
    outcome: DecisionOutcome
    reason: str
    lease_until: UtcDatetime | None
    settled_at: UtcDatetime | None
    settlement: str | None


class DecisionFilter(BaseModel):
    """Which disclosure decisions an auditor wants."""

    model_config = ConfigDict(extra="forbid")
    consent_id: str | None = PydanticField(None, max_length=64)
    case_id: str | None = PydanticField(None, max_length=64)
    receiving_org: OrgId | None = None
    outcome: DecisionOutcome | None = None
    phase: Literal["queue", "send"] | None = None
    since: UtcInput | None = None
    until: UtcInput | None = None
    limit: int = PydanticField(1000, ge=1, le=100_000)


class WithdrawalReceipt(SQLModel, table=True):
    """A receiver's word that it removed what it held under a withdrawn consent of this organisation's."""

    __tablename__ = "withdrawal_receipt"

    consent_id: str = Field(foreign_key="consent.id", primary_key=True, max_length=64)
    receiving_org: str = Field(primary_key=True, max_length=32)
    purged_records: int
    purged_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ReceiverState(BaseModel):
    """Per receiving organisation, after a withdrawal: has it confirmed that it removed what it held?"""

    org: str
    state: Literal["active", "pending", "purged"] = PydanticField(
        description="active: the consent stands; pending: withdrawn, no receipt yet; purged: receipt arrived.")
    purged_at: UtcDatetime | None = None
    purged_records: int | None = None
