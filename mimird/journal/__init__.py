"""The journal: every event of every session, durable first, then fanned out.

- :mod:`~mimird.journal.events`: appending events inside a write transaction
  (per-session ``seq``, gapless) and reading them back as stored JSON;
- :mod:`~mimird.journal.writer`: the :class:`Journal` owner, whose writer task
  batches producers' events into transactions and publishes each commit;
- :mod:`~mimird.journal.subscriptions`: a cursor plus a bounded queue per
  subscriber, catching up from the database when it falls behind;
- :mod:`~mimird.journal.run_events`: a run's own journal (per-run ``seq``), read
  and followed the same way;
- :mod:`~mimird.journal.search`: the full-text index over the events.
"""

from mimird.journal.events import (
    Committed,
    Fact,
    Pending,
    Verbatim,
    append,
    append_batch,
    head,
    kind_and_data,
    page,
    page_committed,
    seq_at,
)
from mimird.journal.run_events import RunCommitted, append_run, page_run, run_head
from mimird.journal.subscriptions import Subscription
from mimird.journal.writer import Journal

__all__ = [
    "Committed",
    "Fact",
    "Journal",
    "Pending",
    "RunCommitted",
    "Subscription",
    "Verbatim",
    "append",
    "append_batch",
    "append_run",
    "head",
    "kind_and_data",
    "page",
    "page_committed",
    "page_run",
    "run_head",
    "seq_at",
]
