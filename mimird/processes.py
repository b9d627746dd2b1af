"""Child processes of mimird: their environment, their process groups, and how
they are stopped.

Every child (setup commands, agents) runs in a process group of its own
(``start_new_session=True``), so that stopping it reaches everything it
started. Stopping escalates — stdin closed, SIGTERM to the group, SIGKILL to
the group — and always ends with a sweep of the group: trio stops caring once
the leader has exited, but a grandchild that ignores SIGTERM would survive it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from typing import Final

import trio

#: Variables of the daemon's environment a child may see. Everything else
#: (NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*, MIMIR_DB_KEY, ...) stays with the daemon.
ENV_ALLOWLIST: Final = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR"}
)
#: Set in every child's environment to the id of the session it works for: it is
#: inherited by what the child starts, wherever that goes, so that the reaper can
#: tell a leftover of ours from a stranger that got a recycled group id.
SESSION_ENV: Final = "MIMIR_SESSION"
#: How often a stop looks whether the group is empty yet.
GROUP_POLL_S: Final = 0.05
EOF_GRACE_S: Final = 2.0
TERM_GRACE_S: Final = 5.0
KILL_WAIT_S: Final = 5.0


def child_environment(
    layered: Mapping[str, str], base: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The allowlisted part of ``base``, then ``layered`` on top."""
    env = {k: v for k, v in base.items() if k in ENV_ALLOWLIST or k.startswith("LC_")}
    env.update(layered)
    return env


def exit_status(returncode: int) -> tuple[int | None, str | None]:
    """(exit code, signal name) of a finished child: one of them is None."""
    if returncode >= 0:
        return returncode, None
    try:
        return None, signal.Signals(-returncode).name
    except ValueError:  # a real-time signal has no name of its own
        return None, f"SIG{-returncode}"


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Signal every process of group ``pgid``; a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[int]:
    """The live processes (zombies aside) of group ``pgid``, found in /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields 3 (state) and 5 (group), counted after the command name, which
        # may hold spaces and parentheses.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry))
    return members


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts: it is not ours to judge)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies aside) is left in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies nobody reaped yet: look closer.
    return bool(group_members(pgid))


async def _wait_group_gone(process: trio.Process, grace: float) -> bool:
    """Wait up to ``grace`` seconds until the leader was reaped and nothing else is
    left in its group."""
    with trio.move_on_after(grace):
        await process.wait()
        # Polling: no event tells when the last member of a group exits.
        while group_alive(process.pid):  # noqa: ASYNC110
            await trio.sleep(GROUP_POLL_S)
        return True
    return False


async def stop_group(
    process: trio.Process,
    *,
    eof_grace: float = EOF_GRACE_S,
    term_grace: float = TERM_GRACE_S,
    term_first: bool = False,
) -> int | None:
    """Stop ``process`` and every process of its group; returns the leader's exit code.

    Closes stdin and gives the group ``eof_grace`` seconds to finish, then SIGTERM to
    the group and ``term_grace`` seconds, then SIGKILL to the group; a final SIGKILL
    sweep runs in any case. With ``term_first`` (a child that ignores EOF), SIGTERM
    goes to the group (once) before stdin is closed and ``eof_grace`` is not waited.
    Shielded from cancellation: once asked, a stop completes (it takes at most
    eof_grace + term_grace + a few seconds)."""
    pgid = process.pid
    with trio.CancelScope(shield=True):
        try:
            termed = term_first and process.returncode is None
            if termed:
                kill_group(pgid, signal.SIGTERM)
            if process.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await process.stdin.aclose()
            # SIGTERM goes once: after the EOF grace, or already sent (term_first).
            gone = await _wait_group_gone(process, term_grace if termed else eof_grace)
            if not gone and not termed:
                kill_group(pgid, signal.SIGTERM)
                gone = await _wait_group_gone(process, term_grace)
            if not gone:
                kill_group(pgid, signal.SIGKILL)
                await _wait_group_gone(process, KILL_WAIT_S)
        finally:
            kill_group(pgid, signal.SIGKILL)
    return process.returncode


__all__ = [
    "ENV_ALLOWLIST",
    "SESSION_ENV",
    "child_environment",
    "exit_status",
    "group_alive",
    "group_members",
    "kill_group",
    "stop_group",
]
