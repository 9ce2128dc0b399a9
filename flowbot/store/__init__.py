"""The SQL store: SQLAlchemy Core tables, Alembic migrations, and the master's async access."""

from .access import Ref
from .steps import StepEnd, StepStart
from .store import Store

__all__ = ["Ref", "StepEnd", "StepStart", "Store"]
