"""mimirctl: the control client of mimird.

Kept light on purpose: a blocking Unix socket, the standard library's json and
the daemon's wire constants, nothing of its storage or agent code (and no trio,
SQLAlchemy, structlog or even msgspec on short paths), so that a command starts
in under 50 ms. ``cli`` imports only the command module of the word given, and
no module on the short path imports typing, socket's wrapper, shutil or datetime
at run time (each costs 2-3 ms; tests/mimirctl/test_mimirctl_layout.py keeps it so).
"""
