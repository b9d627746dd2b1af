"""Running a session's setup command in its new workspace.

The command comes from the user's own configuration (not from an agent), so it
runs through ``/bin/sh -c``; it gets an environment built from an allowlist of
the daemon's variables plus the layered ``env``, in its own process group, and
the whole group is killed if the daemon stops meanwhile.
"""

from __future__ import annotations

import codecs
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from mimird.processes import stop_group
from mimird.secrets import scrub

OUTPUT_CHUNK: Final = 64 * 1024
#: How much of the output's end a failure message quotes.
FAILURE_TAIL_LINES: Final = 20
#: Output kept to find those lines in.
TAIL_KEEP_CHARS: Final = 64 * 1024
KILL_GRACE_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class SetupResult:
    exit_code: int
    tail: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


async def run_setup(
    command: str,
    cwd: Path,
    env: dict[str, str],
    secrets: set[str],
    on_output: Callable[[str], Awaitable[None]],
    on_start: Callable[[int], Awaitable[None]] | None = None,
) -> SetupResult:
    """Run ``command`` to completion, handing its (scrubbed) output to ``on_output``
    as it comes and its process group id to ``on_start`` first. Cancellation kills
    the whole process group."""
    process = await trio.lowlevel.open_process(
        ["/bin/sh", "-c", command],
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tail = ""
    if on_start is not None:
        # The group id (= the leader's pid, start_new_session) is recorded before any
        # output is read, so that a crash from here on leaves a trace to reap.
        await on_start(process.pid)
    # Incremental: a multi-byte character split across two reads stays whole.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        assert process.stdout is not None
        async with process.stdout:
            # A secret split across two reads must still be caught: hold back the
            # last (longest secret - 1) characters until the next read or the end.
            held = max((len(secret) for secret in secrets), default=1) - 1
            carry = ""
            while True:
                chunk = await process.stdout.receive_some(OUTPUT_CHUNK)
                pending = scrub(carry + decoder.decode(chunk, final=not chunk), secrets)
                if chunk and held:
                    text, carry = pending[:-held], pending[-held:]
                else:
                    text, carry = pending, ""
                if text:
                    tail = (tail + text)[-TAIL_KEEP_CHARS:]
                    await on_output(text)
                if not chunk:
                    break
        exit_code = await process.wait()
    finally:
        # Whatever the command left in its group (a background job) goes with it,
        # also when the daemon is cancelled meanwhile.
        await stop_group(process, eof_grace=0, term_grace=KILL_GRACE_S)
    return SetupResult(exit_code=exit_code, tail="\n".join(tail.splitlines()[-FAILURE_TAIL_LINES:]))
