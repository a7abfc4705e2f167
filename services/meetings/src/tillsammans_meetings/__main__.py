"""Run meetings: ``python -m tillsammans_meetings``."""

from tillsammans_common.service_app import serve
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app

settings = MeetingsSettings()
serve(lambda: create_app(settings), settings)
