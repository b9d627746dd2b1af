"""The file sandbox: reads and writes an agent asks for, inside its workspace only.

Synchronous throughout (run it in a thread). The workspace is *pinned*:
:meth:`Workspace.pin` opens its directory once, when the agent starts, and every
path is then resolved from that file descriptor, never from the workspace's path
again. A path is first resolved (:meth:`Workspace.confine`: symlinks followed one
by one, each target checked, ``..`` never above the pinned directory); the
directories on the way are then opened one component at a time without following
symlinks, so that a part swapped for a symlink between the check and the use (the
check-then-use race) fails the open instead of leading out of the workspace.
Writes are atomic (temp file + rename in the same directory).

**A workspace moved while its agent runs** (``mv $WS $WS.moved``, perhaps followed
by ``ln -s /elsewhere $WS``): reads, writes and terminals keep going to the pinned
directory, wherever it now is; what the path names now is never looked at. An
absolute path from the agent is taken as a path under the workspace's path as it
was pinned (the only one the agent knows), so it lands in the pinned directory too.
This was chosen over refusing: the directory still holds the session's work, and a
check that the path still names it would itself race with the next rename. No
lookup starts above the pinned directory, so nothing can land outside it.

Only regular files are read, and nothing else is replaced by a write: a FIFO, a
socket or a device is refused before it is opened, and the open itself never
blocks (``O_NONBLOCK``; ``fstat`` checks what was opened). Reads and writes are
bounded in size and in time (checked between chunks of :data:`CHUNK_BYTES`).

The OS's errors never leave this module: they become :class:`OutsideWorkspace`,
:class:`FileMissing`, :class:`FileRefused` or :class:`FileAccessFailed`, and each
boundary (ACP, JSON-RPC) maps those once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Final

from mimird.errors import FileAccessFailed, FileMissing, FileRefused, OutsideWorkspace

#: Files larger than this are not served to agents (they would be one huge line),
#: unless the caller gives another bound.
MAX_FILE_BYTES: Final = 32 * 1024 * 1024
#: Reads and writes go by chunks this large; the time bound is checked between them.
CHUNK_BYTES: Final = 1024 * 1024
#: Symlinks followed while resolving one path (Linux's own limit).
MAX_SYMLINKS: Final = 40

# O_NONBLOCK everywhere: opening a FIFO (or a file leased by another process) must
# fail or succeed at once, never wait in a thread that nobody can cancel.
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW

#: A path whose directories are not plain ones when opened: not a directory, or a
#: symlink swapped in after :meth:`Workspace.confine` checked the path.
_SWAPPED: Final = (
    "{}: a part of the path is not a directory (or became a symlink after it was checked); refused"
)

_KINDS: Final = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a read or write is given up: ``at`` on :func:`time.monotonic`'s clock
    (the thread doing the work has no trio clock), ``seconds`` for messages."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def check(self, doing: str, shown: str) -> None:
        if time.monotonic() > self.at:
            raise FileAccessFailed(
                f"{doing} {shown} took longer than {self.seconds:g} s ([supervision] "
                "file_timeout_s); given up",
                field="path",
            )


class Workspace:
    """A session's workspace, pinned: its directory held open by a file descriptor.

    ``names`` are the absolute paths by which the agent may name it (the path it
    was given and that path resolved, as they were when pinned). Close it (or leave
    its ``with`` block) once done; :meth:`borrow` gives a thread a copy of its own.
    """

    def __init__(self, fd: int, names: tuple[PurePosixPath, ...]) -> None:
        self.fd = fd
        self.names = names

    @classmethod
    def pin(cls, path: Path) -> Workspace:
        """Open the workspace at ``path``; :class:`FileAccessFailed` if it cannot be."""
        real = os.path.realpath(path)
        try:
            fd = os.open(real, _DIR_FLAGS)
        except OSError as exc:
            raise FileAccessFailed(
                f"cannot open the workspace {path}: {exc.strerror}", field="workspace"
            ) from exc
        names = tuple(dict.fromkeys((PurePosixPath(path), PurePosixPath(real))))
        return cls(fd, names)

    def borrow(self) -> Workspace:
        """The same workspace on a duplicate descriptor, for a thread to close when
        it is done: closing the pin meanwhile (the agent stopped) cannot pull the
        directory from under that thread, nor hand it a number reused by another
        file."""
        return Workspace(os.dup(self.fd), self.names)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def shown(self) -> str:
        """The workspace's path, for messages."""
        return str(self.names[-1])

    # ---- resolving --------------------------------------------------------------

    def confine(
        self,
        path: Any,
        field_name: str = "path",
        refusal: str = "Mimir only serves files inside it",
    ) -> PurePosixPath:
        """``path`` resolved (symlinks and ``..``) inside the workspace, relative to
        it (``.`` for the workspace itself). Relative paths are taken relative to the
        workspace, absolute ones must lie under one of its ``names``. Raises
        :class:`OutsideWorkspace` otherwise (and for what is not a path at all)."""
        if not isinstance(path, str) or not path or "\0" in path:
            raise OutsideWorkspace(f"{field_name} must be a non-empty path", field=field_name)
        outside = OutsideWorkspace(
            f"{path} is outside the session's workspace {self.shown}; {refusal}",
            field=field_name,
        )
        parts = self._beneath(path) if path.startswith("/") else PurePosixPath(path).parts
        if parts is None:
            raise outside
        try:
            return PurePosixPath(*self._resolve(parts, outside, path, field_name))
        except OSError as exc:
            raise _refused(exc, path, "resolve") from exc

    def _beneath(self, path: str) -> tuple[str, ...] | None:
        """The parts of absolute ``path`` below one of the workspace's names, or None."""
        parts = PurePosixPath(path).parts
        for name in self.names:
            if parts[: len(name.parts)] == name.parts:
                return parts[len(name.parts) :]
        return None

    def _resolve(
        self, parts: tuple[str, ...], outside: OutsideWorkspace, shown: str, field_name: str
    ) -> list[str]:
        """realpath(3) below the pinned directory: the names of the resolved path.

        Each directory on the way is opened (without following symlinks) and the
        next part looked up in it; a symlink's target is read and resolved in turn,
        an absolute one only if it lies under the workspace's names. Parts that do
        not exist (yet) are kept as they are, as realpath does."""
        names: list[str] = []
        #: Descriptors of the directories names[:1], names[:2], ... as far as opened.
        opened: list[int] = []
        todo = list(reversed(parts))
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if not names:
                        raise outside
                    names.pop()
                    if len(opened) > len(names):
                        os.close(opened.pop())
                    continue
                if len(opened) < len(names):  # below a part that is missing or a file
                    names.append(part)
                    continue
                parent = opened[-1] if opened else self.fd
                try:
                    info = os.stat(part, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    names.append(part)
                    continue
                if stat.S_ISLNK(info.st_mode):
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise OutsideWorkspace(
                            f"{shown}: too many levels of symbolic links", field=field_name
                        )
                    target = os.readlink(part, dir_fd=parent)
                    if target.startswith("/"):
                        rest = self._beneath(target)
                        if rest is None:
                            raise outside
                        names.clear()
                        while opened:
                            os.close(opened.pop())
                        todo.extend(reversed(rest))
                    else:
                        todo.extend(reversed(PurePosixPath(target).parts))
                    continue
                names.append(part)
                if stat.S_ISDIR(info.st_mode) and todo:
                    opened.append(os.open(part, _DIR_FLAGS, dir_fd=parent))
        finally:
            for fd in opened:
                os.close(fd)
        return names

    def _open_dir(self, parts: tuple[str, ...], *, create: bool = False) -> int:
        """A file descriptor of the directory ``parts`` (as :meth:`confine` resolved
        them) below the pinned one, opened one component at a time without following
        symlinks (``create``: making the missing ones). A component swapped for a
        symlink after :meth:`confine` resolved the path fails the open (``ELOOP``)
        instead of leading out of the workspace."""
        fd = os.open(".", _DIR_FLAGS, dir_fd=self.fd)
        try:
            for part in parts:
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

    def open_directory(self, path: Any, field_name: str, refusal: str) -> tuple[int, PurePosixPath]:
        """A directory inside the workspace (a terminal's ``cwd``): its descriptor
        (the caller closes it) and its path relative to the workspace.
        :class:`OutsideWorkspace` as :meth:`confine` says, :class:`FileRefused` when
        it is not a directory or does not exist."""
        relative = self.confine(path, field_name, refusal)
        try:
            return self._open_dir(relative.parts), relative
        except FileNotFoundError:
            raise FileRefused(f"{field_name} {path} does not exist", field=field_name) from None
        except NotADirectoryError:
            raise FileRefused(f"{field_name} {path} is not a directory", field=field_name) from None
        except OSError as exc:
            raise _refused(exc, str(path), "open", field_name) from exc

    # ---- reading and writing ----------------------------------------------------

    def read_text(
        self,
        relative: PurePosixPath,
        line: int | None,
        limit: int | None,
        *,
        shown: str | None = None,
        max_bytes: int = MAX_FILE_BYTES,
        deadline: Deadline | None = None,
    ) -> str:
        """The text of ``relative`` (resolved by :meth:`confine`), from 1-based
        ``line``, at most ``limit`` lines. ``shown`` is the path as the agent gave
        it, for messages. A regular file only, of at most ``max_bytes``."""
        shown = str(relative) if shown is None else shown
        if not relative.parts:
            raise FileRefused(f"{shown} is a directory", field="path")
        try:
            data = self._read(relative.parts, shown, max_bytes, deadline)
        except FileNotFoundError:
            raise FileMissing(f"{shown} does not exist", field="path") from None
        except OSError as exc:
            raise _refused(exc, shown, "read") from exc
        text = data.decode("utf-8", errors="replace")
        if line is None and limit is None:
            return text
        lines = text.splitlines(keepends=True)
        start = max((line or 1) - 1, 0)
        end = len(lines) if limit is None else start + max(limit, 0)
        return "".join(lines[start:end])

    def _read(
        self, parts: tuple[str, ...], shown: str, max_bytes: int, deadline: Deadline | None
    ) -> bytes:
        parent = self._open_dir(parts[:-1])
        try:
            # Looked at before it is opened: a device is never opened at all.
            _regular(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False), shown)
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
        with open(fd, "rb", buffering=0) as file:
            info = os.fstat(fd)
            _regular(info, shown)  # what was opened, whatever was swapped in meanwhile
            too_large = FileRefused(
                f"{shown} is larger than {max_bytes} bytes, the most Mimir serves "
                "([supervision] file_max_bytes)",
                field="path",
            )
            if info.st_size > max_bytes:
                raise too_large
            data = bytearray()
            while True:
                if deadline is not None:
                    deadline.check("reading", shown)
                chunk = file.read(min(CHUNK_BYTES, max_bytes + 1 - len(data)))
                if not chunk:
                    return bytes(data)
                data += chunk
                if len(data) > max_bytes:  # it grew while being read
                    raise too_large

    def write_text(
        self,
        relative: PurePosixPath,
        content: str,
        *,
        shown: str | None = None,
        max_bytes: int = MAX_FILE_BYTES,
        deadline: Deadline | None = None,
    ) -> int:
        """Write atomically (temp file + rename, both inside the directory opened by
        :meth:`_open_dir`), keeping an existing file's mode; a new file gets 0o666
        less the umask, applied by the kernel (reading the umask would mean setting
        it, for every thread of the daemon). Returns the bytes written. Only a
        regular file (or nothing) is replaced. A write past ``deadline`` is given up
        before the rename: the file is then as it was."""
        shown = str(relative) if shown is None else shown
        try:
            data = content.encode()
        except UnicodeEncodeError:
            raise FileRefused(
                f"the content for {shown} is not valid Unicode text (it holds a lone "
                "surrogate); nothing was written",
                field="content",
            ) from None
        if len(data) > max_bytes:
            raise FileRefused(
                f"the content for {shown} is {len(data)} bytes; at most {max_bytes} are "
                "written ([supervision] file_max_bytes)",
                field="content",
            )
        if not relative.parts:
            raise FileRefused(f"{shown} is a directory", field="path")
        try:
            return self._write(relative.parts, data, shown, deadline)
        except OSError as exc:
            raise _refused(exc, shown, "write") from exc

    def _write(
        self, parts: tuple[str, ...], data: bytes, shown: str, deadline: Deadline | None
    ) -> int:
        name = parts[-1]
        parent = self._open_dir(parts[:-1], create=True)
        try:
            try:
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                mode: int | None = None
            else:
                _regular(info, shown)
                mode = info.st_mode & 0o7777
            # One name per thread: two writes of one file at once never share a temp file.
            tmp = f".{name}.mimir-{os.getpid()}-{threading.get_ident()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)  # left over from a write that failed half way
            fd = os.open(tmp, _TEMP_FLAGS, 0o666 if mode is None else mode, dir_fd=parent)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        if deadline is not None:
                            deadline.check("writing", shown)
                        view = view[os.write(fd, view[:CHUNK_BYTES]) :]
                    if mode is not None:
                        os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                if deadline is not None:
                    deadline.check("writing", shown)
                os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent)
                raise
        finally:
            os.close(parent)
        return len(data)


def _regular(info: os.stat_result, shown: str) -> None:
    """Refuse what is not a regular file (a symlink here was swapped in since the
    path was resolved: the same refusal as a swapped directory)."""
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISLNK(mode):
        raise OSError(errno.ELOOP, "is a symlink")
    if stat.S_ISDIR(mode):
        raise FileRefused(f"{shown} is a directory", field="path")
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise FileRefused(
        f"{shown} is {kind}; Mimir reads and replaces regular files only", field="path"
    )


def _refused(exc: OSError, shown: str, doing: str, field_name: str = "path") -> Exception:
    """The domain error for an OSError met while ``doing`` (read, write) ``shown``."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return OutsideWorkspace(_SWAPPED.format(shown), field=field_name)
    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
        return FileAccessFailed(
            f"cannot {doing} {shown} now: another process holds a lease or lock on it",
            field=field_name,
        )
    return FileAccessFailed(f"cannot {doing} {shown}: {exc.strerror}", field=field_name)


__all__ = ["CHUNK_BYTES", "MAX_FILE_BYTES", "MAX_SYMLINKS", "Deadline", "Workspace"]
