"""Runs: one task given to several member sessions at once (competition, ensemble,
debate), their work compared, checked, decided and brought home.

- :mod:`~mimird.runs.states`: the run state machine;
- :mod:`~mimird.runs.records`: the records (database functions) and the wire form;
- :mod:`~mimird.runs.context`: :class:`RunContext`, what a phase may do;
- :mod:`~mimird.runs.modes`: the phases and the modes made of them, the judges;
- :mod:`~mimird.runs.checks`: a check command in a member's worktree;
- :mod:`~mimird.runs.work`: a member's work on git (committed, measured);
- :mod:`~mimird.runs.orchestrator`: :class:`Runs`, the owner of the runs' tasks.
"""

from mimird.runs.context import RunContext
from mimird.runs.orchestrator import Runs

__all__ = ["RunContext", "Runs"]
