"""The git side of session workspaces: worktrees, snapshots, drift checks, diff stats.

Every function here is synchronous and blocking: the daemon runs them in worker
threads, and a caller that stops waiting does not stop one: it runs to its end
and leaves git consistent (a half-made worktree is undone before it returns).
They take paths and plain values, return frozen dataclasses, and raise
``mimird.errors`` exceptions whose messages say what to do. A failing git command
is mapped at this boundary, with git's own words in the message and in ``detail``.

Never lose work (DESIGN.md, Invariant 4): :func:`remove_worktree` first commits
everything in the worktree that is not ignored to a ref under ``refs/mimir/``,
through a private index so that neither the branch nor the worktree's index moves,
and removes nothing if that fails. :func:`restore_worktree` brings a snapshot back
byte for byte.

git never prompts here (``GIT_TERMINAL_PROMPT=0``, stdin is /dev/null), snapshot
commits carry Mimir's own identity (the user's git config is never read for it,
never written), and every value that reaches git's command line is checked first
so that it cannot be taken for an option.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Final

import git

from mimird.errors import AlreadyExists, InvalidParams, InvalidState, MimirError, NotFound
from mimird.names import ref_problem

#: Snapshots live under this prefix; refusing any other keeps a caller's mistake
#: from ever moving a branch or a tag.
SNAPSHOT_REF_PREFIX: Final = "refs/mimir/"
#: A line of this name in a commit message marks a snapshot commit, so that
#: restore can tell "HEAD plus the work" (apply it on its parent) from a clean
#: snapshot, which is HEAD itself.
SNAPSHOT_TRAILER: Final = "Mimir-Snapshot"
DEFAULT_SNAPSHOT_MESSAGE: Final = "mimir: snapshot of the session's uncommitted work"

#: For every git call. GIT_OPTIONAL_LOCKS=0 keeps `git status` from writing the
#: refreshed index back: reading a worktree must never touch the user's index.
_GIT_ENV: Final[Mapping[str, str]] = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
#: Snapshot commits are Mimir's, whatever (or whether) the user configured.
_IDENTITY_ENV: Final[Mapping[str, str]] = {
    "GIT_AUTHOR_NAME": "Mimir",
    "GIT_AUTHOR_EMAIL": "mimir@localhost",
    "GIT_COMMITTER_NAME": "Mimir",
    "GIT_COMMITTER_EMAIL": "mimir@localhost",
}
#: git does not fsync loose objects by default; a snapshot is the only copy of the
#: work once the worktree is gone, so it must reach the disk before the removal. Every
#: git command of Mimir's that writes objects carries it, not only the snapshots and
#: commits: git skips an object that is already there (it neither writes nor fsyncs it
#: again), so a blob a diff or a turn's tree wrote into the page cache a moment before
#: would stay there under a snapshot or commit that only looks durable.
_DURABLE: Final = ("-c", "core.fsync=committed", "-c", "core.fsyncMethod=batch")
#: For the refs Mimir moves for itself (snapshots, a session's branch when its work is
#: committed): durable, and no hook of the repository's runs (``update-ref`` would run
#: ``reference-transaction``), as no hook runs for the commits they point at.
_OWN_REF: Final = (*_DURABLE, "-c", "core.hooksPath=/dev/null")
_GITLINK_MODE: Final = "160000"
_SHA: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_NULL_SHA: Final = frozenset({"0" * 40, "0" * 64})
_GITFILE_PREFIX: Final = "gitdir: "
#: What the reftable backend leaves in the HEAD file; the real HEAD is elsewhere.
_REFTABLE_HEAD: Final = "refs/heads/.invalid"
_STATUS_NAMES: Final[Mapping[str, str]] = {
    "A": "added",
    "C": "added",
    "D": "deleted",
    "M": "modified",
    "R": "renamed",
    "T": "type_changed",
    "U": "modified",
}


# ---- results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepoState:
    """The user's checkout (the project directory)."""

    head_commit: str | None  # None for a repository with no commits
    branch: str | None  # None when detached
    dirty: bool  # tracked changes, or untracked files that are not ignored


@dataclass(frozen=True, slots=True)
class Snapshot:
    ref: str
    commit: str
    #: Files that differed from HEAD (modified, added, deleted, untracked); 0 if clean.
    files: int
    #: The HEAD the snapshot was taken on (its parent); None on an unborn branch.
    head: str | None = None


@dataclass(frozen=True, slots=True)
class WorkspaceCheck:
    state: str  # "ok" | "missing" | "moved" | "wrong_branch" | "not_a_worktree"
    actual_path: Path | None = None  # for moved
    actual_branch: str | None = None  # for wrong_branch ("HEAD" when detached)


@dataclass(frozen=True, slots=True)
class WorktreeStatus:
    head: str | None
    dirty: bool
    ahead: int  # commits on HEAD that are not in the base commit
    behind: int  # commits in the base commit that are not on HEAD
    files_changed: int
    insertions: int
    deletions: int


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    status: str  # added | modified | deleted | renamed | type_changed
    insertions: int
    deletions: int
    binary: bool
    #: For renamed: where the file was.
    old_path: str | None = None


@dataclass(frozen=True, slots=True)
class GitWorktree:
    path: Path
    head: str | None
    branch: str | None  # short name, None if detached
    prunable: bool
    locked: bool = False


# ---- running git -----------------------------------------------------------------------


class _GitFailed(Exception):
    """A git command exited non-zero. Never leaves mimird.workspaces (compare and
    integrate share this runner)."""

    def __init__(self, args: Sequence[str], status: int, stderr: str) -> None:
        self.command = ["git", *args]
        self.status = status
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.command)} exited with {status}: {self.stderr}")

    @property
    def reason(self) -> str:
        """git's own error lines without their "fatal: " and "error: " prefixes (the
        hints and advice around them left out), else the end of what it printed (a
        hook's output, say)."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        errors = [
            line.split(": ", 1)[1] for line in lines if line.startswith(("fatal: ", "error: "))
        ]
        if errors:
            return "; ".join(errors)
        if lines:
            return "; ".join(lines[-3:])
        return f"{' '.join(self.command)} exited with status {self.status}"

    def detail(self) -> dict[str, Any]:
        return {"command": self.command, "status": self.status, "stderr": self.stderr}


def _run(
    cwd: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    strip: bool = True,
) -> tuple[int, str, str]:
    """Run git in ``cwd``; (status, stdout, stderr). Paths in the output come back
    as surrogate-escaped text, which ``os.fsencode`` turns back into their bytes."""
    # `-C` as well as the working directory: GitPython quietly runs in the daemon's
    # own cwd when the directory is gone, and git must fail instead.
    command = ["git", "-C", str(cwd), *args]
    try:
        result: tuple[int, str, str] = git.Git(str(cwd)).execute(
            command,
            istream=stdin,
            env={**_GIT_ENV, **(env or {})},
            with_extended_output=True,
            with_exceptions=False,
            strip_newline_in_stdout=strip,
        )
    except git.GitCommandNotFound as exc:
        raise InvalidState(
            "git is not installed or not on the daemon's PATH; install git and restart mimird",
            detail={"error": str(exc)},
        ) from None
    return result


def _git(
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    strip: bool = True,
) -> str:
    status, out, err = _run(cwd, args, env=env, stdin=stdin, strip=strip)
    if status != 0:
        raise _GitFailed(args, status, err)
    return out


@contextlib.contextmanager
def _git_errors(
    what: str, *, error: type[MimirError] = InvalidState, field: str | None = None
) -> Iterator[None]:
    """Turn a failing git command inside the block into ``error("what: git's reason")``."""
    try:
        yield
    except _GitFailed as exc:
        raise error(f"{what}: {exc.reason}", field=field, detail=exc.detail()) from None


def _rev_arg(value: str, field: str) -> str:
    """A revision from a caller, checked so that git cannot read it as an option."""
    if not value or value.startswith("-") or "\0" in value:
        raise InvalidParams(
            f"{value!r} is not a git revision; give a branch, tag or commit sha", field=field
        )
    return value


def _absolute(path: Path, field: str = "path") -> Path:
    if not path.is_absolute():
        raise InvalidParams(f"{path} is relative; worktree paths must be absolute", field=field)
    return path


def _same_path(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


# ---- reading git's files directly (check_worktree's fast path) -------------------------


def _read_small(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read(8192)
    except OSError:
        return None


def _gitfile_target(dotgit: Path) -> Path | None:
    """Where a ``.git`` file ("gitdir: ...") points, or None if it is not one."""
    text = _read_small(dotgit)
    if text is None or not text.startswith(_GITFILE_PREFIX):
        return None
    target = Path(text[len(_GITFILE_PREFIX) :].rstrip("\r\n"))
    return target if target.is_absolute() else dotgit.parent / target


def _common_dir_of(git_dir: Path) -> Path:
    text = _read_small(git_dir / "commondir")
    if text is None:
        return git_dir
    common = Path(text.rstrip("\r\n"))
    return common if common.is_absolute() else git_dir / common


def _repo_common_dir(root: Path) -> Path | None:
    """The repository's shared git directory (``.git`` of the main checkout)."""
    dotgit = root / ".git"
    if dotgit.is_dir():
        return Path(os.path.realpath(dotgit))
    git_dir = _gitfile_target(dotgit)
    if git_dir is None or not git_dir.is_dir():
        return None
    return Path(os.path.realpath(_common_dir_of(git_dir)))


def _require_repo(root: Path) -> Path:
    common = _repo_common_dir(root)
    if common is None:
        raise InvalidState(
            f"{root} is not a git repository (or no longer one); "
            "restore it or register the project again",
            field="project",
        )
    return common


def _linked_git_dir(common: Path, path: Path) -> Path | None:
    """The admin directory of the linked worktree at ``path``, if ``path`` is one of
    this repository's worktrees and git agrees that it lives there."""
    git_dir = _gitfile_target(path / ".git")
    if git_dir is None or not git_dir.is_dir():
        return None
    if Path(os.path.realpath(_common_dir_of(git_dir))) != common:
        return None
    # The back-pointer tells a worktree from a copy of one (`cp -r`, or moved by
    # hand): both have the same .git file, only one is where git expects it.
    back = _read_small(git_dir / "gitdir")
    if back is None:
        return None
    back_path = Path(back.rstrip("\r\n"))
    if not back_path.is_absolute():
        back_path = git_dir / back_path
    if not _same_path(back_path, path / ".git"):
        return None
    return git_dir


def _symbolic_head(git_dir: Path, worktree: Path) -> str | None:
    """The full ref HEAD points at, None when detached."""
    text = _read_small(git_dir / "HEAD")
    if text is None:
        raise OSError(f"cannot read {git_dir / 'HEAD'}")
    text = text.strip()
    if not text.startswith("ref: "):
        return None
    ref = text[len("ref: ") :].strip()
    if ref == _REFTABLE_HEAD:
        status, out, _ = _run(worktree, ["symbolic-ref", "-q", "HEAD"])
        return out.strip() if status == 0 else None
    return ref


def _rebasing(git_dir: Path, ref: str) -> bool:
    """A rebase detaches HEAD for its duration; the branch it works on is recorded."""
    for state_dir in ("rebase-merge", "rebase-apply"):
        text = _read_small(git_dir / state_dir / "head-name")
        if text is not None and text.strip() == ref:
            return True
    return False


# ---- the user's checkout ---------------------------------------------------------------


def repo_state(root: Path) -> RepoState:
    with _git_errors(f"cannot read the state of {root}"):
        out = _git(root, "status", "--porcelain=v2", "-z", "--branch", "--untracked-files=normal")
    head: str | None = None
    branch: str | None = None
    dirty = False
    for entry in out.split("\0"):
        if entry.startswith("# branch.oid "):
            value = entry[len("# branch.oid ") :]
            head = None if value == "(initial)" else value
        elif entry.startswith("# branch.head "):
            value = entry[len("# branch.head ") :]
            branch = None if value == "(detached)" else value
        elif entry and not entry.startswith("#"):
            dirty = True
    return RepoState(head_commit=head, branch=branch, dirty=dirty)


def resolve_commit(root: Path, ref: str) -> str:
    """The full sha of ``ref^{commit}``."""
    _rev_arg(ref, "base_ref")
    status, out, err = _run(
        root, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]
    )
    if status == 0:
        return out.strip()
    with _git_errors(f"cannot resolve {ref!r} in {root}", field="base_ref"):
        any_ref = _git(root, "for-each-ref", "--count=1", "--format=%(refname)")
    if not any_ref.strip():
        raise InvalidState(
            f"the repository at {root} has no commits yet; commit something first "
            "(a session's worktree starts from a commit)",
            field="base_ref",
        )
    raise InvalidParams(
        f"{ref!r} does not name a commit in {root}; give a branch, tag or commit sha",
        field="base_ref",
        detail={"stderr": err.strip()} if err.strip() else None,
    )


def check_branch_name(name: str) -> None:
    """Raise InvalidParams unless git takes ``name`` as a branch name, literally
    (``git check-ref-format --branch``, checked in Python: :func:`mimird.names.ref_problem`).
    A new session's branch is held to Mimir's stricter rule before it gets here."""
    if problem := ref_problem(name):
        raise InvalidParams(
            f"{name!r} is not a valid branch name ({problem}); use letters, digits and "
            "'/', '-', '_', '.', without spaces, '..', '~', '^', ':', '?', '*', '[' or '@{'",
            field="branch",
        )


def branch_exists(root: Path, name: str) -> bool:
    status, _, err = _run(root, ["show-ref", "--verify", "--quiet", f"refs/heads/{name}"])
    if status == 0:
        return True
    if status == 1:
        return False
    raise InvalidState(
        f"cannot look up branch {name!r} in {root}: {err.strip()}",
        field="branch",
        detail={"stderr": err.strip()},
    )


# ---- add -------------------------------------------------------------------------------


def add_worktree(
    root: Path, path: Path, branch: str, base_commit: str, *, checked: bool = False
) -> None:
    """``git worktree add -b branch path base_commit``; on any failure nothing is left
    behind (no directory, no branch, no ``.git/worktrees`` entry).

    ``checked``: the caller has just seen that ``branch`` does not exist and resolved
    ``base_commit`` to a commit's full sha (session.create does, before it writes its
    intent), so those two git calls are not made again; a branch or a path made since
    is still refused by git itself, as AlreadyExists."""
    _absolute(path)
    _require_repo(root)
    if os.path.lexists(path):
        raise AlreadyExists(
            f"{path} already exists; choose another path or remove it first", field="path"
        )
    check_branch_name(branch)
    if checked:
        commit = _rev_arg(base_commit, "base_commit")
    else:
        if branch_exists(root, branch):
            raise AlreadyExists(
                f"branch {branch!r} already exists in {root}; choose another branch name",
                field="branch",
            )
        commit = resolve_commit(root, base_commit)
    _worktree_add(root, path, ["-b", branch, "--", str(path), commit], new_branch=branch)


def _worktree_add(root: Path, path: Path, args: list[str], *, new_branch: str | None) -> None:
    """Run ``git worktree add``; undo everything it made if it fails. ``path`` must not
    exist beforehand: whatever is there afterwards was made by this call."""
    made_dirs = _missing_ancestors(path.parent)
    try:
        _git(root, "worktree", "add", "--quiet", *args)
    except BaseException as exc:
        # Lost a race: whoever made the branch or the path owns it; leave it.
        stderr = exc.stderr if isinstance(exc, _GitFailed) else ""
        branch_taken = f"branch named '{new_branch}' already exists" in stderr
        path_taken = "already exists" in stderr and not branch_taken
        _undo_add(
            root,
            path,
            None if branch_taken else new_branch,
            made_dirs,
            remove_path=not path_taken,
        )
        if isinstance(exc, _GitFailed):
            raise _add_error(exc, path, new_branch) from None
        raise


def _missing_ancestors(directory: Path) -> list[Path]:
    """The directories git would create on the way to ``directory``, deepest first."""
    missing = []
    while not os.path.lexists(directory) and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    return missing


def _undo_add(
    root: Path,
    path: Path,
    new_branch: str | None,
    made_dirs: list[Path],
    *,
    remove_path: bool = True,
) -> None:
    """Best effort, never raises: the caller is already handling a failure."""
    if remove_path:
        _discard_worktree(root, path)
    if new_branch is not None:
        with contextlib.suppress(_GitFailed, MimirError):
            if branch_exists(root, new_branch):
                _git(root, "branch", "-D", "--", new_branch)
    for directory in made_dirs:
        with contextlib.suppress(OSError):
            directory.rmdir()


def _discard_worktree(root: Path, path: Path) -> None:
    with contextlib.suppress(_GitFailed, MimirError):
        # Also drops the .git/worktrees entry; works when the directory is gone too.
        _git(root, "worktree", "remove", "--force", "--force", str(path))
    if not os.path.lexists(path):
        return
    # git did not recognise what it half-made; the path did not exist before this call.
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(_GitFailed, MimirError):
        _git(root, "worktree", "remove", "--force", "--force", str(path))


def _add_error(exc: _GitFailed, path: Path, new_branch: str | None) -> MimirError:
    text = exc.stderr
    if new_branch is not None and f"branch named '{new_branch}' already exists" in text:
        return AlreadyExists(
            f"branch {new_branch!r} already exists; choose another branch name",
            field="branch",
            detail=exc.detail(),
        )
    if "already exists" in text:
        return AlreadyExists(
            f"{path} already exists; choose another path or remove it first",
            field="path",
            detail=exc.detail(),
        )
    if "already checked out" in text or "is already used by worktree" in text:
        return InvalidState(
            f"cannot create a worktree at {path}: {exc.reason}; "
            "switch that worktree to another branch or remove it first",
            field="branch",
            detail=exc.detail(),
        )
    return InvalidState(
        f"git could not create a worktree at {path}: {exc.reason}", detail=exc.detail()
    )


def discard_unfinished_worktree(
    root: Path, path: Path, *, new_branch: str | None, branch_start: str | None
) -> tuple[bool, bool]:
    """Undo a ``git worktree add`` that a crash or a cancel cut short, after the
    fact (the process that ran it is gone); returns (directory removed, branch deleted).

    The caller knows ``path`` did not exist before (add refuses an existing path),
    so what is there now is git's unless it is neither registered with ``root``,
    linked to it, nor empty: then it is left alone. ``new_branch`` (made by the
    add) is deleted only if it still points at ``branch_start`` and no worktree
    has it checked out: a branch with commits on it, or in use, is kept.
    """
    _absolute(path)
    common = _require_repo(root)
    listed = list_git_worktrees(root)
    registered = any(_same_path(w.path, path) for w in listed)
    removed = False
    if os.path.lexists(path):
        empty = os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)
        if registered or empty or _linked_git_dir(common, path) is not None:
            _discard_worktree(root, path)
            removed = not os.path.lexists(path)
    if registered and not os.path.lexists(path):
        # A worktree cut short during its checkout stays locked ("initializing"),
        # and git worktree prune keeps locked entries.
        _run(root, ["worktree", "unlock", str(path)])
        _run(root, ["worktree", "prune"])
    deleted = False
    if new_branch is not None and branch_start is not None:
        in_use = any(w.branch == new_branch for w in list_git_worktrees(root))
        if not in_use and _branch_tip(root, new_branch) == branch_start:
            status, _, _ = _run(root, ["branch", "-D", "--", new_branch])
            deleted = status == 0
    return removed, deleted


# ---- snapshots -------------------------------------------------------------------------


@contextlib.contextmanager
def _everything_added(worktree: Path, real_index: Path | None) -> Iterator[Mapping[str, str]]:
    """An environment whose GIT_INDEX_FILE is a private index holding every file of
    the worktree that is not ignored (their blobs written durably, see _DURABLE). The
    worktree's own index is only copied."""
    with tempfile.TemporaryDirectory(prefix="mimir-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        # A copy of the real index, not `read-tree HEAD`: its stat data spares `add`
        # re-reading every unchanged file, and sparse-checkout entries stay marked as
        # skipped instead of looking deleted.
        if real_index is not None and real_index.is_file():
            # copy2: the copy keeps the index's mtime. git trusts an entry's stat data
            # only when the file is older than the index ("racy git"); a copy stamped
            # now would make a same-size edit made in the index's second look
            # unchanged, and the snapshot would silently keep the old content.
            shutil.copy2(real_index, env["GIT_INDEX_FILE"])
        else:
            # No index (a `--no-checkout` worktree); on an unborn branch start empty.
            _run(worktree, ["read-tree", "HEAD"], env=env)
        _git(worktree, *_DURABLE, "add", "--all", env=env)
        yield env


def _parse_raw(out: str) -> list[tuple[str, str]]:
    """``--raw -z`` output -> [(new mode, path)]: ``:old new sha sha status`` and the
    path alternate (a rename or copy names two paths, the new one second); with
    renames detected or not, ``--numstat`` after it or not."""
    tokens = out.split("\0")
    found = []
    i = 0
    while i < len(tokens) and tokens[i].startswith(":"):
        meta = tokens[i].split(" ")
        paired = meta[-1][:1] in ("R", "C")
        found.append((meta[1], tokens[i + 2] if paired else tokens[i + 1]))
        i += 3 if paired else 2
    return found


def _tree_entries(cwd: Path, tree: str) -> list[tuple[str, str]]:
    """Every file of ``tree`` (``ls-tree -r``) -> [(mode, path)]."""
    listed = _git(cwd, "ls-tree", "-r", "-z", tree).split("\0")
    return [
        (meta.split(" ")[0], name)
        for meta, _, name in (entry.partition("\t") for entry in listed if entry)
    ]


def _gitlinks(entries: list[tuple[str, str]]) -> list[str]:
    """The paths of ``entries`` (mode, path) that are gitlinks: nested repositories."""
    return [path for mode, path in entries if mode == _GITLINK_MODE]


def _check_snapshot_ref(worktree: Path, ref: str) -> None:
    if not ref.startswith(SNAPSHOT_REF_PREFIX) or ref == SNAPSHOT_REF_PREFIX:
        raise InvalidParams(
            f"snapshot ref {ref!r} must be under {SNAPSHOT_REF_PREFIX} "
            "(a snapshot never moves a branch or a tag)",
            field="snapshot_ref",
        )
    status, _, _ = _run(worktree, ["check-ref-format", ref])
    if status != 0:
        raise InvalidParams(f"{ref!r} is not a valid ref name", field="snapshot_ref")


def snapshot(worktree: Path, ref: str, message: str) -> Snapshot:
    """Commit the worktree's dirty and untracked (not ignored) files to ``ref``.

    The branch does not move and the worktree's index and files are not touched: the
    commit is built in a private index (a copy of the real one, ``add --all``,
    ``write-tree``, ``commit-tree -p HEAD``, ``update-ref``). A clean worktree gets
    ``ref`` pointing at HEAD itself. Raises InvalidState if the work cannot be saved;
    the caller must then keep the worktree.
    """
    if not worktree.is_dir():
        raise InvalidState(f"cannot snapshot {worktree}: it does not exist", field="path")
    _check_snapshot_ref(worktree, ref)
    what = f"cannot snapshot the work in {worktree} (nothing was removed)"
    with _git_errors(what):
        status, out, err = _run(
            worktree,
            [
                "rev-parse",
                "--path-format=absolute",
                "--git-path",
                "index",
                "--verify",
                "--quiet",
                "HEAD^{commit}",
            ],
        )
        lines = out.splitlines()
        if status not in (0, 1) or not lines:
            raise _GitFailed(["rev-parse", "HEAD"], status, err)
        real_index = Path(lines[0])
        # Status 1: an unborn branch (`git switch --orphan`); the snapshot has no parent.
        head = lines[1].strip() if status == 0 and len(lines) > 1 else None
        with _everything_added(worktree, real_index) as env:
            tree = _git(worktree, *_DURABLE, "write-tree", env=env).strip()
        if head is not None:
            changed = _parse_raw(
                _git(worktree, "diff-tree", "-r", "-z", "--raw", "--no-renames", head, tree)
            )
        else:
            changed = _tree_entries(worktree, tree)
    nested = _gitlinks(changed)
    if nested:
        raise InvalidState(
            f"{what}: {', '.join(nested[:5])} "
            f"{'is a nested git repository' if len(nested) == 1 else 'are nested git repositories'}"
            " (or submodules at new commits) whose commits and files a snapshot cannot hold; "
            "commit and push them, or move them out of the worktree, or remove with force",
            field="path",
            detail={"nested_repositories": nested},
        )
    with _git_errors(what):
        if head is not None and not changed:
            commit = head
        else:
            text = f"{message or DEFAULT_SNAPSHOT_MESSAGE}\n\n{SNAPSHOT_TRAILER}: {ref}\n"
            parents = ["-p", head] if head is not None else []
            commit = _git(
                worktree,
                *_DURABLE,
                "commit-tree",
                "--no-gpg-sign",
                "-m",
                text,
                *parents,
                tree,
                env=_IDENTITY_ENV,
            ).strip()
        # A reflog keeps an earlier snapshot of the same ref reachable for a while.
        _git(
            worktree,
            *_OWN_REF,
            "update-ref",
            "--create-reflog",
            "-m",
            "mimir snapshot",
            ref,
            commit,
        )
    return Snapshot(ref=ref, commit=commit, files=len(changed), head=head)


# ---- remove ----------------------------------------------------------------------------


def remove_worktree(
    root: Path,
    path: Path,
    *,
    branch: str | None,
    snapshot_ref: str | None,
    delete_branch: bool = False,
    force: bool = False,
    message: str = "",
    base_commit: str | None = None,
) -> Snapshot | None:
    """Remove a session's worktree, saving its work first (Invariant 4).

    Unless ``force``, the work is snapshotted to ``snapshot_ref`` and nothing is
    removed if that fails; with ``delete_branch`` the branch goes too, but only if
    its commits are in the snapshot. A path that is already gone only loses its
    ``.git/worktrees`` entry. Returns the snapshot (None when forced, or when the
    path was gone and no branch had to be saved).

    With ``base_commit`` (where the session started), the loose objects of what was
    done since (the commits an agent made with its own git, which syncs nothing by
    default) are first put in a pack written durably: see :func:`_pack_work`.
    """
    _absolute(path)
    common = _require_repo(root)
    if not force and snapshot_ref is None:
        raise InvalidParams(
            "removing a worktree without force needs a snapshot ref to save its work",
            field="snapshot_ref",
        )
    if not os.path.lexists(path):
        saved = None
        if branch is not None and snapshot_ref is not None and not force:
            # Nothing on disk to save, but the branch tip goes under the snapshot ref
            # all the same: it keeps the commits if the branch goes, and gives
            # restore something to bring back.
            saved = _save_branch_tip(root, branch, snapshot_ref)
            if saved is not None and base_commit is not None:
                _pack_work(root, common, saved.commit, base_commit)
        _remove_admin_entry(root, path, force=force)
        if delete_branch and branch is not None:
            _delete_branch(root, branch)
        return saved
    if _linked_git_dir(common, path) is None:
        raise InvalidState(
            f"{path} is not a worktree of {root} (any more); Mimir will not delete a "
            "directory it does not own: move or delete it yourself",
            field="path",
        )
    saved = None
    if not force:
        assert snapshot_ref is not None
        saved = snapshot(path, snapshot_ref, message)
        if base_commit is not None:
            _pack_work(root, common, saved.commit, base_commit)
    if delete_branch and branch is not None:
        _check_branch_deletable(root, path, branch, saved)
    with _git_errors(f"cannot remove the worktree at {path} (its work is saved)"):
        _git(root, "worktree", "remove", "--force", *(["--force"] if force else []), str(path))
    if delete_branch and branch is not None:
        _delete_branch(root, branch)
    return saved


def _pack_work(root: Path, common: Path, tip: str, base_commit: str) -> None:
    """Put the loose objects reachable from ``tip`` but not from ``base_commit`` in a
    new pack, written durably, before the worktree that made them goes.

    A snapshot's own objects are synced as they are written (see _DURABLE), but git
    neither writes nor syncs an object it finds present: the commits, trees and blobs
    an agent made with its own ``git commit`` (under the user's config, which syncs no
    loose object by default) may still be in the page cache only, and after the
    removal nothing else holds that work. Packing copies them into one file git syncs
    (``pack``, ``pack-metadata``); the loose copies stay until git's own gc. Bounded by
    what was done since ``base_commit``; nothing is written when everything is packed.
    """
    whole = f"{tip}\n"
    # One revision a line; a base that is no sha (a record from an import) bounds nothing.
    revs = f"{tip}\n^{base_commit}\n" if _SHA.fullmatch(base_commit) else whole
    status, err = _pack_objects(common, root, revs)
    lost = (
        status != 0
        and revs != whole
        and _run(root, ["cat-file", "-e", f"{base_commit}^{{commit}}"])[0] != 0
    )
    if lost:
        # A base the repository lost (its history rewritten and collected) bounds
        # nothing either: all that the tip reaches is looked at (packed is skipped).
        status, err = _pack_objects(common, root, whole)
    if status != 0:
        failed = _GitFailed(["pack-objects"], status, err)
        raise InvalidState(
            f"cannot save the work in {root} durably (nothing was removed): {failed.reason}",
            detail=failed.detail(),
        )


def _pack_objects(common: Path, root: Path, revs: str) -> tuple[int, str]:
    """``pack-objects --revs --unpacked`` of ``revs`` into a new pack, synced."""
    with tempfile.TemporaryDirectory(prefix="mimir-pack-") as tmp:
        listed = os.path.join(tmp, "revs")
        with open(listed, "w") as f:
            f.write(revs)
        with open(listed, "rb") as f:
            status, _, err = _run(
                root,
                [
                    "-c",
                    "core.fsync=committed,pack-metadata",
                    "pack-objects",
                    "--revs",
                    "--unpacked",
                    "--non-empty",
                    "--quiet",
                    str(common / "objects" / "pack" / "pack"),
                ],
                stdin=f,
            )
    return status, err


def _remove_admin_entry(root: Path, path: Path, *, force: bool) -> None:
    status, _, err = _run(
        root, ["worktree", "remove", "--force", *(["--force"] if force else []), str(path)]
    )
    if status == 0 or "is not a working tree" in err:
        return
    failed = _GitFailed(["worktree", "remove", str(path)], status, err)
    raise InvalidState(
        f"cannot drop git's record of the missing worktree {path}: {failed.reason}",
        detail=failed.detail(),
    )


def _branch_tip(root: Path, branch: str) -> str | None:
    status, out, _ = _run(root, ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"])
    return out.strip() if status == 0 else None


def _save_branch_tip(root: Path, branch: str, ref: str) -> Snapshot | None:
    tip = _branch_tip(root, branch)
    if tip is None:
        return None
    _check_snapshot_ref(root, ref)
    with _git_errors(f"cannot save branch {branch!r} before deleting it (nothing was removed)"):
        _git(root, *_OWN_REF, "update-ref", "--create-reflog", "-m", "mimir snapshot", ref, tip)
    return Snapshot(ref=ref, commit=tip, files=0, head=tip)


def _check_branch_deletable(root: Path, path: Path, branch: str, saved: Snapshot | None) -> None:
    """Before anything is removed: the branch can go, and its commits are safe."""
    for worktree in list_git_worktrees(root):
        if worktree.branch == branch and not _same_path(worktree.path, path):
            raise InvalidState(
                f"branch {branch!r} is checked out in {worktree.path}; "
                "switch that checkout to another branch or keep the branch",
                field="delete_branch",
            )
    tip = _branch_tip(root, branch)
    if saved is None or tip is None or tip in (saved.commit, saved.head):
        return
    status, _, _ = _run(root, ["merge-base", "--is-ancestor", tip, saved.commit])
    if status != 0:
        raise InvalidState(
            f"branch {branch!r} has commits that the snapshot does not hold (the worktree "
            f"was not on that branch); keep the branch, or pass force to lose them",
            field="delete_branch",
        )


def _delete_branch(root: Path, branch: str) -> None:
    status, _, err = _run(root, ["branch", "-D", "--", branch])
    if status == 0 or not branch_exists(root, branch):
        return
    failed = _GitFailed(["branch", "-D", branch], status, err)
    raise InvalidState(
        f"the worktree was removed but branch {branch!r} could not be deleted: "
        f"{failed.reason}; delete it with `git branch -D {branch}`",
        field="delete_branch",
        detail=failed.detail(),
    )


# ---- restore ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SavedCommit:
    commit: str
    tree: str
    #: Where the branch starts when it has to be re-created.
    base: str | None
    #: A snapshot commit (HEAD + work) rather than a clean HEAD.
    is_snapshot: bool


def _read_saved(root: Path, snapshot_commit: str) -> _SavedCommit:
    _rev_arg(snapshot_commit, "snapshot_commit")
    status, out, _ = _run(
        root,
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{snapshot_commit}^{{commit}}"],
    )
    if status != 0:
        raise NotFound(
            f"snapshot commit {snapshot_commit} is not in {root} (was it garbage-collected?)",
            field="snapshot_commit",
            id=snapshot_commit,
        )
    commit = out.strip()
    with _git_errors(f"cannot read snapshot commit {commit}"):
        raw = _git(root, "cat-file", "commit", commit)
    header, _, body = raw.partition("\n\n")
    tree = ""
    parents = []
    for line in header.splitlines():
        key, _, value = line.partition(" ")
        if key == "tree":
            tree = value
        elif key == "parent":
            parents.append(value)
    is_snapshot = any(line.startswith(f"{SNAPSHOT_TRAILER}:") for line in body.splitlines())
    if not is_snapshot:
        return _SavedCommit(commit=commit, tree=tree, base=commit, is_snapshot=False)
    return _SavedCommit(
        commit=commit, tree=tree, base=parents[0] if parents else None, is_snapshot=True
    )


def restore_branch_start(root: Path, snapshot_commit: str) -> str | None:
    """Where :func:`restore_worktree` re-creates a branch that is gone: the snapshot's
    base (None when it was taken on an unborn branch)."""
    return _read_saved(root, snapshot_commit).base


def restore_worktree(root: Path, path: Path, *, branch: str, snapshot_commit: str) -> None:
    """Bring a removed session's work back at ``path`` on ``branch``.

    The branch is checked out if it still exists, else re-created at the snapshot's
    parent. Then the working tree is made equal to the snapshot byte for byte (new
    files come back untracked, deleted ones are deleted again, modes and symlinks as
    they were) while the index stays equal to HEAD. On failure nothing is left.
    """
    _absolute(path)
    _require_repo(root)
    if os.path.lexists(path):
        raise AlreadyExists(
            f"{path} already exists; move it away before restoring the session", field="path"
        )
    check_branch_name(branch)
    saved = _read_saved(root, snapshot_commit)
    if branch_exists(root, branch):
        new_branch = None
        args = ["--", str(path), branch]
    else:
        if saved.base is None:
            raise InvalidState(
                f"snapshot {saved.commit} was taken on an unborn branch and branch "
                f"{branch!r} is gone; check the files out with `git archive {saved.commit}`",
                field="snapshot_commit",
            )
        new_branch = branch
        args = ["-b", branch, "--", str(path), saved.base]
    made_dirs = _missing_ancestors(path.parent)
    _worktree_add(root, path, args, new_branch=new_branch)
    if not saved.is_snapshot:
        return
    try:
        with _git_errors(f"cannot restore snapshot {saved.commit} into {path}"):
            _apply_tree(path, saved.tree)
    except BaseException:
        _undo_add(root, path, new_branch, made_dirs)
        raise


def _apply_tree(worktree: Path, tree: str) -> None:
    """Make the working tree equal to ``tree``, leaving the index at HEAD."""
    out = _git(worktree, "diff-tree", "-r", "-z", "--no-renames", "--name-status", "HEAD", tree)
    tokens = out.split("\0")
    deleted: list[str] = []
    written: list[str] = []
    for status, rel in zip(tokens[0::2], tokens[1::2], strict=False):
        (deleted if status == "D" else written).append(rel)
    # Deletions first: a file that became a directory (or the reverse) needs the way cleared.
    for rel in deleted:
        _remove_path(worktree, worktree / rel)
    if not written:
        return
    with tempfile.TemporaryDirectory(prefix="mimir-restore-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        _git(worktree, "read-tree", tree, env=env)
        paths = os.path.join(tmp, "paths")
        with open(paths, "wb") as f:
            f.write(b"".join(os.fsencode(rel) + b"\0" for rel in written))
        with open(paths, "rb") as f:
            # The private index was never checked out, so -f rewrites every listed
            # path with the snapshot's bytes and mode.
            _git(worktree, "checkout-index", "--force", "-z", "--stdin", env=env, stdin=f)


def _remove_path(worktree: Path, target: Path) -> None:
    if os.path.islink(target) or os.path.isfile(target):
        os.unlink(target)
    elif os.path.isdir(target):
        shutil.rmtree(target)
    parent = target.parent
    while parent != worktree and worktree in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


# ---- drift -----------------------------------------------------------------------------


def check_worktree(root: Path, path: Path, branch: str) -> WorkspaceCheck:
    """Is the session's worktree where Mimir left it, on its branch?

    Cheap enough for every session read: in the common case it reads a few small
    files (``<path>/.git``, the admin entry's ``commondir``, ``gitdir`` and ``HEAD``)
    and runs no git. Only a missing path costs a ``git worktree list``, to tell a
    worktree moved with ``git worktree move`` from one that is gone.
    """
    common = _require_repo(root)
    if not os.path.lexists(path):
        return _find_moved(root, path, branch)
    git_dir = _linked_git_dir(common, path)
    if git_dir is None:
        return WorkspaceCheck("not_a_worktree")
    try:
        ref = _symbolic_head(git_dir, path)
    except OSError:
        return WorkspaceCheck("not_a_worktree")
    expected = f"refs/heads/{branch}"
    if ref == expected:
        return WorkspaceCheck("ok")
    if ref is None:
        if _rebasing(git_dir, expected):
            return WorkspaceCheck("ok")
        return WorkspaceCheck("wrong_branch", actual_branch="HEAD")
    return WorkspaceCheck("wrong_branch", actual_branch=ref.removeprefix("refs/heads/"))


def _find_moved(root: Path, path: Path, branch: str) -> WorkspaceCheck:
    for worktree in list_git_worktrees(root)[1:]:
        if (
            worktree.branch == branch
            and not worktree.prunable
            and not _same_path(worktree.path, path)
        ):
            return WorkspaceCheck("moved", actual_path=worktree.path)
    return WorkspaceCheck("missing")


def list_git_worktrees(root: Path) -> list[GitWorktree]:
    """``git worktree list --porcelain``, the main checkout first."""
    with _git_errors(f"cannot list the worktrees of {root}"):
        out = _git(root, "worktree", "list", "--porcelain", "-z")
    worktrees = []
    fields: dict[str, str] = {}
    for token in [*out.split("\0"), ""]:
        if token:
            key, _, value = token.partition(" ")
            fields[key] = value
            continue
        if "worktree" in fields:
            head = fields.get("HEAD")
            branch = fields.get("branch")
            worktrees.append(
                GitWorktree(
                    path=Path(fields["worktree"]),
                    head=None if head is None or head in _NULL_SHA else head,
                    branch=branch.removeprefix("refs/heads/") if branch else None,
                    prunable="prunable" in fields,
                    locked="locked" in fields,
                )
            )
        fields = {}
    return worktrees


def prune_worktree_admin(root: Path) -> None:
    """``git worktree prune``: forget worktrees whose directories are gone."""
    with _git_errors(f"cannot prune the worktrees of {root}"):
        _git(root, "worktree", "prune")


# ---- status and diff -------------------------------------------------------------------


def _index_path(worktree: Path) -> Path | None:
    dotgit = worktree / ".git"
    if dotgit.is_dir():
        return dotgit / "index"
    git_dir = _gitfile_target(dotgit)
    return None if git_dir is None else git_dir / "index"


def _changes(
    worktree: Path, base_commit: str, *, patch: bool
) -> tuple[list[FileChange], str | None]:
    """Every file of the worktree (committed, staged, modified, untracked) against the
    base, through a private index."""
    with _everything_added(worktree, _index_path(worktree)) as env:
        out = _git(
            worktree,
            "diff-index",
            "--cached",
            "-M",
            "--raw",
            "--numstat",
            "-z",
            base_commit,
            "--",
            env=env,
        )
        text = (
            _git(
                worktree,
                "diff-index",
                "--cached",
                "-M",
                "-p",
                base_commit,
                "--",
                env=env,
                strip=False,
            )
            if patch
            else None
        )
    return _parse_changes(out), text


def _parse_changes(out: str) -> list[FileChange]:
    """The changes ``--raw --numstat -z`` (renames detected) lists."""
    tokens = out.split("\0")
    raw: list[tuple[str, str, str | None]] = []  # (status letter, path, old path)
    i = 0
    while i < len(tokens) and tokens[i].startswith(":"):
        letter = tokens[i].split(" ")[-1][:1]
        if letter in ("R", "C"):
            raw.append((letter, tokens[i + 2], tokens[i + 1]))
            i += 3
        else:
            raw.append((letter, tokens[i + 1], None))
            i += 2
    counts: dict[str, tuple[int, int, bool]] = {}
    while i < len(tokens) and tokens[i]:
        added, removed, name = tokens[i].split("\t", 2)
        if name:
            i += 1
        else:  # a rename: the old and new names follow
            name = tokens[i + 2]
            i += 3
        binary = added == "-"
        counts[name] = (0 if binary else int(added), 0 if binary else int(removed), binary)
    files = []
    for letter, name, old in raw:
        added_n, removed_n, binary = counts.get(name, (0, 0, False))
        files.append(
            FileChange(
                path=name,
                status=_STATUS_NAMES.get(letter, "modified"),
                insertions=added_n,
                deletions=removed_n,
                binary=binary,
                old_path=old if letter == "R" else None,
            )
        )
    return files


def worktree_tree(path: Path, index: Path) -> str:
    """The tree of every file of the worktree that is not ignored (committed, staged,
    modified or untracked), as it is now: the state a turn starts from, and ends in.

    Built in ``index``, a private index the caller keeps from one call to the next (made
    from a copy of the worktree's the first time): its stat data spares ``add`` reading
    the files that did not change since the last call, also those the worktree's own
    index has marked racy (written in the second of their checkout) and that it would
    read again every time. The worktree's index, branch and files are not touched."""
    env = {"GIT_INDEX_FILE": str(index)}
    with _git_errors(f"cannot read the files of {path}"):
        if not index.is_file():
            real_index = _index_path(path)
            if real_index is not None and real_index.is_file():
                shutil.copy2(real_index, index)  # copy2: see _everything_added
            else:
                _run(path, ["read-tree", "HEAD"], env=env)
        # Durable: a snapshot or a run's commit made later reuses these objects.
        _git(path, *_DURABLE, "add", "--all", env=env)
        return _git(path, *_DURABLE, "write-tree", env=env).strip()


def tree_changes(path: Path, old_tree: str, new_tree: str) -> list[FileChange]:
    """What changed from ``old_tree`` to ``new_tree`` (both from :func:`worktree_tree`),
    per file, renames detected."""
    for tree in (old_tree, new_tree):
        _rev_arg(tree, "tree")
    with _git_errors(f"cannot compare the files of {path}"):
        out = _git(
            path, "diff-tree", "-r", "-M", "--raw", "--numstat", "-z", old_tree, new_tree, "--"
        )
    return _parse_changes(out)


def worktree_status(path: Path, base_commit: str, *, upstream: str | None = None) -> WorktreeStatus:
    """HEAD, dirtiness and change counts against the base commit; ahead/behind against
    ``upstream`` (the base branch's tip now, which may have moved on) or else the base
    commit. Four git calls; the worktree's index is never written."""
    _rev_arg(base_commit, "base_commit")
    compare = upstream or base_commit
    _rev_arg(compare, "upstream")
    with _git_errors(f"cannot read the status of {path}"):
        state = repo_state(path)
        ahead = behind = 0
        if state.head_commit is not None:
            counted = _git(path, "rev-list", "--left-right", "--count", f"{compare}...HEAD", "--")
            left, right = counted.split()
            behind, ahead = int(left), int(right)
        files, _ = _changes(path, base_commit, patch=False)
    return WorktreeStatus(
        head=state.head_commit,
        dirty=state.dirty,
        ahead=ahead,
        behind=behind,
        files_changed=len(files),
        insertions=sum(f.insertions for f in files),
        deletions=sum(f.deletions for f in files),
    )


def diff(
    path: Path, base_commit: str, *, patch: bool = False
) -> tuple[list[FileChange], str | None]:
    """Per-file changes of the worktree (untracked files included) against the base
    commit, and the unified patch when asked. The worktree's index is never written."""
    _rev_arg(base_commit, "base_commit")
    with _git_errors(f"cannot diff {path} against {base_commit}"):
        return _changes(path, base_commit, patch=patch)


# ---- copying ignored files into a fresh worktree ---------------------------------------


def _check_pattern(pattern: str) -> None:
    pure = PurePosixPath(pattern)
    # No parts ("." or "./"): pathlib's glob crashes instead of matching nothing.
    if not pure.parts or "\0" in pattern or pure.is_absolute() or ".." in pure.parts:
        raise InvalidParams(
            f"copy_files pattern {pattern!r} must be a relative glob inside the project "
            "(no leading '/', no '..')",
            field="copy_files",
        )


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def copy_files(source_root: Path, target_root: Path, patterns: list[str]) -> list[str]:
    """Copy the files matching ``patterns`` (globs relative to ``source_root``, e.g.
    ``.env``, ``config/*.local``) to the same place under ``target_root``.

    Meant for ignored files a fresh worktree lacks. A matched directory is copied
    whole. Files already in the target are left alone (never overwritten), and
    nothing under ``.git`` is copied. A pattern that escapes ``source_root``
    (absolute, ``..``, or a match through a symlink that resolves outside) is
    InvalidParams, checked for every pattern before anything is copied; a file that
    cannot be copied (an OSError) is InvalidState naming it. Returns the relative
    paths copied.
    """
    source = os.path.realpath(source_root)
    target = os.path.realpath(target_root)
    for pattern in patterns:
        _check_pattern(pattern)
    plan: dict[str, str] = {}  # relative path -> real source file
    for pattern in patterns:
        try:
            matches = sorted(Path(source).glob(pattern))
        except (ValueError, OSError, RecursionError) as exc:
            # A pattern stored before policy checked it: too long a name, '**' in a word.
            reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            raise InvalidParams(
                f"copy_files pattern {pattern!r} cannot be used: {reason}; change the "
                "copy_files config of the project or session",
                field="copy_files",
            ) from None
        for match in matches:
            for rel in _files_under(source, match, pattern):
                real = os.path.realpath(os.path.join(source, rel))
                if not _inside(real, source):
                    raise InvalidParams(
                        f"copy_files pattern {pattern!r} matches {rel}, a symlink to {real} "
                        f"outside {source}; remove the pattern or the link",
                        field="copy_files",
                    )
                if os.path.isfile(real):
                    plan[rel] = real
    copied = []
    for rel, real in sorted(plan.items()):
        destination = os.path.join(target, rel)
        # The worktree's own content (a committed symlink) must not redirect a copy
        # out of it.
        if not _inside(os.path.realpath(os.path.dirname(destination)), target):
            raise InvalidParams(
                f"cannot copy {rel}: its directory in {target} is a symlink leading out of it",
                field="copy_files",
            )
        if os.path.lexists(destination):
            continue
        try:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            mode = os.stat(real).st_mode & 0o7777
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                fd = os.open(destination, flags, mode)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as out, open(real, "rb") as src:
                shutil.copyfileobj(src, out)
            shutil.copystat(real, destination)
        except OSError as exc:
            raise InvalidState(
                f"cannot copy {rel} (matched by copy_files) into {target}: {exc.strerror or exc}",
                field="copy_files",
                detail={"path": rel, "errno": errno.errorcode.get(exc.errno or 0, "")},
            ) from None
        copied.append(rel)
    return copied


def _files_under(source: str, match: Path, pattern: str) -> Iterator[str]:
    """Relative paths of the files a glob match stands for (itself, or a directory's files)."""
    rel = os.path.relpath(match, source)
    if ".git" in Path(rel).parts:
        return
    if not os.path.isdir(match):
        yield rel
        return
    real = os.path.realpath(match)
    if not _inside(real, source):
        raise InvalidParams(
            f"copy_files pattern {pattern!r} matches {rel}, a symlink to {real} outside "
            f"{source}; remove the pattern or the link",
            field="copy_files",
        )
    for directory, dirs, names in os.walk(match):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            yield os.path.relpath(os.path.join(directory, name), source)
