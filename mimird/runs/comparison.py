"""A run's members side by side (``run.compare``): each member's work against the
run's base (files, lines added and deleted, its check), and the diff of two
members, or of each against the base, file by file with its text diff on request.

A member's work is what its worktree holds now, committed or not
(:func:`mimird.workspaces.compare.work_tree`; the worktree is not touched), else its
branch (a member put away has its work there, or in its snapshot). Everything is
read in the workspaces' git read threads; nothing changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from mimird.errors import InvalidParams, MimirError, NotFound
from mimird.runs.context import RunContext, RunOwner
from mimird.runs.records import RunRow
from mimird.sessions.records import SessionRow
from mimird.wire.run_merge import (
    RunCompareMember,
    RunComparison,
    RunDiff,
    RunFileDiff,
)
from mimird.wire.runs import RunCheck
from mimird.workspaces import compare as comparing
from mimird.workspaces import git as worktrees
from mimird.workspaces.compare import Comparison


def _work_of(root: Path, row: SessionRow) -> str:
    """The commit or tree holding the member's work now (sync: a git read thread)."""
    path = Path(row.workspace_path) if row.workspace_path else None
    if row.workspace_state == "ok" and path is not None and os.path.isdir(path):
        return comparing.work_tree(path)
    for ref in (f"refs/heads/{row.branch}" if row.branch else None, row.snapshot_commit):
        if ref is not None:
            try:
                return worktrees.resolve_commit(root, ref)
            except MimirError:
                continue
    raise NotFound(
        f"the work of session {row.id} is gone: no worktree, branch or snapshot holds it",
        field="session",
        id=row.id,
    )


def _diff(from_slot: int | None, to_slot: int, found: Comparison) -> RunDiff:
    patches = {p.path: p for p in found.patches or []}
    files = []
    for change in found.files:
        patch = patches.get(change.path)
        files.append(
            RunFileDiff(
                path=change.path,
                status=change.status,
                insertions=change.insertions,
                deletions=change.deletions,
                binary=change.binary,
                old_path=change.old_path,
                patch=None if patch is None else patch.text,
                patch_truncated=patch is not None and patch.truncated,
            )
        )
    return RunDiff(
        from_slot=from_slot,
        to_slot=to_slot,
        files=files,
        files_changed=found.files_changed,
        insertions=found.insertions,
        deletions=found.deletions,
        truncated=found.patch_truncated,
    )


def _check(run: RunRow, slot: int) -> RunCheck | None:
    stored = run.member(slot).get("check")
    if not isinstance(stored, dict):
        return None
    return RunCheck(
        exit_code=stored.get("exit_code"),
        passed=bool(stored.get("passed")),
        summary=str(stored.get("summary", "")),
        duration_s=float(stored.get("duration_s", 0.0)),
        timed_out=bool(stored.get("timed_out", False)),
    )


async def compare_run(
    runs: RunOwner,
    run_id: str,
    *,
    between: tuple[int, int] | None = None,
    files: bool = False,
    max_bytes: int = comparing.DEFAULT_PATCH_BYTES,
) -> RunComparison:
    """The members side by side, and the diffs (``between`` two slots: the first's
    work to the second's; else each member's against the base), with each file's
    text diff when ``files``, at most ``max_bytes`` of it in all.

    Cancellation: nothing changes."""
    ctx = RunContext(runs, run_id)
    run = await ctx.row()
    members = await ctx.members()
    slots = [slot for slot, _ in members]
    if between is not None:
        for slot in between:
            if slot not in slots:
                raise NotFound(
                    f"run {run.id} has no member in slot {slot} (its slots: "
                    f"{', '.join(map(str, slots))})",
                    field="between",
                    id=str(slot),
                )
        if between[0] == between[1]:
            raise InvalidParams("compare two different slots", field="between")
    root = Path(run.project_path)
    read = runs.sessions.workspaces.read_git
    heads: dict[int, str] = {}
    missing: dict[int, str] = {}
    for slot, row in members:
        try:
            heads[slot] = await read(_work_of, root, row)
        except MimirError as exc:
            missing[slot] = exc.message
    each: dict[int, Comparison] = {}
    if run.base_commit is not None:
        each = await read(
            comparing.against_base,
            root,
            run.base_commit,
            heads,
            patch=files and between is None,
            max_patch_bytes=max_bytes,
        )
    table = []
    for slot, row in members:
        found = each.get(slot)
        outcome = run.member(slot).get("outcome", "pending")
        table.append(
            RunCompareMember(
                slot=slot,
                agent=row.agent or "-",
                session_id=row.id,
                status=row.status,
                outcome=outcome,
                branch=row.branch,
                files_changed=0 if found is None else found.files_changed,
                lines_added=0 if found is None else found.insertions,
                lines_deleted=0 if found is None else found.deletions,
                check=_check(run, slot),
                winner=slot == run.winner_slot,
                unavailable=missing.get(slot),
            )
        )
    diffs: list[RunDiff] = []
    if between is not None:
        a, b = between
        for slot in between:
            if slot in missing:
                raise NotFound(missing[slot], field="between", id=str(slot))
        found = await read(
            comparing.compare, root, heads[a], heads[b], patch=files, max_patch_bytes=max_bytes
        )
        diffs.append(_diff(a, b, found))
    else:
        diffs.extend(_diff(None, slot, found) for slot, found in each.items())
    return RunComparison(run=run.id, base_commit=run.base_commit, members=table, diffs=diffs)
