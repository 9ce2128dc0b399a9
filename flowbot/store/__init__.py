"""The SQL store: SQLAlchemy Core tables, Alembic migrations, and the master's async access."""

from .access import Ref
from .changes import Hold, Release
from .store import Store

__all__ = ["Hold", "Ref", "Release", "Store"]
