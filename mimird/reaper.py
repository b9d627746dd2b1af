"""Finding and killing what a previous mimird left running.

After a SIGKILL or a power cut, the process groups mimird had started (setup
commands now, agents later) may outlive it. Their group ids are stored; a
stored id alone is not proof (after a reboot the number may name someone else's
processes), so a process is killed only if it is in that group AND its working
directory is inside the session's workspace.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from mimird.processes import group_members


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def leftovers(pgid: int, workspace: Path) -> list[int]:
    """Live processes of group ``pgid`` working inside ``workspace``."""
    root = workspace.resolve()
    found = []
    for pid in group_members(pgid):
        cwd = _cwd(pid)
        if cwd is not None and (cwd == root or root in cwd.parents):
            found.append(pid)
    return found


def reap(pgid: int, workspace: Path) -> list[int]:
    """SIGKILL the leftovers of group ``pgid`` in ``workspace``; returns their pids."""
    killed = []
    for pid in leftovers(pgid, workspace):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(pid)
    return killed
