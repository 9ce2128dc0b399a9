"""The SQL store: SQLAlchemy Core tables, Alembic migrations, and the master's async access."""

from .access import Ref
from .store import Store

__all__ = ["Ref", "Store"]
