"""The kill-on-exit guard for processes a test starts that would outlive it if the
code under test failed to stop them (sleepers that ignore SIGTERM, agents that ignore
EOF): whatever the test finds, they are SIGKILLed when it ends.

Pids are recycled (pid_max is 32768 here, and other test runs share the machine), so a
pid or group is remembered with its leader's start time, and a process that took the
number since is left alone."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Field 22; the command name (field 2) may hold spaces, so count after its ")".
    return int(stat[stat.rindex(")") + 2 :].split()[19])


class Doomed:
    """The process groups and processes to kill when the test ends."""

    def __init__(self) -> None:
        self._groups: list[tuple[int, int | None]] = []
        self._processes: list[tuple[int, int | None]] = []

    def group(self, pgid: int) -> None:
        """Kill the process group ``pgid`` (its leader's pid) at the end."""
        if pgid <= 1 or pgid == os.getpgrp():
            raise ValueError(f"refusing to doom process group {pgid} (the test's own or init)")
        self._groups.append((pgid, start_time(pgid)))

    def group_of(self, pid: int) -> None:
        """Kill the group ``pid`` is in at the end (only ``pid`` if that group is the
        test's own: the code under test should have given it a group of its own)."""
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return
        if pgid == os.getpgrp():
            self.process(pid)
        else:
            self.group(pgid)

    def process(self, pid: int) -> None:
        """Kill the process ``pid`` at the end."""
        self._processes.append((pid, start_time(pid)))

    def kill(self) -> None:
        for pgid, started in self._groups:
            # A leader gone (None now) leaves the number to its group while members
            # live; a leader that started at another time is someone else's.
            if start_time(pgid) in (None, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
        for pid, started in self._processes:
            if started is not None and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def killing(pgids: Iterable[int] = ()) -> Iterator[Doomed]:
    """Whatever the test finds, these groups (and those added to the guard it gives)
    do not outlive it."""
    doomed = Doomed()
    for pgid in pgids:
        doomed.group(pgid)
    try:
        yield doomed
    finally:
        doomed.kill()


__all__ = ["Doomed", "killing", "start_time"]
