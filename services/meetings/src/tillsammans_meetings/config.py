"""Meetings settings (env prefix ``TILLSAMMANS_MEETINGS_``, then ``TILLSAMMANS_``)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tillsammans_common.settings import ServiceSettings


class MeetingsSettings(ServiceSettings):
    """Configuration of meetings."""

    service_name: ClassVar[str] = "meetings"
    model_config = SettingsConfigDict(env_prefix="TILLSAMMANS_MEETINGS_", extra="ignore")

    port: int = 8004
    follow_up_scan_seconds: float = 60.0
    """How often the scheduler looks for follow-ups and plan items whose time passed."""
