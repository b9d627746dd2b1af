"""A real daemon with one session of a real agent under a tool policy, and a prompt
whose permission request waits, for the agents tier's policy tests (codex, gemini)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from tests.support.agents import Client
from tests.support.helpers import DaemonDirs, in_process_daemon, make_repo


@asynccontextmanager
async def policy_session(
    dirs: DaemonDirs,
    kind: str,
    section: str,
    files: Mapping[str, str],
    tool_policy: dict[str, Any],
) -> AsyncIterator[tuple[Client, str, Path]]:
    """A daemon whose config is ``section`` (the kind's ``[agents.<kind>]``) with
    ``kind`` as the default agent, and a session under ``tool_policy`` in a worktree
    of a repository holding ``files``: (the client, the session's id, its worktree).
    The session is stopped, and the daemon shut down, at the end."""
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(f'[defaults]\nagent = "{kind}"\n\n' + section)
    repo = make_repo(dirs.root / "repo", dict(files))
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as c:
        await c.call("project.add", {"path": str(repo), "name": "demo"})
        session = await c.call(
            "session.create",
            {"project": "demo", "title": kind, "config": {"tool_policy": tool_policy}},
        )
        assert session["agent"] == kind
        try:
            yield c, session["id"], Path(session["workspace"]["path"])
        finally:
            await c.call("session.stop", {"session": session["id"]})


@asynccontextmanager
async def asked(
    c: Client, session_id: str, text: str
) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Prompt ``text``, and yield once the agent's permission request waits: (the
    request as ``permission.list`` shows it, its ``permission_requested`` data, the
    prompt's result, filled once the block is left and the turn has ended). The block
    must get the request answered."""
    result: dict[str, Any] = {}

    async def prompt() -> None:
        result.update(await c.call("session.prompt", {"session": session_id, "text": text}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(prompt)
        listed = await c.until(
            "permission.list", {"session": session_id}, lambda r: r["permissions"]
        )
        [pending] = listed["permissions"]
        # Listed a moment before it is journaled (docs/api.md, Permission requests).
        events = {"session": session_id, "kind": "permission_requested"}
        found = await c.until("session.events", events, lambda r: r["events"])
        [requested] = [e["data"] for e in found["events"]]
        assert requested["permission"] == pending["id"]
        yield pending, requested, result
