"""The setup command runner: output scrubbed of secrets, environment, process group."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio

from mimird.processes import child_environment
from mimird.sessions.setup import run_setup
from tests.support.processes import killing

SECRET = "supersecret42"


async def _run(
    command: str, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    seen: list[str] = []

    async def collect(text: str) -> None:
        seen.append(text)

    with trio.fail_after(20):
        result = await run_setup(command, tmp_path, child_environment(env or {}), {SECRET}, collect)
    return result.exit_code, "".join(seen), result.tail


async def test_a_secret_split_across_two_reads_is_still_masked(tmp_path: Path) -> None:
    code, output, tail = await _run("printf 'a supers'; sleep 0.3; printf 'ecret42 b'", tmp_path)
    assert code == 0
    assert SECRET not in output
    assert output == "a *** b"
    assert SECRET not in tail


async def test_output_and_exit_code_of_a_failing_command_are_kept(tmp_path: Path) -> None:
    code, output, tail = await _run("echo one; echo two >&2; exit 3", tmp_path)
    assert code == 3
    assert output == "one\ntwo\n"
    assert tail == "one\ntwo"


async def test_the_command_gets_the_layered_env_and_not_the_daemons_secrets(
    tmp_path: Path,
) -> None:
    os.environ["MIMIR_DB_KEY_TEST_LEAK"] = "nope"
    try:
        code, output, _ = await _run(
            "echo $GREETING; env | grep -c MIMIR_ || true", tmp_path, {"GREETING": "hello"}
        )
    finally:
        del os.environ["MIMIR_DB_KEY_TEST_LEAK"]
    assert code == 0
    assert output == "hello\n0\n"


async def test_the_command_runs_in_the_workspace(tmp_path: Path) -> None:
    _, output, _ = await _run("pwd -P", tmp_path)
    assert output.strip() == str(await trio.Path(tmp_path).resolve())


@pytest.mark.slow
async def test_cancelling_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"

    async def collect(text: str) -> None:
        pass

    # A grandchild that ignores SIGTERM, in the background, and a leader that waits.
    command = f"sh -c 'trap \"\" TERM; sleep 60' & echo $! > {pid_file}; sleep 60"
    with killing() as doomed:
        with trio.move_on_after(1):
            await run_setup(command, tmp_path, child_environment({}), set(), collect)
        grandchild = int(pid_file.read_text())
        doomed.group_of(grandchild)
        assert _dies(grandchild, within=10)


def _dies(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while _state(pid) not in ("gone", "Z"):  # a zombie is dead, waiting for its reaper
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return stat[stat.rindex(")") + 2]


async def test_a_command_starts_only_once_its_group_is_recorded(tmp_path: Path) -> None:
    """With ``on_start`` (setup commands, run checks), the command waits until its
    group id is recorded: a daemon killed in between leaves nothing it did not know of."""
    marker = tmp_path / "ran"
    recorded: list[int] = []

    async def on_start(pgid: int) -> None:
        await trio.sleep(0.5)  # a slow database: the command must still be waiting
        assert not marker.exists()
        recorded.append(pgid)

    async def ignore(text: str) -> None:
        pass

    with trio.fail_after(20):
        result = await run_setup(
            f"touch {marker}; echo done", tmp_path, child_environment({}), set(), ignore, on_start
        )
    assert result.exit_code == 0
    assert marker.exists()
    assert recorded


async def test_a_command_whose_group_was_never_recorded_never_starts(tmp_path: Path) -> None:
    """The recording was cancelled (as when mimird is killed then): the gate's stdin
    ends without the go line, and the command does not run."""
    marker = tmp_path / "ran"

    async def on_start(pgid: int) -> None:
        await trio.sleep_forever()

    async def ignore(text: str) -> None:
        pass

    with trio.move_on_after(0.5):
        await run_setup(f"touch {marker}", tmp_path, child_environment({}), set(), ignore, on_start)
    await trio.sleep(0.3)
    assert not marker.exists()
