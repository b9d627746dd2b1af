"""The file sandbox: reads and writes an agent asks for, inside its workspace only.

Synchronous throughout (run it in a thread). A path is first resolved and checked
(:func:`confine`); the directories on the way are then opened one component at a
time without following symlinks, so that a part swapped for a symlink between the
check and the use (the check-then-use race) fails the open instead of leading out
of the workspace. Writes are atomic (temp file + rename in the same directory).

The OS's errors never leave this module: they become :class:`OutsideWorkspace`,
:class:`FileMissing`, :class:`FileRefused` or :class:`FileAccessFailed`, and each
boundary (ACP, JSON-RPC) maps those once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Any, Final

from mimird.errors import FileAccessFailed, FileMissing, FileRefused, OutsideWorkspace

#: Files larger than this are not served to agents (they would be one huge line).
MAX_FILE_BYTES: Final = 32 * 1024 * 1024

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: A path whose directories are not plain ones when opened: not a directory, or a
#: symlink swapped in after :func:`confine` checked the path.
_SWAPPED: Final = (
    "{}: a part of the path is not a directory (or became a symlink after it was checked); refused"
)


def confine(
    workspace: Path,
    path: Any,
    field_name: str = "path",
    refusal: str = "Mimir only serves files inside it",
) -> Path:
    """``path`` resolved (symlinks and ``..``) and checked to lie inside the
    workspace. Relative paths are taken relative to the workspace. Raises
    :class:`OutsideWorkspace` otherwise (and for what is not a path at all)."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise OutsideWorkspace(f"{field_name} must be a non-empty path", field=field_name)
    root = Path(os.path.realpath(workspace))
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = Path(os.path.realpath(candidate))
    if resolved != root and root not in resolved.parents:
        raise OutsideWorkspace(
            f"{path} is outside the session's workspace {root}; {refusal}", field=field_name
        )
    return resolved


def directory_inside(workspace: Path, path: Any, field_name: str, refusal: str) -> Path:
    """A directory inside the workspace (a terminal's ``cwd``): :func:`confine`, and
    :class:`FileRefused` when it is not a directory."""
    resolved = confine(workspace, path, field_name, refusal)
    if not resolved.is_dir():
        raise FileRefused(f"{field_name} {path} is not a directory", field=field_name)
    return resolved


def _open_dir(workspace: Path, directory: Path, *, create: bool = False) -> int:
    """A file descriptor of ``directory``, a path :func:`confine` resolved inside
    ``workspace``, opened one component at a time without following symlinks
    (``create``: making the missing ones). A component swapped for a symlink after
    :func:`confine` resolved the path fails the open (``ELOOP``) instead of leading
    out of the workspace."""
    root = os.path.realpath(workspace)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in directory.relative_to(root).parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refused(exc: OSError, shown: str, doing: str) -> Exception:
    """The domain error for an OSError met while ``doing`` (read, write) ``shown``."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return OutsideWorkspace(_SWAPPED.format(shown), field="path")
    return FileAccessFailed(f"cannot {doing} {shown}: {exc.strerror}", field="path")


def read_text(
    workspace: Path, path: Path, line: int | None, limit: int | None, shown: str | None = None
) -> str:
    """The text of ``path`` (checked by :func:`confine`), from 1-based ``line``, at
    most ``limit`` lines. ``shown`` is the path as the agent gave it, for messages."""
    shown = str(path) if shown is None else shown
    try:
        parent = _open_dir(workspace, path.parent)
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
        with open(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise FileRefused(f"{shown} is a directory", field="path")
            if info.st_size > MAX_FILE_BYTES:
                raise FileRefused(
                    f"{path} is {info.st_size} bytes; at most {MAX_FILE_BYTES} are served",
                    field="path",
                )
            text = file.read(MAX_FILE_BYTES + 1).decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise FileMissing(f"{shown} does not exist", field="path") from None
    except IsADirectoryError:
        raise FileRefused(f"{shown} is a directory", field="path") from None
    except OSError as exc:
        raise _refused(exc, shown, "read") from exc
    if line is None and limit is None:
        return text
    lines = text.splitlines(keepends=True)
    start = max((line or 1) - 1, 0)
    end = len(lines) if limit is None else start + max(limit, 0)
    return "".join(lines[start:end])


def write_text(workspace: Path, path: Path, content: str, shown: str | None = None) -> int:
    """Write atomically (temp file + rename, both inside the directory opened by
    :func:`_open_dir`), keeping an existing file's mode; a new file gets 0o666 less
    the umask, applied by the kernel (reading the umask would mean setting it, for
    every thread of the daemon). Returns the bytes written."""
    shown = str(path) if shown is None else shown
    try:
        return _write_text(workspace, path, content)
    except OSError as exc:
        raise _refused(exc, shown, "write") from exc


def _write_text(workspace: Path, path: Path, content: str) -> int:
    data = content.encode()
    parent = _open_dir(workspace, path.parent, create=True)
    try:
        try:
            info = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            mode: int | None = None
        else:
            if stat.S_ISLNK(info.st_mode):  # swapped in since it was resolved
                raise OSError(errno.ELOOP, "is a symlink")
            mode = info.st_mode & 0o7777
        tmp = f".{path.name}.mimir-{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=parent)  # left over from a write that failed half way
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(tmp, flags, 0o666 if mode is None else mode, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if mode is not None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=parent, dst_dir_fd=parent)
    finally:
        os.close(parent)
    return len(data)


__all__ = ["MAX_FILE_BYTES", "confine", "directory_inside", "read_text", "write_text"]
