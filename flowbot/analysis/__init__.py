"""Build history as pandas DataFrames: what ran, what failed, what waited, and why.

``History(db_url)`` reads a store (a master's or a copy of it, no master needed) and answers the
questions CI users ask: failure rate over time, queue times, slowest steps, worker utilisation,
which change broke a build, which tests are flaky, where a message appears in the logs. It reads
the store's tables and nothing else of flowbot's machinery.
"""

from .history import History

__all__ = ["History"]
