"""Params and results of ``run.compare`` (the members side by side, and their diffs
file by file) and ``run.integrate`` (the chosen work brought into a branch of the
project's repository).

Standard library and msgspec only: ``mimirctl`` imports this module.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from mimird.wire.runs import MemberOutcome, PickSlot, Run, RunCheck, RunRef
from mimird.wire.types import BranchName, Params, Result, SessionStatus

#: How many bytes of text diff ``run.compare`` returns unless asked otherwise.
DEFAULT_DIFF_BYTES: Final = 1 << 20
#: The most it returns (the whole answer stays well under the frame limit).
MAX_DIFF_BYTES: Final = 8 << 20
MAX_COMMIT_MESSAGE: Final = 64 * 1024

CommitMessage = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_COMMIT_MESSAGE,
        pattern=r"^[^\x00]*\S[^\x00]*$",
        description="The merge or squash commit's message (default: one Mimir writes).",
    ),
]
IntegrationKind = Literal["fast_forward", "merge", "squash", "up_to_date"]


class RunCompareParams(Params):
    run: RunRef
    #: Two slots: the diff of the first member's work to the second's (0: an ensemble's
    #: integration session). Absent: each member's work against the run's base.
    between: Annotated[list[PickSlot], Meta(min_length=2, max_length=2)] | UnsetType = UNSET
    #: The text diff of each file too (else only its counts).
    files: bool = False
    #: At most this many bytes of text diff in all (the rest is left out, and said so).
    max_bytes: Annotated[int, Meta(ge=0, le=MAX_DIFF_BYTES)] = DEFAULT_DIFF_BYTES


class RunCompareMember(Result):
    """One row of the side-by-side table: a member and its work against the base."""

    slot: int
    agent: str
    session_id: str
    status: SessionStatus
    outcome: MemberOutcome
    branch: str | None
    files_changed: int
    lines_added: int
    lines_deleted: int
    check: RunCheck | None
    winner: bool = False
    #: The work could not be read (its workspace is missing, say); the counts are 0.
    unavailable: str | None = None


class RunFileDiff(Result):
    path: str
    #: added, modified, deleted, renamed, type_changed
    status: str
    insertions: int
    deletions: int
    binary: bool
    #: For renamed: where the file was.
    old_path: str | None = None
    #: The file's unified diff (with ``files``), None when not asked or past the bound.
    patch: str | None = None
    #: The patch stops at the byte bound, in this file.
    patch_truncated: bool = False


class RunDiff(Result):
    #: The slot whose work is the old side; None: the run's base commit.
    from_slot: int | None
    to_slot: int
    files: list[RunFileDiff]
    files_changed: int
    insertions: int
    deletions: int
    #: The text diffs were cut at ``max_bytes``: the files after the cut have no patch.
    truncated: bool = False


class RunComparison(Result):
    run: str
    base_commit: str | None
    members: list[RunCompareMember]
    diffs: list[RunDiff]


class RunIntegrateParams(Params):
    run: RunRef
    #: The member whose work is integrated (default: the run's winner); 0: an ensemble's
    #: integration session, once its work is done.
    slot: PickSlot | UnsetType = UNSET
    #: The branch it goes into (default: the run's ``into``, else its base branch).
    into: BranchName | UnsetType = UNSET
    #: One commit on top of ``into`` instead of a merge (or a fast-forward).
    squash: bool = False
    message: CommitMessage | UnsetType = UNSET


class RunIntegrated(Result):
    run: Run
    #: The member integrated; None for an ensemble's integration session.
    slot: int | None
    branch: str
    into: str
    kind: IntegrationKind
    #: Where ``into`` points now, and where it pointed before.
    commit: str
    previous: str
    files_changed: int
    insertions: int
    deletions: int
    #: The checkout of ``into`` that was moved with it, if it is checked out.
    worktree: str | None = None
    #: The other members put away because this call decided the run (a run that was
    #: still deciding): deleted as session.delete does, their work snapshotted and
    #: their branches kept (unless preserve_worktrees: then only their agents stop).
    put_away: list[int] = msgspec.field(default_factory=list)
