"""Storage: the SQLite database, its schema and its migrations."""

from mimird.store.database import Store

__all__ = ["Store"]
