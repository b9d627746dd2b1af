"""Finding and killing what a previous mimird left running.

After a SIGKILL or a power cut, the process groups mimird had started (setup
commands now, agents later) may outlive it. Their group ids are stored; a
stored id alone is not proof (after a reboot the number may name someone else's
processes), so a process is killed only if it is in that group AND it is the
session's: its environment holds ``MIMIR_SESSION=<session id>`` (every child
gets it, and passes it on), or its working directory is inside the session's
workspace.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from mimird.processes import SESSION_ENV, group_members


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _marked(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def leftovers(pgid: int, workspace: Path, session_id: str) -> list[int]:
    """Live processes of group ``pgid`` that are session ``session_id``'s: marked
    with its id, or working inside ``workspace``."""
    root = workspace.resolve()
    marker = f"{SESSION_ENV}={session_id}".encode()
    found = []
    for pid in group_members(pgid):
        cwd = _cwd(pid)
        inside = cwd is not None and (cwd == root or root in cwd.parents)
        if inside or _marked(pid, marker):
            found.append(pid)
    return found


def reap(pgid: int, workspace: Path, session_id: str) -> list[int]:
    """SIGKILL the leftovers of group ``pgid`` (see :func:`leftovers`); their pids."""
    killed = []
    for pid in leftovers(pgid, workspace, session_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(pid)
    return killed
