"""The setup command: output journaled, failure, timeout, cancel.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.processes import group_alive
from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    DaemonDirs,
    InProcessDaemon,
    TrioClient,
    add_project,
    git,
    run_mimirctl,
)
from tests.support.processes import Doomed, killing
from tests.support.sessions import (
    CALL_TIMEOUT_S,
    POLL_S,
    PROJECT_SECRET,
    all_sessions,
    call,
    create,
    daemon_with_config,
    events,
    get,
    kinds,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


# ---- the setup command -----------------------------------------------------------------------


async def test_a_successful_setup_command_leaves_the_session_created_with_its_output_journaled(
    client: TrioClient, repo: Path
) -> None:
    project = await add_project(
        client, repo, config={"setup_command": "echo installing; echo done >&2"}
    )
    session = await create(client, project)
    assert session["status"] == "created"
    assert session["failure"] is None
    found = await events(client, session)
    assert kinds(found)[:3] == ["session_created", "workspace_created", "setup_started"]
    assert found[0]["data"] == {"status": "preparing"}
    output = "".join(e["data"]["text"] for e in found if e["kind"] == "setup_output")
    assert output == "installing\ndone\n"
    [finished] = [e for e in found if e["kind"] == "setup_finished"]
    assert finished["data"] == {"exit_code": 0}
    assert found[-1]["kind"] == "status_changed"
    assert (found[-1]["data"]["from"], found[-1]["data"]["to"]) == ("preparing", "created")


async def test_a_failing_setup_command_leaves_the_session_failed_with_exit_code_and_last_lines(
    client: TrioClient, repo: Path
) -> None:
    command = "for i in $(seq 1 30); do echo line$i; done; exit 3"
    project = await add_project(client, repo, config={"setup_command": command})
    session = await create(client, project)
    assert session["status"] == "failed"
    first, *tail = session["failure"].splitlines()
    assert "exited with 3" in first
    assert tail == [f"line{i}" for i in range(11, 31)]
    assert (await get(client, session))["failure"] == session["failure"]
    found = await events(client, session)
    [finished] = [e for e in found if e["kind"] == "setup_finished"]
    assert finished["data"] == {"exit_code": 3}
    assert (found[-1]["data"]["from"], found[-1]["data"]["to"]) == ("preparing", "failed")
    # The workspace stays, so that the user can see what went wrong.
    assert workspace(session).is_dir()


async def test_the_setup_command_runs_in_the_new_worktree_with_the_layered_env(
    dirs: DaemonDirs, repo: Path
) -> None:
    command = 'pwd -P > where.txt; echo "$D $A $B" > env.txt'
    async with daemon_with_config(dirs, '[defaults.env]\nD = "d"\nA = "overridden"\n') as client:
        project = await add_project(
            client, repo, config={"setup_command": command, "env": {"A": "a"}}
        )
        session = await create(client, project, config={"env": {"B": "b"}})
    path = workspace(session)
    assert (path / "where.txt").read_text().strip() == str(path.resolve())
    assert (path / "env.txt").read_text() == "d a b\n"
    assert not (repo / "where.txt").exists()


async def test_the_setup_command_gets_none_of_the_daemons_private_environment(
    dirs: DaemonDirs, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("MIMIR_DB_KEY", PROJECT_SECRET)
    monkeypatch.setenv("LISTEN_FDS", "1")
    async with daemon_with_config(dirs, "") as client:
        project = await add_project(client, repo, config={"setup_command": "env > env.txt"})
        session = await create(client, project)
    names = {
        line.split("=", 1)[0] for line in (workspace(session) / "env.txt").read_text().splitlines()
    }
    assert not names & {"NOTIFY_SOCKET", "MIMIR_DB_KEY", "LISTEN_FDS"}
    assert "PATH" in names


async def test_a_setup_command_from_the_session_layer_runs_too(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project, config={"setup_command": "touch made-by-setup"})
    assert (workspace(session) / "made-by-setup").exists()


async def test_a_session_whose_setup_failed_can_be_deleted_and_its_work_is_snapshotted(
    client: TrioClient, repo: Path
) -> None:
    project = await add_project(client, repo, config={"setup_command": "echo x > out.txt; exit 1"})
    session = await create(client, project)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert git(repo, "show", f"{removed['snapshot']['ref']}:out.txt") == "x\n"


async def wait_until_preparing(client: TrioClient) -> dict[str, Any]:
    """The one session whose setup command is running, once it is (polled: the daemon
    tells no one)."""
    while True:
        if found := await all_sessions(client, status=["preparing"]):
            [session] = found
            return session
        await trio.sleep(POLL_S)


async def test_a_delete_while_the_setup_command_runs_is_refused_and_the_session_completes(
    daemon: InProcessDaemon, client: TrioClient, repo: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    command = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo finished"
    project = await add_project(client, repo, config={"setup_command": command})
    answers: list[dict[str, Any]] = []

    async def create_slowly() -> None:
        async with TrioClient.connect(daemon.socket) as own:
            with trio.fail_after(CALL_TIMEOUT_S):
                answers.append(await own.call_raw("session.create", {"project": project["id"]}))

    with trio.fail_after(CALL_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(create_slowly)
            session = await wait_until_preparing(client)
            deleting = await client.call_raw("session.delete", {"session": session["id"]})
            gate.touch()
    # The session was preparing when the delete came: refused (the worktree would go
    # from under the setup command), and the create then finishes as if nothing happened.
    assert deleting["error"]["code"] == ErrorCode.INVALID_STATE
    assert deleting["error"]["data"]["id"] == session["id"]
    [created] = answers
    assert created["result"]["status"] == "created"
    final = await get(client, session)
    assert final["status"] == "created"
    assert final["workspace"]["state"] == "ok"
    assert workspace(session).is_dir()


async def _setup_pid(pidfile: Path) -> int:
    """The pid the setup command wrote (polled: nothing says when it has)."""
    path = trio.Path(pidfile)
    while not (await path.exists() and (text := await path.read_text()).strip()):  # noqa: ASYNC110
        await trio.sleep(POLL_S)
    return int(text)


async def _doom_setup_group(pidfile: Path, doomed: Doomed) -> None:
    doomed.group(await _setup_pid(pidfile))


@pytest.mark.slow
async def test_cancel_ends_a_running_setup_command_and_fails_the_session(
    daemon: InProcessDaemon, client: TrioClient, repo: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "setup.pid"
    # A command that would never end by itself, with a child that ignores SIGTERM.
    command = f"echo $$ > {pidfile}; (trap '' TERM; sleep 1000) & while true; do sleep 0.05; done"
    project = await add_project(client, repo, config={"setup_command": command})
    answers: list[dict[str, Any]] = []

    async def create_slowly() -> None:
        async with TrioClient.connect(daemon.socket) as own:
            answers.append(await own.call_raw("session.create", {"project": project["id"]}))

    with killing() as doomed, trio.fail_after(CALL_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(create_slowly)
            session = await wait_until_preparing(client)
            pgid = await _setup_pid(pidfile)
            doomed.group(pgid)
            cancelled = await trio.to_thread.run_sync(
                run_mimirctl, daemon.dirs, "cancel", session["id"][:8]
            )
            assert cancelled.returncode == 0, cancelled.stderr
            assert cancelled.stdout == "setup command cancelled\n"
        assert not group_alive(pgid), "the whole group of the setup command is gone"
    [answer] = answers
    assert answer["result"]["status"] == "failed"
    assert answer["result"]["failure"] == "setup command cancelled (session.cancel)"
    found = await events(client, session)
    [finished] = [e for e in found if e["kind"] == "setup_finished"]
    assert finished["data"] == {"exit_code": None, "ended": "cancelled"}
    # Nothing runs any more: a second cancel has nothing to cancel.
    again = await call(client, "session.cancel", {"session": session["id"]})
    assert again["cancelled"] is False


async def test_a_setup_command_that_runs_too_long_is_stopped(
    dirs: DaemonDirs, repo: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "setup.pid"
    config = "[supervision]\nsetup_timeout_s = 0.5\n"
    async with daemon_with_config(dirs, config) as client:
        project = await add_project(
            client, repo, config={"setup_command": f"echo $$ > {pidfile}; sleep 1000"}
        )
        with killing() as doomed:
            with trio.fail_after(CALL_TIMEOUT_S):
                async with trio.open_nursery() as nursery:
                    # The group is doomed as soon as its leader says who it is.
                    nursery.start_soon(_doom_setup_group, pidfile, doomed)
                    session = await create(client, project)
            assert session["status"] == "failed"
            assert "timed out after 0.5 s" in session["failure"]
            assert not group_alive(await _setup_pid(pidfile))
        found = await events(client, session)
        [finished] = [e for e in found if e["kind"] == "setup_finished"]
        assert finished["data"] == {"exit_code": None, "ended": "timed_out"}
