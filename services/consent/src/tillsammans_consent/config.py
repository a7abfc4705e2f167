"""Consent settings (env prefix ``TILLSAMMANS_CONSENT_``, then ``TILLSAMMANS_``)."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tillsammans_common.settings import ServiceSettings
from tillsammans_consent.models import LegalBasis


class ConsentSettings(ServiceSettings):
    """Configuration of consent."""

    service_name: ClassVar[str] = "consent"
    model_config = SettingsConfigDict(env_prefix="TILLSAMMANS_CONSENT_", extra="ignore")

    port: int = 8003
    mature_age: int = Field(
        15, ge=0,
        description="From this age the child consents alone (no guardian needed) and the child's no is a no.")
    legal_basis: LegalBasis = Field(
        LegalBasis.PUBLIC_TASK, description="The GDPR basis recorded on a consent that names none (Art. 6(1)).")
    legal_basis_note: str | None = Field(
        None, max_length=500, description="The note recorded with the default basis, e.g. the law giving the task.")
    max_validity_days: int = Field(365, ge=1, description="The longest period one consent may cover.")
    disclosure_lease_seconds: float = Field(
        10.0, gt=0, le=300,
        description="How long a permit to send lets the relay publish; a withdrawal waits at most this long.")
