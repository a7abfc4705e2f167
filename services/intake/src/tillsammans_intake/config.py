"""Intake settings (env prefix ``TILLSAMMANS_INTAKE_``, then ``TILLSAMMANS_``)."""

from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tillsammans_common.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """Configuration of intake."""

    service_name: ClassVar[str] = "intake"
    model_config = SettingsConfigDict(env_prefix="TILLSAMMANS_INTAKE_", extra="ignore")

    port: int = 8001
    directory_file: Path | None = None
    """JSON list of units to seed the directory with on first start; default: the demo directory."""
