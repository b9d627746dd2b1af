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
from typing import Final, Literal

import structlog
import trio

from mimird import journal, policy
from mimird.processes import SESSION_ENV, child_environment, stop_group
from mimird.secrets import forms, scrub
from mimird.sessions import records
from mimird.sessions.records import SessionRow
from mimird.store import Store
from mimird.wire import events
from mimird.wire.types import SessionStatus

log = structlog.get_logger("mimird.sessions.setup")

#: An event journaled with a status change: (kind, data).

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


#: How a command that must not start before its group is recorded is started: a
#: shell reads one line from mimird on its stdin (EOF, a daemon gone: exit 125,
#: nothing run), then runs the command with stdin from /dev/null.
_GATE: Final = 'read -r _ || exit 125; exec </dev/null; exec /bin/sh -c "$1"'


async def run_setup(
    command: str,
    cwd: Path,
    env: dict[str, str],
    secrets: set[str],
    on_output: Callable[[str], Awaitable[None]],
    on_start: Callable[[int], Awaitable[None]] | None = None,
) -> SetupResult:
    """Run ``command`` to completion, handing its (scrubbed) output to ``on_output``
    as it comes and its process group id to ``on_start`` first: the command starts
    only once ``on_start`` has returned (a shell waits on a line from mimird first,
    and gives up if the line never comes), so that a daemon killed meanwhile leaves
    either nothing running or a recorded group to reap. Cancellation kills the whole
    process group."""
    gated = ["-c", _GATE, "mimir-gate", command] if on_start is not None else ["-c", command]
    process = await trio.lowlevel.open_process(
        ["/bin/sh", *gated],
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL if on_start is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tail = ""
    # Incremental: a multi-byte character split across two reads stays whole.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        if on_start is not None:
            assert process.stdin is not None
            async with process.stdin:
                # The group id (= the leader's pid, start_new_session) is recorded
                # before the command starts: a crash from here on leaves a trace to reap.
                await on_start(process.pid)
                await process.stdin.send_all(b"go\n")
        assert process.stdout is not None
        async with process.stdout:
            # A secret split across two reads must still be caught: hold back the
            # last (longest form of a secret - 1) characters until the next read or the end.
            held = max((len(form) for form in forms(secrets)), default=1) - 1
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


class SetupCommands:
    """The setup commands running now, one per session being prepared: runs them,
    journals their output and outcome, and ends them on ``session.cancel``."""

    def __init__(self, store: Store, timeout_s: float) -> None:
        self._store = store
        self._timeout_s = timeout_s
        self._running: dict[str, trio.CancelScope] = {}
        self._cancelled: set[str] = set()

    def cancel(self, session_id: str) -> bool:
        """End the session's setup command if one runs (the session is then failed)."""
        scope = self._running.get(session_id)
        if scope is None:
            return False
        self._cancelled.add(session_id)
        scope.cancel()
        return True

    async def run(self, row: SessionRow, effective: policy.Effective) -> SessionRow:
        """Run the session's setup command in its workspace; move the session from
        ``preparing`` to ``created`` (exit 0) or ``failed`` (with the output's tail).

        Cancellation: the command's whole process group is stopped and the
        cancel propagates; the session stays ``preparing`` until the next start
        marks it failed (``daemon_stopped_during_setup``). A ``session.cancel``
        or the timeout is not a cancellation of this call: the session fails."""
        command: str = effective.values["setup_command"]

        async def journal_output(text: str) -> None:
            await self._store.write(journal.append, row.id, events.SetupOutput(text=text))

        async def record_group(pgid: int) -> None:
            await self._store.write(
                records.update,
                row.id,
                {"process_group": pgid},
                event=events.SetupStarted(command=command),
            )

        async def end(
            status: SessionStatus, reason: str, failure: str | None, *facts: journal.Fact
        ) -> SessionRow:
            return await self._store.write(
                records.transition,
                row.id,
                status,
                action="set up",
                reason=reason,
                values={"failure": failure, "process_group": None},
                events=facts,
            )

        timeout = self._timeout_s
        scope = self._running[row.id] = trio.CancelScope(relative_deadline=timeout)
        try:
            with scope:
                result = await run_setup(
                    command,
                    Path(row.workspace_path),
                    child_environment({**effective.env(), SESSION_ENV: row.id}),
                    effective.secret_values(),
                    journal_output,
                    record_group,
                )
        except OSError as exc:
            failure = f"setup command could not start: {exc.strerror or exc}"
            return await end("failed", "setup_failed", failure)
        finally:
            del self._running[row.id]
            cancelled = row.id in self._cancelled
            self._cancelled.discard(row.id)
        if scope.cancelled_caught:
            # run_setup has stopped the command's whole group on its way out.
            failure = (
                "setup command cancelled (session.cancel)"
                if cancelled
                else f"setup command timed out after {timeout:g} s ([supervision] setup_timeout_s)"
            )
            log.warning("session_setup_ended", session_id=row.id, failure=failure)
            ended: Literal["cancelled", "timed_out"] = "cancelled" if cancelled else "timed_out"
            stopped = events.SetupFinished(exit_code=None, ended=ended)
            return await end("failed", "setup_failed", failure, stopped)
        finished = events.SetupFinished(exit_code=result.exit_code)
        if result.ok:
            return await end("created", "setup_succeeded", None, finished)
        log.warning("session_setup_failed", session_id=row.id, exit_code=result.exit_code)
        failure = f"setup command exited with {result.exit_code}:\n{result.tail}"
        return await end("failed", "setup_failed", failure, finished)
