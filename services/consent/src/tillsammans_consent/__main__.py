"""Run consent: ``python -m tillsammans_consent``."""

from tillsammans_common.service_app import serve
from tillsammans_consent.config import ConsentSettings
from tillsammans_consent.main import create_app

settings = ConsentSettings()
serve(lambda: create_app(settings), settings)
