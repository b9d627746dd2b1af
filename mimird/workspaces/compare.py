"""Comparing work: the diff of two revisions (commits or trees) file by file, with
numstat totals and, on request, the text diff of each file, bounded in bytes.

Synchronous and blocking like :mod:`.git`, whose runner, error mapping and
``--raw --numstat`` parser it uses. A member's work that is not committed yet is
compared through :func:`work_tree`, the tree of everything in its worktree (not
ignored), built in a private index: the worktree is not touched.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, TypeVar

from mimird.errors import InvalidParams, InvalidState
from mimird.workspaces.git import (
    _DURABLE,
    _GIT_ENV,
    FileChange,
    _everything_added,
    _git,
    _git_errors,
    _index_path,
    _parse_changes,
    _rev_arg,
)

K = TypeVar("K")

#: What a comparison's text diff holds at most unless the caller says otherwise.
DEFAULT_PATCH_BYTES: Final = 1 << 20
#: The most paths a comparison may be limited to.
MAX_PATHS: Final = 1000
_READ_CHUNK: Final = 1 << 16
_FILE_HEADER: Final = b"diff --git "
#: Paths are literal: a ':(glob)' or '*' in one is a name, not a pattern.
_LITERAL: Final = {"GIT_LITERAL_PATHSPECS": "1"}


@dataclass(frozen=True, slots=True)
class FilePatch:
    path: str
    text: str
    #: The text stops at the byte bound, in this file.
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Comparison:
    """From ``a`` to ``b``: every changed file, and its text diff when asked."""

    a: str
    b: str
    files: list[FileChange]
    #: One per file, in the order of ``files``, up to the byte bound; None when not asked.
    patches: list[FilePatch] | None = None
    #: The text diff was cut at the byte bound: the last patch is partial and the
    #: files after it have none.
    patch_truncated: bool = False

    @property
    def files_changed(self) -> int:
        return len(self.files)

    @property
    def insertions(self) -> int:
        return sum(f.insertions for f in self.files)

    @property
    def deletions(self) -> int:
        return sum(f.deletions for f in self.files)


def _check_paths(paths: Sequence[str] | None) -> list[str]:
    if paths is None:
        return []
    if len(paths) > MAX_PATHS:
        raise InvalidParams(f"at most {MAX_PATHS} paths can be compared at once", field="paths")
    for path in paths:
        pure = PurePosixPath(path)
        if not path or "\0" in path or pure.is_absolute() or ".." in pure.parts:
            raise InvalidParams(
                f"{path!r} is not a path inside the repository (relative, no '..')",
                field="paths",
            )
    return list(paths)


def work_tree(worktree: Path) -> str:
    """The tree of every file of ``worktree`` that is not ignored (committed, staged,
    modified or untracked), as it is now. The worktree's index and files are not
    touched (the tree's objects are written to the repository, unreferenced)."""
    with (
        _git_errors(f"cannot read the files of {worktree}"),
        _everything_added(worktree, _index_path(worktree)) as env,
    ):
        return _git(worktree, *_DURABLE, "write-tree", env=env).strip()


def compare(
    repo_root: Path,
    a: str,
    b: str,
    *,
    paths: Sequence[str] | None = None,
    patch: bool = False,
    max_patch_bytes: int = DEFAULT_PATCH_BYTES,
) -> Comparison:
    """What changed from ``a`` to ``b`` (commits or trees), per file, renames
    detected; limited to ``paths`` (literal paths or directories) when given; with
    each file's text diff when ``patch``, at most ``max_patch_bytes`` of it."""
    _rev_arg(a, "a")
    _rev_arg(b, "b")
    listed = _check_paths(paths)
    if max_patch_bytes < 0:
        raise InvalidParams("max_patch_bytes must be 0 or more", field="max_patch_bytes")
    with _git_errors(f"cannot compare {a} with {b} in {repo_root}", error=InvalidParams):
        out = _git(
            repo_root,
            "diff-tree",
            "-r",
            "-M",
            "--raw",
            "--numstat",
            "-z",
            "--end-of-options",
            a,
            b,
            "--",
            *listed,
            env=_LITERAL,
        )
    files = _parse_changes(out)
    if not patch:
        return Comparison(a, b, files)
    text, cut = _bounded_patch(repo_root, a, b, listed, max_patch_bytes)
    patches = _split_patch(text, files, cut)
    return Comparison(a, b, files, patches, cut)


def against_base(
    repo_root: Path,
    base: str,
    heads: Mapping[K, str],
    *,
    paths: Sequence[str] | None = None,
    patch: bool = False,
    max_patch_bytes: int = DEFAULT_PATCH_BYTES,
) -> dict[K, Comparison]:
    """Each member's work (``heads``: slot → commit or tree) against the base, the
    byte bound shared by all of them (in the order of ``heads``)."""
    left = max_patch_bytes
    found = {}
    for slot, head in heads.items():
        found[slot] = compare(
            repo_root, base, head, paths=paths, patch=patch, max_patch_bytes=max(left, 0)
        )
        if patch:
            left -= sum(len(p.text.encode()) for p in found[slot].patches or [])
    return found


def _bounded_patch(root: Path, a: str, b: str, paths: list[str], limit: int) -> tuple[bytes, bool]:
    """The patch git prints, at most ``limit`` bytes of it (git is stopped there: a
    huge diff is never held in memory); whether it was cut."""
    command = [
        "git",
        "-C",
        str(root),
        "diff-tree",
        "-r",
        "-M",
        "-p",
        "--no-color",
        "--end-of-options",
        a,
        b,
        "--",
        *paths,
    ]
    env = {**os.environ, **_GIT_ENV, **_LITERAL}
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    ) as process:
        assert process.stdout is not None
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := process.stdout.read(_READ_CHUNK)):
            chunks.append(chunk)
            size += len(chunk)
        cut = size > limit
        if cut:
            process.kill()
        status = process.wait()
    if not cut and status != 0:
        raise InvalidState(f"git could not diff {a} and {b} in {root} (status {status})")
    return b"".join(chunks)[:limit], cut


def _split_patch(text: bytes, files: list[FileChange], cut: bool) -> list[FilePatch]:
    """The patch in one piece per file: git prints them in the order of the raw
    listing, each starting with a ``diff --git`` line (a content line always starts
    with ' ', '+', '-' or '\\')."""
    starts = [0] if text.startswith(_FILE_HEADER) else []
    at = text.find(b"\n" + _FILE_HEADER)
    while at != -1:
        starts.append(at + 1)
        at = text.find(b"\n" + _FILE_HEADER, at + 1)
    pieces = [text[s:e] for s, e in zip(starts, [*starts[1:], len(text)], strict=False)]
    patches = []
    for i, (change, piece) in enumerate(zip(files, pieces, strict=False)):
        last = i == len(pieces) - 1
        patches.append(
            FilePatch(change.path, piece.decode("utf-8", "replace"), truncated=cut and last)
        )
    return patches
