"""What the session tests (tests/test_sessions_*.py, one module per topic) share: git
helpers, calls to the daemon, session helpers.

Every test talks to an in-process daemon on a real socket and database; projects
are git repositories made in temporary directories, and what git and the disk
hold afterwards is checked with git itself. The git layer has its own unit tests
(tests/workspaces/test_worktrees.py) and mimirctl its own
(tests/mimirctl/test_mimirctl_sessions.py); these prove the behaviour a client of the API sees.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import trio

from tests.support.helpers import (
    GIT_ENV,
    GIT_IDENTITY,
    GIT_TIMEOUT_S,
    DaemonDirs,
    TrioClient,
    git,
    in_process_daemon,
    write,
)

CALL_TIMEOUT_S: Final = 30
#: A secret that must never show itself, and one for the session layer.
PROJECT_SECRET: Final = "hunter2-project-7f3a9c"
SESSION_SECRET: Final = "swordfish-session-4b1e8d"
CONCURRENT_CREATES: Final = 10
POLL_S: Final = 0.05


# ---- git -------------------------------------------------------------------------------------


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return head(root)


def git_exit_code(cwd: Path, *args: str) -> int:
    return subprocess.run(
        ["git", *GIT_IDENTITY, *args],
        cwd=cwd,
        env=GIT_ENV,
        capture_output=True,
        check=False,
        timeout=GIT_TIMEOUT_S,
    ).returncode


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def branch_tip(root: Path, branch: str) -> str | None:
    if git_exit_code(root, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}") != 0:
        return None
    return git(root, "rev-parse", f"refs/heads/{branch}").strip()


def branches(root: Path) -> list[str]:
    return sorted(git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def git_worktrees(root: Path) -> list[Path]:
    """The paths `git worktree list` shows, the main checkout first."""
    return [
        Path(line.removeprefix("worktree "))
        for line in git(root, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def files_of(root: Path) -> dict[str, bytes]:
    """Every file and symlink under ``root`` (``.git`` left out): path -> bytes (a link's
    target, prefixed so that it cannot equal a file's content) and mode."""
    found: dict[str, bytes] = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        links = [d for d in dirs if os.path.islink(os.path.join(directory, d))]
        for name in [*(n for n in names if n != ".git"), *links]:
            path = Path(directory, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = b"symlink -> " + os.fsencode(os.readlink(path))
            else:
                mode = stat.S_IMODE(path.stat().st_mode) & 0o111
                found[rel] = path.read_bytes() + f"\n[exec bits {mode:o}]".encode()
    return found


def main_checkout_state(root: Path) -> tuple[dict[str, bytes], bytes, str, str]:
    """The user's checkout: its files, its index file, its status and HEAD."""
    return (
        files_of(root),
        (root / ".git" / "index").read_bytes(),
        git(root, "status", "--porcelain=v2", "--branch", "--untracked-files=all"),
        head(root),
    )


# ---- the daemon ------------------------------------------------------------------------------


async def call(client: TrioClient, method: str, params: Any = None) -> Any:
    with trio.fail_after(CALL_TIMEOUT_S):
        return await client.call(method, params)


async def error_of(client: TrioClient, method: str, params: Any) -> dict[str, Any]:
    with trio.fail_after(CALL_TIMEOUT_S):
        response = await client.call_raw(method, params)
    assert "result" not in response, response
    error: dict[str, Any] = response["error"]
    return error


@contextlib.asynccontextmanager
async def daemon_with_config(dirs: DaemonDirs, config: str) -> AsyncIterator[TrioClient]:
    """An in-process daemon started with this config file, and a client of it."""
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(config)
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as client:
        yield client


async def create(client: TrioClient, project: dict[str, Any], **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await call(
        client, "session.create", {"project": project["id"], **params}
    )
    return result


async def get(client: TrioClient, session: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await call(client, "session.get", {"session": session["id"]})
    return result


async def events(client: TrioClient, session: dict[str, Any]) -> list[dict[str, Any]]:
    result = await call(client, "session.events", {"session": session["id"]})
    found: list[dict[str, Any]] = result["events"]
    return found


async def all_sessions(client: TrioClient, **params: Any) -> list[dict[str, Any]]:
    """Every session the filters select, following every cursor."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await call(
            client, "session.list", {**params, **({"cursor": cursor} if cursor else {})}
        )
        found += page["sessions"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def workspace(session: dict[str, Any]) -> Path:
    return Path(session["workspace"]["path"])


def without_git(session: dict[str, Any]) -> dict[str, Any]:
    """The session without what only session.get computes: its git status and usage."""
    return {k: v for k, v in session.items() if k not in ("git", "usage")}


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return [event["kind"] for event in found]


# ---- shared by several topics ----------------------------------------------------------


def fail_post_checkout(repo: Path) -> Path:
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    return hook


def make_work(path: Path) -> None:
    """Every kind of change a session's worktree can hold."""
    (path / "README.md").write_text("hello\nchanged by the agent\n")  # modified
    (path / "src" / "app.py").unlink()  # deleted
    write(path, {"staged.txt": "staged\n"})
    git(path, "add", "staged.txt")  # new, in the index
    write(
        path,
        {
            "notes/untracked.md": "untracked\n",  # new, untracked, in a new directory
            "blob.bin": bytes(range(256)) * 4,  # binary
            "crlf.txt": b"windows\r\nline endings\r\n",
        },
    )
    (path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (path / "run.sh").chmod(0o755)  # executable
    (path / "link").symlink_to("README.md")  # a symlink


async def archived(client: TrioClient, session: dict[str, Any]) -> None:
    await call(client, "session.archive", {"session": session["id"]})


async def deleted(client: TrioClient, session: dict[str, Any]) -> None:
    await call(client, "session.delete", {"session": session["id"]})


async def stored(client: TrioClient, session: dict[str, Any]) -> dict[str, Any]:
    """What is stored of a session, as a client can see it."""
    return {
        "session": without_git(await get(client, session)),
        "events": await events(client, session),
    }


async def untouched(client: TrioClient, session: dict[str, Any]) -> None:
    pass
