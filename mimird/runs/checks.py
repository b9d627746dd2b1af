"""A run's check command, run in one member's worktree.

The command is the user's (``run.create``'s ``check_command``), not an agent's,
so it runs through ``/bin/sh -c`` like a setup command
(:func:`~mimird.sessions.setup.run_setup`): in its own process group, with the
member session's environment (the allowlist plus its layered ``env``), its
output scrubbed of the session's secrets as it streams, and the whole group
stopped when it ends, times out (``[runs] check_timeout_s``) or is cancelled.
Only the end of the output is kept (``[runs] check_output_bytes``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from mimird.sessions.setup import run_setup

#: The longest summary line kept (characters).
SUMMARY_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    exit_code: int | None
    passed: bool
    summary: str
    duration_s: float
    output: str
    output_dropped: int
    timed_out: bool = False


class _Tail:
    """The last ``limit`` bytes of a stream of text, and how many were dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.text = ""
        self.dropped = 0

    async def add(self, text: str) -> None:
        self.text += text
        encoded = self.text.encode()
        if len(encoded) > self.limit:
            cut = len(encoded) - self.limit
            self.dropped += cut
            self.text = encoded[cut:].decode(errors="ignore")


def summary_of(output: str) -> str:
    """The last non-empty line of the output, bounded."""
    for line in reversed(output.splitlines()):
        if line.strip():
            return line.strip()[-SUMMARY_CHARS:]
    return ""


async def run_check(
    command: str,
    cwd: Path,
    env: dict[str, str],
    secrets: set[str],
    *,
    timeout_s: float,
    output_bytes: int,
    on_start: Callable[[int], Awaitable[None]] | None = None,
) -> CheckOutcome:
    """Run ``command`` in ``cwd`` until it exits or ``timeout_s`` passes.

    Cancellation: the command's whole process group is stopped, and the
    cancellation goes on (nothing is returned)."""
    tail = _Tail(output_bytes)
    started = trio.current_time()
    exit_code: int | None = None
    with trio.move_on_after(timeout_s) as scope:
        try:
            result = await run_setup(command, cwd, env, secrets, tail.add, on_start)
            exit_code = result.exit_code
        except OSError as exc:
            await tail.add(f"the check command could not start: {exc.strerror or exc}\n")
    duration = round(trio.current_time() - started, 3)
    timed_out = scope.cancelled_caught
    if timed_out:
        await tail.add(f"\n[mimir] the check timed out after {timeout_s:g} s\n")
    return CheckOutcome(
        exit_code=exit_code,
        passed=exit_code == 0,
        summary=summary_of(tail.text),
        duration_s=duration,
        output=tail.text,
        output_dropped=tail.dropped,
        timed_out=timed_out,
    )
