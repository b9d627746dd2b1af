"""The agent's file reads and writes through Mimir, at the level of the functions
that do them: a path checked by ``confine`` and then swapped for a symlink before
it is opened (the check-then-use race) must not lead out of the workspace."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mimird.errors import OutsideWorkspace
from mimird.workspaces.files import confine, read_text, write_text

#: Mimir's words for a path whose parts were swapped after the check.
REFUSED = "a part of the path is not a directory"


def _errno(refusal: OutsideWorkspace) -> int | None:
    """The errno of the OS error the sandbox turned into ``refusal``."""
    cause = refusal.__cause__
    assert isinstance(cause, OSError), cause
    return cause.errno


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("inside\n")
    return root


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


def test_reads_and_writes_inside_the_workspace(workspace: Path) -> None:
    path = confine(workspace, "src/a.txt")
    assert read_text(workspace, path, None, None) == "inside\n"
    new = confine(workspace, "src/deeper/new.txt")
    assert write_text(workspace, new, "made\n") == 5
    assert (workspace / "src" / "deeper" / "new.txt").read_text() == "made\n"


def test_a_symlink_inside_the_workspace_is_followed_by_confine(workspace: Path) -> None:
    (workspace / "link").symlink_to(workspace / "src")
    path = confine(workspace, "link/a.txt")
    assert path == (workspace / "src" / "a.txt").resolve()
    assert read_text(workspace, path, None, None) == "inside\n"


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(
    workspace: Path, outside: Path
) -> None:
    read = confine(workspace, "src/a.txt")
    write = confine(workspace, "src/a.txt")
    swap_for_symlink(workspace / "src", outside)
    with pytest.raises(OutsideWorkspace, match=REFUSED) as reading:
        read_text(workspace, read, None, None)
    assert _errno(reading.value) in (errno.ELOOP, errno.ENOTDIR)
    with pytest.raises(OutsideWorkspace, match=REFUSED) as writing:
        write_text(workspace, write, "overwritten\n")
    assert _errno(writing.value) in (errno.ELOOP, errno.ENOTDIR)
    assert (outside / "a.txt").read_text() == "secret\n"
    assert sorted(os.listdir(outside)) == ["a.txt"], "no temp file left outside either"


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(
    workspace: Path, outside: Path
) -> None:
    path = confine(workspace, "src/a.txt")
    swap_for_symlink(workspace / "src" / "a.txt", outside / "a.txt")
    with pytest.raises(OutsideWorkspace, match=REFUSED) as reading:
        read_text(workspace, path, None, None)
    assert _errno(reading.value) == errno.ELOOP
    with pytest.raises(OutsideWorkspace, match=REFUSED) as writing:
        write_text(workspace, path, "overwritten\n")
    assert _errno(writing.value) == errno.ELOOP
    assert (outside / "a.txt").read_text() == "secret\n"


def test_confine_refuses_what_resolves_outside(workspace: Path, outside: Path) -> None:
    (workspace / "out").symlink_to(outside)
    for path in ("out/a.txt", "../outside/a.txt", str(outside / "a.txt")):
        with pytest.raises(OutsideWorkspace) as refused:
            confine(workspace, path)
        assert "outside the session's workspace" in refused.value.message
