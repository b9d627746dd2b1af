"""Bringing work home: committing a worktree's work onto its branch, and integrating
one branch into another in the user's repository.

Synchronous and blocking like :mod:`.git` (callers run these in the git write
limiter's thread), with its runner and its error mapping.

:func:`integrate` never leaves anything half-done. The result is computed without
a working tree (``git merge-tree --write-tree``, ``commit-tree``), so a conflict
writes no file, moves no ref and leaves no ``MERGE_HEAD``: only unreachable objects,
which ``git gc`` collects. Then the target branch moves in one step:

- not checked out anywhere: ``update-ref refs/heads/<into> <new> <old>``, a
  compare-and-swap that fails if someone moved the branch meanwhile; the user's
  checkout (on another branch) is not touched;
- checked out in a worktree (the main one or a linked one): only when that checkout
  is clean, by the rule "``git status --porcelain`` prints nothing" (tracked changes,
  staged changes and untracked files that are not ignored all count), and when no
  ignored file of the user lies where the result puts a file; then ``merge --ff-only``
  of the computed commit in that worktree (the result always descends from the
  target's tip), which git refuses rather than overwrite anything.

Merge and squash commits carry Mimir's identity, like snapshots: the user's git
config is never read for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from mimird import names
from mimird.errors import (
    BranchMoved,
    CheckoutDirty,
    InvalidParams,
    InvalidState,
    MergeConflict,
    NotFound,
)
from mimird.workspaces import git as worktrees
from mimird.workspaces.git import (
    _DURABLE,
    _IDENTITY_ENV,
    _OWN_REF,
    FileChange,
    _git,
    _git_errors,
    _GitFailed,
    _gitlinks,
    _linked_git_dir,
    _parse_changes,
    _parse_raw,
    _rebasing,
    _require_repo,
    _rev_arg,
    _run,
    _tree_entries,
)

Kind = Literal["fast_forward", "merge", "squash", "up_to_date"]

#: A commit message longer than this is refused (it is text a client sent).
MAX_MESSAGE_BYTES: Final = 64 * 1024
#: How many dirty entries or conflicting files an error lists in its message
#: (``detail`` has them all).
LISTED_IN_MESSAGE: Final = 10
#: How many commit subjects a squash commit's default message lists.
SQUASH_SUBJECTS: Final = 50
#: States in a worktree's git directory that a commit must not cut across.
_IN_PROGRESS: Final = {
    "rebase-merge": "a rebase",
    "rebase-apply": "a rebase or `git am`",
    "MERGE_HEAD": "a merge",
    "CHERRY_PICK_HEAD": "a cherry-pick",
    "REVERT_HEAD": "a revert",
}


@dataclass(frozen=True, slots=True)
class Integration:
    """What :func:`integrate` did."""

    kind: Kind
    #: The target branch's tip now.
    commit: str
    #: Its tip before.
    previous: str
    #: What changed on the target branch (previous → commit); empty when up to date.
    files: list[FileChange]
    #: The checkout that was moved with the branch, if it was checked out.
    worktree: Path | None = None


# ---- checks ----------------------------------------------------------------------------


def _check_message(message: str | None) -> str | None:
    if message is None:
        return None
    if "\0" in message or len(message.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise InvalidParams(
            f"the commit message must be text without NUL, at most {MAX_MESSAGE_BYTES} bytes",
            field="message",
        )
    if not message.strip():
        raise InvalidParams("the commit message is empty; give some text or none", field="message")
    return message


def _branch_tip(root: Path, branch: str, field: str) -> str:
    names.check_branch(branch, field=field)
    status, out, _ = _run(
        root,
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"refs/heads/{branch}^{{commit}}"],
    )
    if status != 0:
        raise NotFound(
            f"branch {branch!r} does not exist in {root}; give an existing branch",
            field=field,
            id=branch,
        )
    return out.strip()


def _is_ancestor(root: Path, ancestor: str, descendant: str) -> bool:
    status, _, err = _run(root, ["merge-base", "--is-ancestor", ancestor, descendant])
    if status in (0, 1):
        return status == 0
    raise InvalidState(
        f"cannot tell how {ancestor} and {descendant} are related in {root}: {err.strip()}",
        detail={"stderr": err.strip()},
    )


def _git_dir_of(common: Path, worktree: worktrees.GitWorktree, main: bool) -> Path | None:
    return common if main else _linked_git_dir(common, worktree.path)


def _checkouts_of(root: Path, common: Path, branch: str) -> list[Path]:
    """The worktrees that have ``branch`` checked out, or are rebasing it (HEAD is
    detached for a rebase's duration, and the branch moves at its end)."""
    ref = f"refs/heads/{branch}"
    found = []
    for i, worktree in enumerate(worktrees.list_git_worktrees(root)):
        if worktree.prunable:
            continue
        if worktree.branch == branch:
            found.append(worktree.path)
            continue
        git_dir = _git_dir_of(common, worktree, main=i == 0)
        if worktree.branch is None and git_dir is not None and _rebasing(git_dir, ref):
            raise InvalidState(
                f"branch {branch!r} is being rebased in {worktree.path}; finish or abort "
                "the rebase there, then try again (nothing was changed)",
                field="into",
                detail={"worktree": str(worktree.path)},
            )
    return found


def _dirty_entries(worktree: Path) -> list[str]:
    """``git status --porcelain`` of the checkout: every tracked, staged or untracked
    (not ignored) change, as "XY path"."""
    with _git_errors(f"cannot read the status of {worktree} (nothing was changed)"):
        out = _git(worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    entries = []
    tokens = out.split("\0")
    i = 0
    while i < len(tokens):
        entry = tokens[i]
        i += 1
        if not entry:
            continue
        entries.append(entry)
        if entry[:1] in ("R", "C"):  # a rename's source follows
            i += 1
    return entries


def _ignored_in_the_way(worktree: Path, old: str, new: str) -> list[str]:
    """Files the result adds whose place in ``worktree`` is already taken (in a clean
    checkout that can only be an ignored file or directory, which git would
    overwrite without a word), or lies under a file or a symlink."""
    out = _git(worktree, "diff-tree", "-r", "-z", "--name-only", "--diff-filter=AT", old, new)
    taken = []
    for rel in (p for p in out.split("\0") if p):
        parts = rel.split("/")
        for depth in range(1, len(parts) + 1):
            here = os.path.join(worktree, *parts[:depth])
            last = depth == len(parts)
            if os.path.islink(here) or (
                os.path.lexists(here) and (last or not os.path.isdir(here))
            ):
                taken.append(rel)
                break
            if not os.path.lexists(here):
                break
    return taken


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED_IN_MESSAGE])
    more = len(items) - LISTED_IN_MESSAGE
    return f"{shown} and {more} more" if more > 0 else shown


# ---- computing the result --------------------------------------------------------------


def _merge_tree(root: Path, into_tip: str, branch_tip: str, branch: str, into: str) -> str:
    """The merged tree, or MergeConflict listing every conflicting file."""
    # Durable: the merged tree's new objects are what the branch will point at.
    status, out, err = _run(
        root,
        [*_DURABLE, "merge-tree", "--write-tree", "-z", "--name-only", into_tip, branch_tip],
    )
    if status == 0:
        return out.split("\0", 1)[0].strip()
    if status != 1:
        failed = _GitFailed(["merge-tree", into_tip, branch_tip], status, err)
        raise InvalidState(
            f"cannot merge {branch!r} into {into!r}: {failed.reason} (nothing was changed)",
            detail=failed.detail(),
        )
    # tree NUL, conflicted names NUL ..., NUL, then messages: <n> NUL <n paths> NUL
    # <type> NUL <message> NUL ...
    tokens = out.split("\0")
    files: list[str] = []
    i = 1
    while i < len(tokens) and tokens[i]:
        if tokens[i] not in files:
            files.append(tokens[i])
        i += 1
    i += 1
    messages = []
    while i < len(tokens) and tokens[i].isdigit():
        count = int(tokens[i])
        kind_at = i + 1 + count
        if kind_at + 1 >= len(tokens):
            break
        if tokens[kind_at].startswith("CONFLICT"):
            messages.append(tokens[kind_at + 1].strip())
        i = kind_at + 2
    raise MergeConflict(
        f"merging {branch!r} into {into!r} conflicts in {len(files)} file(s): "
        f"{_listed(files)}; nothing was changed. Resolve it by hand (git merge {branch} "
        f"on {into}), or rebase {branch!r} onto {into!r} first",
        field="branch",
        detail={"files": files, "conflicts": messages, "branch": branch, "into": into},
    )


def _squash_message(root: Path, branch: str, into: str, base: str, tip: str) -> str:
    status, out, _ = _run(
        root, ["log", f"--max-count={SQUASH_SUBJECTS}", "--format=* %s", f"{base}..{tip}", "--"]
    )
    subjects = out.strip() if status == 0 else ""
    text = f"Squashed branch '{branch}' into {into}\n"
    return f"{text}\n{subjects}\n" if subjects else text


def _commit(root: Path, tree: str, parents: list[str], message: str) -> str:
    args = [arg for parent in parents for arg in ("-p", parent)]
    return _git(
        root,
        *_DURABLE,
        "commit-tree",
        "--no-gpg-sign",
        "-m",
        message,
        *args,
        tree,
        env=_IDENTITY_ENV,
    ).strip()


# ---- integrate -------------------------------------------------------------------------


def integrate(
    repo_root: Path,
    branch: str,
    into: str,
    *,
    squash: bool = False,
    message: str | None = None,
) -> Integration:
    """Bring ``branch`` into ``into`` in the repository at ``repo_root``.

    Fast-forwards when ``into`` is an ancestor of ``branch`` (unless ``squash``),
    else makes a merge commit (parents: ``into``, ``branch``) or, with ``squash``,
    one commit whose only parent is ``into``. Nothing happens when ``branch`` is
    already in ``into`` (``up_to_date``), nor when a squash would change nothing.

    Raises (and then nothing changed): InvalidParams for a bad name or message,
    NotFound for a branch that does not exist, MergeConflict listing the files,
    CheckoutDirty when ``into`` is checked out with changes (naming the worktree and
    the changes), BranchMoved when ``into`` moved while the result was computed,
    InvalidState when ``into`` is being rebased or git fails.
    """
    common = _require_repo(repo_root)
    message = _check_message(message)
    branch_tip = _branch_tip(repo_root, branch, "branch")
    into_tip = _branch_tip(repo_root, into, "into")
    if branch == into:
        raise InvalidParams(f"cannot integrate branch {branch!r} into itself", field="into")
    checkouts = _checkouts_of(repo_root, common, into)
    if len(checkouts) > 1:
        raise InvalidState(
            f"branch {into!r} is checked out in {len(checkouts)} worktrees "
            f"({_listed([str(p) for p in checkouts])}); leave it checked out in one at most",
            field="into",
        )
    checkout = checkouts[0] if checkouts else None
    if checkout is not None:
        dirty = _dirty_entries(checkout)
        if dirty:
            raise CheckoutDirty(
                f"branch {into!r} is checked out in {checkout} with uncommitted changes "
                f"({_listed([entry.strip() for entry in dirty])}); commit or stash them "
                "there (or switch that checkout to another branch), then try again. Nothing "
                "was changed",
                field="into",
                detail={"worktree": str(checkout), "changes": dirty},
            )
    if _is_ancestor(repo_root, branch_tip, into_tip):
        return Integration("up_to_date", into_tip, into_tip, [])
    what = f"cannot integrate {branch!r} into {into!r} (nothing was changed)"
    kind: Kind
    if not squash and _is_ancestor(repo_root, into_tip, branch_tip):
        kind, new = "fast_forward", branch_tip
    else:
        tree = _merge_tree(repo_root, into_tip, branch_tip, branch, into)
        with _git_errors(what):
            if squash:
                if tree == _git(repo_root, "rev-parse", f"{into_tip}^{{tree}}").strip():
                    return Integration("up_to_date", into_tip, into_tip, [])
                text = message or _squash_message(repo_root, branch, into, into_tip, branch_tip)
                kind, new = "squash", _commit(repo_root, tree, [into_tip], text)
            else:
                text = message or f"Merge branch '{branch}' into {into}\n"
                kind, new = "merge", _commit(repo_root, tree, [into_tip, branch_tip], text)
    if checkout is None:
        _swap_ref(repo_root, into, new, into_tip, kind, branch)
    else:
        _move_checkout(checkout, into, new, into_tip)
    files = worktrees.tree_changes(repo_root, into_tip, new)
    return Integration(kind, new, into_tip, files, checkout)


def _moved(into: str, expected: str) -> BranchMoved:
    return BranchMoved(
        f"branch {into!r} moved (it is no longer at {expected[:12]}) while its merge was "
        "computed; nothing was changed: try again",
        field="into",
        detail={"expected": expected},
    )


def _swap_ref(root: Path, into: str, new: str, old: str, kind: str, branch: str) -> None:
    status, _, err = _run(
        root,
        [
            *_DURABLE,
            "update-ref",
            "--create-reflog",
            "-m",
            f"mimir: {kind.replace('_', '-')} of {branch}",
            f"refs/heads/{into}",
            new,
            old,
        ],
    )
    if status == 0:
        return
    if "but expected" in err or "is at" in err:
        raise _moved(into, old)
    failed = _GitFailed(["update-ref", f"refs/heads/{into}"], status, err)
    raise InvalidState(
        f"cannot move branch {into!r}: {failed.reason} (nothing was changed)",
        field="into",
        detail=failed.detail(),
    )


def _move_checkout(checkout: Path, into: str, new: str, old: str) -> None:
    status, head, _ = _run(checkout, ["rev-parse", "--verify", "--quiet", "HEAD"])
    if status != 0 or head.strip() != old:
        raise _moved(into, old)
    with _git_errors(f"cannot update the checkout of {into!r} at {checkout} (nothing was changed)"):
        taken = _ignored_in_the_way(checkout, old, new)
    if taken:
        raise CheckoutDirty(
            f"branch {into!r} is checked out in {checkout}, where ignored files or "
            f"directories are in the way of files the merge adds ({_listed(taken)}); move "
            "them away and try again. Nothing was changed",
            field="into",
            detail={"worktree": str(checkout), "in_the_way": taken},
        )
    # The new commit descends from HEAD, so this is a fast-forward: git updates the
    # files and the branch, and refuses (changing nothing) rather than overwrite a
    # change that appeared since the status check.
    with _git_errors(f"cannot update the checkout of {into!r} at {checkout} (nothing was changed)"):
        _git(checkout, *_DURABLE, "merge", "--ff-only", "--quiet", "--no-stat", new)


# ---- committing a worktree -------------------------------------------------------------


def commit_worktree(path: Path, message: str) -> str | None:
    """Commit everything in the worktree at ``path`` (tracked changes, deletions,
    untracked files that are not ignored) onto its branch; the new commit, or None
    when there was nothing to commit.

    The commit carries Mimir's identity and runs no hook. Symlinks are committed as
    links (their targets are never read), nothing named ``.git`` is ever committed,
    and nested repositories are refused. The branch moves by compare-and-swap from
    the HEAD read at the start. Refused with InvalidState: ``path`` is not the top
    of a worktree, HEAD is detached, or a rebase, merge, cherry-pick or revert is in
    progress.
    """
    return _commit_all(path, message, None)[0]


def commit_worktree_against(
    path: Path, message: str, base: str
) -> tuple[str | None, list[FileChange]]:
    """:func:`commit_worktree`, and what the branch then holds against ``base`` (per
    file, renames detected), read from the same git call that looks for nested
    repositories: those added or changed since ``base`` are refused."""
    _rev_arg(base, "base")
    commit, changes = _commit_all(path, message, base)
    assert changes is not None
    return commit, changes


def _commit_all(
    path: Path, message: str, base: str | None
) -> tuple[str | None, list[FileChange] | None]:
    text = _check_message(message)
    assert text is not None
    if not path.is_dir():
        raise InvalidState(f"cannot commit the work in {path}: it does not exist", field="path")
    what = f"cannot commit the work in {path}"
    git_dir, ref, parent, parent_tree = _where(path, what)
    for name, operation in _IN_PROGRESS.items():
        if os.path.lexists(git_dir / name):
            raise InvalidState(
                f"{what}: {operation} is in progress there; finish or abort it first",
                field="path",
                detail={"in_progress": name},
            )
    if ref is None:
        raise InvalidState(
            f"{what}: HEAD is detached; check out the session's branch there first",
            field="path",
        )
    changes: list[FileChange] | None = None
    raw = ""
    with _git_errors(what):
        _git(path, *_DURABLE, "add", "--all")
        tree = _git(path, *_DURABLE, "write-tree").strip()
        if base is not None:
            raw = _git(path, "diff-tree", "-r", "-M", "--raw", "--numstat", "-z", base, tree, "--")
            changes = _parse_changes(raw)
        if tree == parent_tree:
            return None, changes
        if base is not None:
            entries = _parse_raw(raw)
        elif parent is not None:
            entries = _parse_raw(
                _git(path, "diff-tree", "-r", "-z", "--raw", "--no-renames", parent, tree)
            )
        else:
            entries = _tree_entries(path, tree)
            if not entries:
                return None, changes
        nested = _gitlinks(entries)
        if nested:
            raise InvalidState(
                f"{what}: {_listed(nested)} holds a nested git repository, whose files a "
                "commit cannot hold; remove it or move it out of the worktree",
                field="path",
                detail={"nested_repositories": nested},
            )
        commit = _commit(path, tree, [parent] if parent else [], text)
    status, _, err = _run(
        path,
        [*_OWN_REF, "update-ref", "-m", "mimir: commit the work", ref, commit, parent or ""],
    )
    if status != 0:
        raise BranchMoved(
            f"{what}: {ref.removeprefix('refs/heads/')} moved while the work was committed; "
            "try again",
            field="path",
            detail={"stderr": err.strip()},
        )
    return commit, changes


def _where(path: Path, what: str) -> tuple[Path, str | None, str | None, str | None]:
    """The worktree's git directory, the branch HEAD is on (None: detached), HEAD's
    commit and its tree (None: an unborn branch). Refused unless ``path`` is the top
    of a worktree. One git call when HEAD has a commit (a member's worktree always
    does), three on an unborn branch."""
    status, out, _ = _run(
        path,
        [
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--show-toplevel",
            "HEAD",
            "HEAD^{tree}",
            "--symbolic-full-name",
            "HEAD",
        ],
    )
    lines = out.split("\n")
    if status == 0 and len(lines) == 5:
        git_dir_text, top, head, head_tree, symbolic = lines
        parent: str | None = head
        parent_tree: str | None = head_tree
        ref: str | None = symbolic if symbolic.startswith("refs/heads/") else None
    else:  # an unborn branch (HEAD names no commit yet), or not a worktree at all
        with _git_errors(what):
            out = _git(path, "rev-parse", "--path-format=absolute", "--git-dir", "--show-toplevel")
        git_dir_text, _, top = out.partition("\n")
        status, symbolic, _ = _run(path, ["symbolic-ref", "-q", "HEAD"])
        ref = symbolic.strip() if status == 0 else None
        status, head, _ = _run(path, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        parent = head.strip() if status == 0 else None
        parent_tree = None
        if parent is not None:  # HEAD appeared since the first call
            parent_tree = _git(path, "rev-parse", f"{parent}^{{tree}}").strip()
    if os.path.realpath(top.strip()) != os.path.realpath(path):
        raise InvalidState(
            f"{what}: it is not the top of a git worktree (that is {top.strip()})", field="path"
        )
    return Path(git_dir_text.strip()), ref, parent, parent_tree


def is_clean(worktree: Path) -> bool:
    """Whether the worktree holds nothing but its HEAD (ignored files aside)."""
    return not _dirty_entries(worktree)


def put_back(worktree: Path, ref: str, message: str) -> bool:
    """Make the worktree its HEAD again (tracked files restored, new files that are
    not ignored removed; ignored files stay), after saving what differs under
    ``ref`` (a snapshot, so nothing is lost). True when there was something to put
    back. Raises InvalidState, and changes nothing, when it cannot be saved."""
    if is_clean(worktree):
        return False
    worktrees.snapshot(worktree, ref, message)
    with _git_errors(f"cannot put {worktree} back to its HEAD (what differed is in {ref})"):
        _git(worktree, "reset", "--hard", "--quiet", "HEAD")
        _git(worktree, "clean", "-d", "--force", "--quiet")
    return True
