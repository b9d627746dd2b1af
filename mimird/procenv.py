"""Wiping secrets from the process's initial environment block.

Removing a variable from ``os.environ`` (``unsetenv``) stops children from
inheriting it, but ``/proc/<pid>/environ`` shows the environment as the kernel
laid it out at ``exec``, and that stays readable by every process of the same
user (agents included) for the daemon's whole life. The only way to take a key
out of it is to overwrite those bytes in our own memory.
"""

from __future__ import annotations

import structlog

log = structlog.get_logger("mimird")

# Fields of /proc/self/stat, counted from 1 as proc(5) does.
_ENV_START_FIELD = 50
_ENV_END_FIELD = 51


def scrub_initial_environment(names: tuple[str, ...]) -> list[str]:
    """Overwrite the values of ``names`` in the initial environment block with NULs.

    Call it after the values were read and removed from ``os.environ``. Returns
    the names it wiped; failures (a kernel without these fields, a hardened
    /proc) are logged, never raised."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat[stat.rindex(b")") + 2 :].split()
        start = int(fields[_ENV_START_FIELD - 3])
        end = int(fields[_ENV_END_FIELD - 3])
        wiped = []
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            offset = 0
            for entry in block.split(b"\0"):
                name, sep, value = entry.partition(b"=")
                if sep and value and name.decode(errors="replace") in names:
                    mem.seek(start + offset + len(name) + 1)
                    mem.write(b"\0" * len(value))
                    wiped.append(name.decode())
                offset += len(entry) + 1
        return wiped
    except (OSError, ValueError, IndexError) as exc:
        log.warning("environment_scrub_failed", error=str(exc))
        return []
