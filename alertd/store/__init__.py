"""The state store: alert series state, aggregation groups, notification log, outbox, silences.

:mod:`alertd.store.base` is the interface, :mod:`alertd.store.sqlite` the SQLite backend.
"""

from alertd.store.base import Attempt, Changes, OutboxRow, OutboxStatus, Store
from alertd.store.sqlite import SqliteStore

__all__ = ["Attempt", "Changes", "OutboxRow", "OutboxStatus", "SqliteStore", "Store"]
