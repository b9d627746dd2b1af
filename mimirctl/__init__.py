"""mimirctl: the control client of mimird.

Kept light on purpose: a blocking Unix socket and msgspec, nothing of the
daemon's storage or agent code (and no trio, SQLAlchemy or structlog), so that
a command starts in well under 100 ms.
"""
