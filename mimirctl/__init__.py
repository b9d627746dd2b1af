"""mimirctl: the control client of mimird.

Kept light on purpose: a blocking Unix socket, the standard library's json and
the daemon's wire constants, nothing of its storage or agent code (and no trio,
SQLAlchemy, structlog or even msgspec on short paths), so that a command starts
in well under 100 ms.
"""
