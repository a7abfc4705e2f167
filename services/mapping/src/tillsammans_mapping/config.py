"""Mapping settings (env prefix ``TILLSAMMANS_MAPPING_``, then ``TILLSAMMANS_``)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tillsammans_common.settings import ServiceSettings


class MappingSettings(ServiceSettings):
    """Configuration of mapping."""

    service_name: ClassVar[str] = "mapping"
    model_config = SettingsConfigDict(env_prefix="TILLSAMMANS_MAPPING_", extra="ignore")

    port: int = 8002
