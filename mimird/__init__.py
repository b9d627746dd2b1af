"""mimird: the Mimir daemon.

This package's ``__init__`` stays import-light on purpose: ``mimirctl`` imports
``mimird.wire`` (which imports nothing but msgspec) and must not pay for trio,
SQLAlchemy or structlog on its short paths.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mimir")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
