"""The agent's file reads and writes through Mimir, at the level of the sandbox
that does them (:class:`mimird.workspaces.files.Workspace`): a path checked by
``confine`` and then swapped for a symlink before it is opened (the check-then-use
race) must not lead out of the workspace; nor may the workspace itself, moved and
replaced by a symlink once pinned; only regular files are read or replaced, and
reads and writes are bounded in size and time."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from mimird.errors import FileAccessFailed, FileMissing, FileRefused, OutsideWorkspace
from mimird.workspaces.files import Deadline, Workspace

#: Mimir's words for a path whose parts were swapped after the check.
REFUSED = "a part of the path is not a directory"


def _errno(refusal: OutsideWorkspace) -> int | None:
    """The errno of the OS error the sandbox turned into ``refusal``."""
    cause = refusal.__cause__
    assert isinstance(cause, OSError), cause
    return cause.errno


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("inside\n")
    return root


@pytest.fixture
def workspace(root: Path) -> Iterator[Workspace]:
    with Workspace.pin(root) as pinned:
        yield pinned


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    elsewhere = tmp_path / "outside"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_text("secret\n")
    return elsewhere


def swap_for_symlink(path: Path, target: Path) -> None:
    """What a racing agent would do between the check and the open."""
    path.rename(path.with_name(path.name + ".moved"))
    path.symlink_to(target)


def test_reads_and_writes_inside_the_workspace(root: Path, workspace: Workspace) -> None:
    path = workspace.confine("src/a.txt")
    assert path == PurePosixPath("src/a.txt")
    assert workspace.read_text(path, None, None) == "inside\n"
    assert workspace.read_text(workspace.confine(f"{root}/src/a.txt"), None, None) == "inside\n"
    new = workspace.confine("src/deeper/new.txt")
    assert workspace.write_text(new, "made\n") == 5
    assert (root / "src" / "deeper" / "new.txt").read_text() == "made\n"
    assert sorted(os.listdir(root / "src" / "deeper")) == ["new.txt"], "no temp file left"


def test_a_symlink_inside_the_workspace_is_followed_by_confine(
    root: Path, workspace: Workspace
) -> None:
    (root / "link").symlink_to(root / "src")
    (root / "rel").symlink_to("src/../src/a.txt")
    assert workspace.confine("link/a.txt") == PurePosixPath("src/a.txt")
    assert workspace.confine("rel") == PurePosixPath("src/a.txt")
    assert workspace.read_text(workspace.confine("link/a.txt"), None, None) == "inside\n"


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(
    root: Path, workspace: Workspace, outside: Path
) -> None:
    read = workspace.confine("src/a.txt")
    write = workspace.confine("src/a.txt")
    swap_for_symlink(root / "src", outside)
    with pytest.raises(OutsideWorkspace, match=REFUSED) as reading:
        workspace.read_text(read, None, None)
    assert _errno(reading.value) in (errno.ELOOP, errno.ENOTDIR)
    with pytest.raises(OutsideWorkspace, match=REFUSED) as writing:
        workspace.write_text(write, "overwritten\n")
    assert _errno(writing.value) in (errno.ELOOP, errno.ENOTDIR)
    assert (outside / "a.txt").read_text() == "secret\n"
    assert sorted(os.listdir(outside)) == ["a.txt"], "no temp file left outside either"


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(
    root: Path, workspace: Workspace, outside: Path
) -> None:
    path = workspace.confine("src/a.txt")
    swap_for_symlink(root / "src" / "a.txt", outside / "a.txt")
    with pytest.raises(OutsideWorkspace, match=REFUSED) as reading:
        workspace.read_text(path, None, None)
    assert _errno(reading.value) == errno.ELOOP
    with pytest.raises(OutsideWorkspace, match=REFUSED) as writing:
        workspace.write_text(path, "overwritten\n")
    assert _errno(writing.value) == errno.ELOOP
    assert (outside / "a.txt").read_text() == "secret\n"


def test_confine_refuses_what_resolves_outside(
    root: Path, workspace: Workspace, outside: Path
) -> None:
    (root / "out").symlink_to(outside)
    (root / "up").symlink_to("..")
    (root / "abs").symlink_to(outside / "a.txt")
    (root / "loop").symlink_to("loop")
    for path in (
        "out/a.txt",
        "../outside/a.txt",
        str(outside / "a.txt"),
        f"{root}/../outside/a.txt",
        "up/outside/a.txt",
        "abs",
        "src/../../outside",
    ):
        with pytest.raises(OutsideWorkspace) as refused:
            workspace.confine(path)
        assert "outside the session's workspace" in refused.value.message, path
    with pytest.raises(OutsideWorkspace, match="too many levels of symbolic links"):
        workspace.confine("loop")


def test_the_pinned_workspace_moved_and_replaced_by_a_symlink_keeps_everything_inside(
    root: Path, workspace: Workspace, outside: Path
) -> None:
    """``mv $WS $WS.moved && ln -s /elsewhere $WS`` while the agent runs: reads and
    writes, relative or absolute (under the old path), go to the pinned directory."""
    swap_for_symlink(root, outside)
    moved = root.with_name("ws.moved")
    for given in ("new.txt", f"{root}/abs.txt", f"{root}/src/a.txt"):
        relative = workspace.confine(given)
        workspace.write_text(relative, f"{given}\n")
    assert workspace.read_text(workspace.confine(f"{root}/new.txt"), None, None) == "new.txt\n"
    assert (moved / "new.txt").read_text() == "new.txt\n"
    assert (moved / "abs.txt").read_text() == f"{root}/abs.txt\n"
    assert (moved / "src" / "a.txt").read_text() == f"{root}/src/a.txt\n"
    assert sorted(os.listdir(outside)) == ["a.txt"]
    assert (outside / "a.txt").read_text() == "secret\n"
    with pytest.raises(OutsideWorkspace):
        workspace.confine(str(outside / "a.txt"))


def test_only_regular_files_are_read(root: Path, workspace: Workspace) -> None:
    os.mkfifo(root / "fifo")
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as sock:
        sock.bind(str(root / "sock"))
        for name, kind in (("fifo", "a named pipe (FIFO)"), ("sock", "a socket")):
            with pytest.raises(FileRefused, match=re.escape(f"{name} is {kind}; Mimir reads")):
                workspace.read_text(workspace.confine(name), None, None, shown=name)
            with pytest.raises(FileRefused, match=re.escape(f"{name} is {kind}; Mimir reads")):
                workspace.write_text(workspace.confine(name), "x", shown=name)
    with pytest.raises(FileRefused, match="src is a directory"):
        workspace.read_text(workspace.confine("src"), None, None, shown="src")
    with pytest.raises(FileRefused, match="is a directory"):
        workspace.read_text(workspace.confine("."), None, None)
    with (
        Workspace.pin(Path("/dev")) as dev,
        pytest.raises(FileRefused, match="null is a character device"),
    ):
        dev.read_text(dev.confine("null"), None, None, shown="null")
    assert (root / "fifo").exists()
    assert sorted(os.listdir(root)) == ["fifo", "sock", "src"], "nothing replaced or left"


def test_reads_and_writes_are_bounded_in_size(root: Path, workspace: Workspace) -> None:
    (root / "big.txt").write_text("x" * 2000)
    with pytest.raises(FileRefused, match="larger than 1024 bytes"):
        workspace.read_text(workspace.confine("big.txt"), None, None, max_bytes=1024)
    with pytest.raises(FileRefused, match="2000 bytes; at most 1024"):
        workspace.write_text(workspace.confine("new.txt"), "y" * 2000, max_bytes=1024)
    assert not (root / "new.txt").exists()
    assert len(workspace.read_text(workspace.confine("big.txt"), None, None)) == 2000


def test_a_read_or_write_past_its_deadline_is_given_up_and_changes_nothing(
    root: Path, workspace: Workspace
) -> None:
    past = Deadline(time.monotonic() - 1, 30)
    path = workspace.confine("src/a.txt")
    with pytest.raises(FileAccessFailed, match="took longer than 30 s"):
        workspace.read_text(path, None, None, deadline=past)
    with pytest.raises(FileAccessFailed, match="took longer than 30 s"):
        workspace.write_text(path, "changed\n", deadline=past)
    assert (root / "src" / "a.txt").read_text() == "inside\n"
    assert sorted(os.listdir(root / "src")) == ["a.txt"], "the temp file is gone"


def test_a_closed_pin_is_not_needed_by_a_borrowed_copy(root: Path) -> None:
    pinned = Workspace.pin(root)
    borrowed = pinned.borrow()
    pinned.close()
    with borrowed:
        assert borrowed.read_text(borrowed.confine("src/a.txt"), None, None) == "inside\n"


def test_the_sandbox_raises_domain_errors_not_os_errors(workspace: Workspace) -> None:
    with pytest.raises(FileMissing, match=r"missing\.txt does not exist"):
        workspace.read_text(workspace.confine("missing.txt"), None, None, shown="missing.txt")
    with pytest.raises(OutsideWorkspace, match="must be a non-empty path"):
        workspace.confine("bad\0path")
    with pytest.raises(FileRefused, match="not valid Unicode"):
        workspace.write_text(workspace.confine("s.txt"), "\ud800")
    with pytest.raises(FileRefused, match="does not exist"):
        workspace.open_directory("nope", "cwd", "terminals run only inside it")
    with pytest.raises(FileRefused, match=r"cwd src/a\.txt is not a directory"):
        workspace.open_directory("src/a.txt", "cwd", "terminals run only inside it")
