"""Run mapping: ``python -m tillsammans_mapping``."""

from tillsammans_common.service_app import serve
from tillsammans_mapping.config import MappingSettings
from tillsammans_mapping.main import create_app

settings = MappingSettings()
serve(lambda: create_app(settings), settings)
