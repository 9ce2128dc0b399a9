"""The SQL store: SQLAlchemy Core tables, Alembic migrations, and the master's async access."""

from .store import Ref, Store

__all__ = ["Ref", "Store"]
