"""Secrets (Invariant 9) never show in answers, events or logs of sessions.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import trio

from tests.support.helpers import (
    DaemonDirs,
    TrioClient,
    add_project,
    blocking_call,
    daemon_process,
)
from tests.support.sessions import (
    CALL_TIMEOUT_S,
    PROJECT_SECRET,
    SESSION_SECRET,
    call,
    create,
    daemon_with_config,
    events,
    get,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


# ---- secrets (Invariant 9) -------------------------------------------------------------------

#: Echoes both secrets, and writes their hashes where the test can check them.
ECHO_SECRETS: Final = (
    'echo "project=$SECRET_P session=$SECRET_S"; '
    'printf %s "$SECRET_P" | sha256sum > p.sha; '
    'printf %s "$SECRET_S" | sha256sum > s.sha'
)


def sha256_line(text: str) -> str:
    return f"{hashlib.sha256(text.encode()).hexdigest()}  -\n"


def secret_env(name: str, value: str) -> dict[str, Any]:
    return {"env": {name: {"value": value, "secret": True}}}


async def secret_session(
    client: TrioClient, repo: Path, command: str = ECHO_SECRETS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A project and a session with a secret env value each, whose setup command runs."""
    project = await add_project(
        client,
        repo,
        config={**secret_env("SECRET_P", PROJECT_SECRET), "setup_command": command},
    )
    session = await create(client, project, config=secret_env("SECRET_S", SESSION_SECRET))
    return project, session


def assert_no_secret(text: str) -> None:
    assert PROJECT_SECRET not in text
    assert SESSION_SECRET not in text


async def raw(client: TrioClient, method: str, params: Any) -> str:
    with trio.fail_after(CALL_TIMEOUT_S):
        response = await client.call_raw(method, params)
    return msgspec.json.encode(response).decode()


async def test_the_setup_command_receives_the_secrets_in_clear(
    client: TrioClient, repo: Path
) -> None:
    _, session = await secret_session(client, repo)
    assert session["status"] == "created"
    assert (workspace(session) / "p.sha").read_text() == sha256_line(PROJECT_SECRET)
    assert (workspace(session) / "s.sha").read_text() == sha256_line(SESSION_SECRET)


READS: Final = [
    "session.get",
    "session.list",
    "session.config",
    "session.events",
    "project.get",
    "project.list",
    "worktree.list",
]


@pytest.mark.parametrize("method", READS)
async def test_secrets_never_appear_in_an_answer(
    client: TrioClient, repo: Path, method: str
) -> None:
    project, session = await secret_session(client, repo)
    params = {
        "session.get": {"session": session["id"]},
        "session.list": {},
        "session.config": {"session": session["id"]},
        "session.events": {"session": session["id"]},
        "project.get": {"project": project["id"]},
        "project.list": {},
        "worktree.list": {},
    }[method]
    text = await raw(client, method, params)
    assert_no_secret(text)
    assert "***" in text or method == "worktree.list"


async def test_the_create_answer_shows_secrets_masked(client: TrioClient, repo: Path) -> None:
    _, session = await secret_session(client, repo)
    assert_no_secret(msgspec.json.encode(session).decode())
    assert session["config"]["env"] == {"SECRET_S": "***"}


async def test_setup_output_is_journaled_with_secrets_replaced(
    client: TrioClient, repo: Path
) -> None:
    _, session = await secret_session(client, repo)
    output = "".join(
        e["data"]["text"] for e in await events(client, session) if e["kind"] == "setup_output"
    )
    assert output == "project=*** session=***\n"


async def test_a_secret_written_in_two_pieces_is_still_not_journaled(
    client: TrioClient, repo: Path
) -> None:
    # The pause makes the daemon read the first half before the second is written.
    command = 'printf %s "$SECRET_P" | head -c 7; sleep 1; printf "%s\\n" "$SECRET_P" | tail -c +8'
    _, session = await secret_session(client, repo, command)
    output = "".join(
        e["data"]["text"] for e in await events(client, session) if e["kind"] == "setup_output"
    )
    assert_no_secret(output)


async def test_secrets_never_reach_the_audit_log(
    client: TrioClient, dirs: DaemonDirs, repo: Path
) -> None:
    _, session = await secret_session(client, repo)
    await call(
        client,
        "session.update",
        {"session": session["id"], "config": secret_env("SECRET_S", SESSION_SECRET + "-v2")},
    )
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=CALL_TIMEOUT_S)) as db:
        rows = db.execute("SELECT * FROM audit_log").fetchall()
        stored_events = db.execute("SELECT kind, data FROM events").fetchall()
    assert {row[4] for row in rows} >= {"project.add", "session.create", "session.update"}
    assert_no_secret(repr(rows))
    assert (SESSION_SECRET + "-v2") not in repr(rows)
    assert_no_secret(repr(stored_events))


async def test_a_masked_secret_sent_back_keeps_its_value(
    client: TrioClient, dirs: DaemonDirs, repo: Path
) -> None:
    _, session = await secret_session(client, repo)
    shown = (await get(client, session))["config"]
    await call(
        client,
        "session.update",
        {"session": session["id"], "config": {**shown, "token_budget": 7}},
    )
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=CALL_TIMEOUT_S)) as db:
        [(stored,)] = db.execute(
            "SELECT config FROM sessions WHERE id = ?", (session["id"],)
        ).fetchall()
    assert msgspec.json.decode(stored) == {
        **secret_env("SECRET_S", SESSION_SECRET),
        "token_budget": 7,
    }


@pytest.mark.parametrize(
    "env",
    [
        {"X": {"value": SESSION_SECRET, "secret": "yes"}},
        {"X": {"value": SESSION_SECRET, "secret": True, "extra": 1}},
        {"X": {"value": SESSION_SECRET + "\0", "secret": True}},
        {"X": {"value": SESSION_SECRET * 10_000, "secret": True}},
    ],
)
async def test_secrets_never_appear_in_error_messages(
    client: TrioClient, project: dict[str, Any], env: dict[str, Any]
) -> None:
    text = await raw(client, "session.create", {"project": project["id"], "config": {"env": env}})
    assert '"error"' in text
    assert_no_secret(text)


async def test_a_failing_setup_commands_failure_shows_secrets_masked(
    client: TrioClient, repo: Path
) -> None:
    _, session = await secret_session(client, repo, ECHO_SECRETS + "; exit 9")
    assert session["status"] == "failed"
    assert "project=*** session=***" in session["failure"]
    assert_no_secret(session["failure"])


def test_secrets_never_reach_the_daemons_log(dirs: DaemonDirs, repo: Path) -> None:
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text("")
    with daemon_process(dirs, "--log-level", "debug") as daemon:

        def rpc(method: str, params: Any) -> Any:
            response = blocking_call(dirs.socket, method, params, timeout=CALL_TIMEOUT_S)
            assert_no_secret(msgspec.json.encode(response).decode())
            return response

        project = rpc(
            "project.add",
            {
                "path": str(repo),
                "config": {**secret_env("SECRET_P", PROJECT_SECRET), "setup_command": "exit 3"},
            },
        )["result"]
        session = rpc(
            "session.create",
            {"project": project["id"], "config": secret_env("SECRET_S", SESSION_SECRET)},
        )["result"]
        rpc("session.create", {"project": project["id"], "config": {"env": {"X": 1}}})
        rpc("session.get", {"session": session["id"]})
        rpc("session.delete", {"session": session["id"]})
        assert daemon.terminate() == 0
        log = daemon.stderr
    assert "session_setup_failed" in log
    assert_no_secret(log)


async def test_a_secret_from_the_config_files_defaults_is_masked_and_reaches_the_setup_command(
    dirs: DaemonDirs, repo: Path
) -> None:
    config = f"""
[defaults]
setup_command = 'printf %s "$TOKEN" | sha256sum > token.sha; echo "token=$TOKEN"'

[defaults.env.TOKEN]
value = "{PROJECT_SECRET}"
secret = true
"""
    async with daemon_with_config(dirs, config) as client:
        project = await add_project(client, repo)
        session = await create(client, project)
        answers = [
            await raw(client, "session.config", {"session": session["id"]}),
            await raw(client, "session.events", {"session": session["id"]}),
        ]
    assert (workspace(session) / "token.sha").read_text() == sha256_line(PROJECT_SECRET)
    for text in answers:
        assert_no_secret(text)
    assert "token=***" in answers[1]
