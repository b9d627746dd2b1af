"""mimird.workspaces.compare: two members' work, or each against the base, file by file,
with totals and a text diff bounded in bytes. Real repositories and worktrees."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pytest

from mimird.errors import InvalidParams
from mimird.workspaces.compare import against_base, compare, work_tree
from mimird.workspaces.git import add_worktree, resolve_commit
from tests.support.helpers import git, make_repo, write

BASE: Final = {
    "README.md": "hello\n",
    "src/app.py": "".join(f"line {i}\n" for i in range(20)),
    "docs/old-name.md": "".join(f"doc line {i}\n" for i in range(30)),
    "gone.txt": "bye\n",
    "*": "a file named star\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", BASE)


def member(repo: Path, tmp_path: Path, slot: str) -> Path:
    path = tmp_path / "worktrees" / slot
    add_worktree(repo, path, f"run/{slot}", resolve_commit(repo, "main"))
    return path


def change_everything(worktree: Path) -> None:
    """Added (untracked), modified, deleted, renamed and binary, none of it committed."""
    write(
        worktree,
        {
            "new.txt": "one\ntwo\n",
            "src/app.py": "".join(f"line {i}\n" for i in range(20)).replace("line 3\n", "THREE\n"),
            "blob.bin": b"\0\x01\x02binary",
        },
    )
    (worktree / "gone.txt").unlink()
    os.rename(worktree / "docs/old-name.md", worktree / "docs/new-name.md")


def test_a_members_work_against_the_base_file_by_file_with_totals(
    repo: Path, tmp_path: Path
) -> None:
    one = member(repo, tmp_path, "1")
    change_everything(one)
    before = git(one, "status", "--porcelain")
    result = compare(repo, "main", work_tree(one))
    by_path = {f.path: f for f in result.files}
    assert {p: (f.status, f.insertions, f.deletions, f.binary) for p, f in by_path.items()} == {
        "new.txt": ("added", 2, 0, False),
        "src/app.py": ("modified", 1, 1, False),
        "gone.txt": ("deleted", 0, 1, False),
        "docs/new-name.md": ("renamed", 0, 0, False),
        "blob.bin": ("added", 0, 0, True),
    }
    assert by_path["docs/new-name.md"].old_path == "docs/old-name.md"
    assert (result.files_changed, result.insertions, result.deletions) == (5, 3, 2)
    assert result.patches is None
    assert git(one, "status", "--porcelain") == before  # the worktree is not touched


def test_two_members_are_compared_with_each_other(repo: Path, tmp_path: Path) -> None:
    one, two = member(repo, tmp_path, "1"), member(repo, tmp_path, "2")
    write(one, {"answer.py": "x = 1\n"})
    write(two, {"answer.py": "x = 2\ny = 3\n", "extra.py": "z\n"})
    result = compare(repo, work_tree(one), work_tree(two))
    assert [(f.path, f.status, f.insertions, f.deletions) for f in result.files] == [
        ("answer.py", "modified", 2, 1),
        ("extra.py", "added", 1, 0),
    ]


def test_each_file_gets_its_own_patch_in_order(repo: Path, tmp_path: Path) -> None:
    one = member(repo, tmp_path, "1")
    change_everything(one)
    result = compare(repo, "main", work_tree(one), patch=True)
    assert result.patches is not None
    assert [p.path for p in result.patches] == [f.path for f in result.files]
    by_path = {p.path: p for p in result.patches}
    assert "-line 3\n+THREE\n" in by_path["src/app.py"].text
    assert by_path["src/app.py"].text.startswith("diff --git a/src/app.py b/src/app.py\n")
    assert "Binary files" in by_path["blob.bin"].text
    assert "rename from docs/old-name.md" in by_path["docs/new-name.md"].text
    assert not result.patch_truncated
    assert not any(p.truncated for p in result.patches)


def test_a_patch_over_the_bound_is_cut_and_says_so(repo: Path, tmp_path: Path) -> None:
    one = member(repo, tmp_path, "1")
    write(one, {"a-big.txt": "".join(f"row {i}\n" for i in range(100_000)), "z.txt": "z\n"})
    result = compare(repo, "main", work_tree(one), patch=True, max_patch_bytes=4096)
    assert result.patch_truncated
    assert result.patches is not None
    assert [p.path for p in result.patches] == ["a-big.txt"]
    assert result.patches[0].truncated
    assert len(result.patches[0].text.encode()) <= 4096
    # The file list and totals are whole all the same.
    assert [f.path for f in result.files] == ["a-big.txt", "z.txt"]
    assert result.insertions == 100_001


def test_paths_limit_the_comparison_and_are_taken_literally(repo: Path, tmp_path: Path) -> None:
    one = member(repo, tmp_path, "1")
    write(one, {"*": "changed\n", "src/app.py": "short\n", "other.txt": "o\n"})
    result = compare(repo, "main", work_tree(one), paths=["*"])
    assert [f.path for f in result.files] == ["*"]
    result = compare(repo, "main", work_tree(one), paths=["src"])
    assert [f.path for f in result.files] == ["src/app.py"]


def test_each_member_against_the_base_shares_one_byte_bound(repo: Path, tmp_path: Path) -> None:
    one, two = member(repo, tmp_path, "1"), member(repo, tmp_path, "2")
    write(one, {"one.txt": "".join(f"{i}\n" for i in range(2000))})
    write(two, {"two.txt": "2\n"})
    heads = {"1": work_tree(one), "2": work_tree(two)}
    found = against_base(repo, "main", heads, patch=True, max_patch_bytes=2048)
    assert [f.path for f in found["1"].files] == ["one.txt"]
    assert [f.path for f in found["2"].files] == ["two.txt"]
    assert found["1"].patch_truncated
    assert found["2"].patch_truncated
    assert found["2"].patches == []


@pytest.mark.parametrize("rev", ["-p", "--output=/tmp/owned", "", "a\0b"])
def test_revisions_that_git_would_take_for_options_are_refused(repo: Path, rev: str) -> None:
    with pytest.raises(InvalidParams):
        compare(repo, rev, "main")
    assert not Path("/tmp/owned").exists()


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "", "a/../../b"])
def test_paths_outside_the_repository_are_refused(repo: Path, path: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        compare(repo, "main", "main", paths=[path])
    assert caught.value.field == "paths"


def test_a_revision_that_does_not_exist_is_invalid_params(repo: Path) -> None:
    with pytest.raises(InvalidParams, match="cannot compare"):
        compare(repo, "main", "no-such-branch")
