"""Run intake: ``python -m tillsammans_intake``."""

from tillsammans_common.service_app import serve
from tillsammans_intake.config import IntakeSettings
from tillsammans_intake.main import create_app

settings = IntakeSettings()
serve(lambda: create_app(settings), settings)
