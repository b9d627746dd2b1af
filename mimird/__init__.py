"""mimird: the Mimir daemon.

This package's ``__init__`` stays import-light on purpose: ``mimirctl`` imports
``mimird.wire`` (which imports nothing but msgspec) and must not pay for trio,
SQLAlchemy, structlog or even ``importlib.metadata`` on its short paths. The
version lives here and pyproject.toml reads it from here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
