"""REST API (FastAPI). ``create_app`` builds it from an ``ApiContext``."""

from andon.api.app import create_app
from andon.api.context import ApiContext, HistoryReader

__all__ = ["ApiContext", "HistoryReader", "create_app"]
