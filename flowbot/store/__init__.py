"""The SQL store: SQLAlchemy Core tables, Alembic migrations, and the master's async access."""

from .store import Hold, Ref, Release, Store

__all__ = ["Hold", "Ref", "Release", "Store"]
