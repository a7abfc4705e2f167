"""Intake settings (env prefix ``TILLSAMMANS_INTAKE_``, then ``TILLSAMMANS_``)."""

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tillsammans_common.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """Configuration of intake."""

    service_name: ClassVar[str] = "intake"
    model_config = SettingsConfigDict(env_prefix="TILLSAMMANS_INTAKE_", extra="ignore")

    port: int = 8001
    directory_file: Path | None = None
    """JSON list of units to seed the directory with on first start, or an SS 12000 export imported at every
    start; default: the demo directory."""
    intake_desk_unit: str | None = Field(None, max_length=64)
    """The unit a concern goes to when no rule finds the child's unit; default: the directory's unit of kind
    intake_desk (the first by id)."""
    default_wheel: str = Field("sormland", min_length=1, max_length=64)
    """The wheel a concern's areas are of when it names none."""
    stale_after_days: int = Field(180, ge=1, le=3650)
    """A unit not confirmed for this long is stale (seed 002: a contact list nobody confirms goes stale)."""
    ss12000_bba_roles: list[str] = Field(default_factory=lambda: ["Rektor", "Förskolechef"], min_length=1)
    """SS 12000 duty roles whose holder at a school unit is its BBA (the first such duty; the rest deputise)."""
    ss12000_deputy_roles: list[str] = Field(default_factory=lambda: ["Övrig arbetsledning"])
    """SS 12000 duty roles whose holders at a school unit are the BBA's deputies."""
