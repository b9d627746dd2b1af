"""``agent.probe``: start an agent kind's command in an empty temporary directory,
send it ACP ``initialize``, read its answer, stop it.

The agent is untrusted: what it prints is read up to :data:`MAX_OUTPUT_BYTES`, the
whole probe is bounded by its timeout, its stderr is not kept, every string of its
answer is cut to :data:`MAX_TEXT_CHARS`, and it is stopped like any agent (stdin
closed, SIGTERM, SIGKILL to its whole process group). Nothing is written to the
database.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from typing import Any, Final

import trio

from mimird import __version__
from mimird.agents.handshake import ACP_PROTOCOL_VERSION, CLIENT_CAPABILITIES
from mimird.agents.presets import AgentCommand
from mimird.processes import stop_group
from mimird.wire.probe_types import AgentProbe

#: What is read of the agent's stdout, at most.
MAX_OUTPUT_BYTES: Final = 1024 * 1024
#: Strings of the agent's answer (its name, version, error message) are cut to this.
MAX_TEXT_CHARS: Final = 200
#: How long the probed agent is given to exit once stdin is closed, then after SIGTERM.
PROBE_EOF_GRACE_S: Final = 1.0
PROBE_TERM_GRACE_S: Final = 2.0
_REQUEST_ID: Final = 1


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT_CHARS] if isinstance(value, str) else None


def _initialize_line() -> bytes:
    request = {
        "jsonrpc": "2.0",
        "id": _REQUEST_ID,
        "method": "initialize",
        "params": {
            "protocolVersion": ACP_PROTOCOL_VERSION,
            "clientCapabilities": CLIENT_CAPABILITIES,
            "clientInfo": {"name": "mimir", "title": "Mimir (probe)", "version": __version__},
        },
    }
    return json.dumps(request).encode() + b"\n"


def _answer(line: bytes) -> dict[str, Any] | None:
    """The response to the probe's ``initialize`` if ``line`` is one."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if (
        isinstance(message, dict)
        and message.get("id") == _REQUEST_ID
        and ("result" in message or "error" in message)
    ):
        return message
    return None


async def _read_answer(stream: trio.abc.ReceiveStream) -> tuple[dict[str, Any] | None, str]:
    """The answer, or None and why there is none."""
    buffer = bytearray()
    read = 0
    while read < MAX_OUTPUT_BYTES:
        chunk = await stream.receive_some(min(65536, MAX_OUTPUT_BYTES - read))
        if not chunk:
            return None, "the agent closed its stdout (exited?) without answering initialize"
        read += len(chunk)
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = bytes(buffer[:end]), buffer[end + 1 :]
            if (answer := _answer(line)) is not None:
                return answer, ""
    return None, f"the agent wrote {MAX_OUTPUT_BYTES} bytes without answering initialize"


def _result(kind: str, command: AgentCommand, answer: dict[str, Any], took: float) -> AgentProbe:
    ms = round(took * 1000, 1)
    if "error" in answer:
        error = answer["error"]
        message = error.get("message") if isinstance(error, dict) else None
        return AgentProbe(
            kind=kind,
            command=command.argv,
            duration_ms=ms,
            ok=False,
            answered=True,
            problem=f"initialize failed: {_text(message) or 'an error without a message'}",
        )
    result = answer.get("result")
    result = result if isinstance(result, dict) else {}
    info = result.get("agentInfo")
    info = info if isinstance(info, dict) else {}
    capabilities = result.get("agentCapabilities")
    capabilities = capabilities if isinstance(capabilities, dict) else {}
    version = result.get("protocolVersion")
    protocol = version if isinstance(version, int) and not isinstance(version, bool) else None
    problem = None
    if protocol != ACP_PROTOCOL_VERSION:
        problem = (
            f"the agent speaks ACP protocol {protocol}, Mimir speaks {ACP_PROTOCOL_VERSION}"
            if protocol is not None
            else "the agent's initialize answer has no protocolVersion"
        )
    return AgentProbe(
        kind=kind,
        command=command.argv,
        duration_ms=ms,
        ok=problem is None,
        answered=True,
        protocol_version=protocol,
        agent_name=_text(info.get("name")),
        agent_version=_text(info.get("version")),
        load_session=bool(capabilities.get("loadSession")),
        problem=problem,
    )


async def probe(kind: str, command: AgentCommand, timeout_s: float) -> AgentProbe:
    """Start ``command`` in a temporary directory, ask ``initialize``, stop it.

    Cancellation: the agent's process group is still stopped (shielded, bounded by
    the stop's graces) and the temporary directory removed."""
    workdir = await trio.to_thread.run_sync(tempfile.mkdtemp, None, "mimir-probe-")
    began = time.monotonic()
    try:
        try:
            process = await trio.lowlevel.open_process(
                command.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=workdir,
                env=command.env,
                start_new_session=True,
            )
        except OSError as exc:
            return AgentProbe(
                kind=kind,
                command=command.argv,
                ok=False,
                answered=False,
                duration_ms=0.0,
                problem=f"cannot start {command.argv[0]}: {exc.strerror or exc}",
            )
        answer: dict[str, Any] | None = None
        why = f"no answer to initialize within {timeout_s:g} s"
        try:
            assert process.stdin is not None
            assert process.stdout is not None
            with trio.move_on_after(timeout_s):
                try:
                    await process.stdin.send_all(_initialize_line())
                    answer, problem = await _read_answer(process.stdout)
                    why = problem or why
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    why = "the agent closed its stdin (exited?) before initialize was sent"
        finally:
            await stop_group(process, eof_grace=PROBE_EOF_GRACE_S, term_grace=PROBE_TERM_GRACE_S)
        took = time.monotonic() - began
        if answer is None:
            return AgentProbe(
                kind=kind,
                command=command.argv,
                ok=False,
                answered=False,
                duration_ms=round(took * 1000, 1),
                problem=why,
            )
        return _result(kind, command, answer, took)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(shutil.rmtree, workdir, True)
