"""An editor-style ACP client for tests: ``mimirctl acp`` run as a real subprocess,
spoken to on its stdin/stdout, every message it sends kept (and checked).

    with AcpClient.start(dirs, "--agent", "fake") as editor:
        editor.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
        session = editor.call("session/new", {"cwd": str(repo), "mcpServers": []})

:meth:`AcpClient.call` returns the result (an error raises :class:`AcpFailed`);
notifications and the agent's requests that arrive meanwhile are kept in order in
``received`` and can be waited for with :meth:`AcpClient.wait_for`. Every message
from the bridge goes through :data:`CHECKS` (each a callable that raises on a
message that breaks ACP v1): the schema validation of the editor-plugin kit is
added there in one line.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

from tests.support.acp_schema import validate_agent_message
from tests.support.helpers import DaemonDirs

TIMEOUT_S: Final = 30.0


def _envelope(message: dict[str, Any], request_method: str | None) -> None:
    """Every message is JSON-RPC 2.0: a request, a notification or an answer."""
    assert message.get("jsonrpc") == "2.0", message
    if "method" in message:
        assert isinstance(message["method"], str), message
    else:
        assert "id" in message, message
        assert ("result" in message) != ("error" in message), message


def _schema(message: dict[str, Any], request_method: str | None) -> None:
    """ACP v1 stable (with the legacy set_model), by the vendored schema."""
    validate_agent_message(message, request_method=request_method)


#: Checks every message from the bridge must pass (raise to fail the test), given
#: the message and, for an answer, the method of the request it answers.
CHECKS: list[Callable[[dict[str, Any], str | None], None]] = [_envelope, _schema]


class AcpFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data")


class AcpClient:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        #: Everything the bridge sent, in order.
        self.sent: list[dict[str, Any]] = []
        #: Notifications and requests not yet taken by wait_for.
        self.received: list[dict[str, Any]] = []
        self._answers: dict[Any, dict[str, Any]] = {}
        #: The methods of our requests, by id (to check their answers).
        self._methods: dict[Any, str] = {}
        self.ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, dirs: DaemonDirs, *args: str, env: dict[str, str] | None = None) -> AcpClient:
        with (dirs.root / "acp-stderr.log").open("ab") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "mimirctl", "acp", *args],
                env=env or dirs.env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        return cls(process)

    def __enter__(self) -> AcpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            method = None if "method" in message else self._methods.get(message.get("id"))
            for check in CHECKS:
                check(message, method)
            self._inbox.put(message)
        self._inbox.put(None)

    # -- sending -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, method: str, params: Any = None) -> int:
        self._next_id += 1
        self._methods[self._next_id] = method
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}}
        self.write(json.dumps(message).encode() + b"\n")
        return self._next_id

    def notify(self, method: str, params: Any) -> None:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        self.write(json.dumps(message).encode() + b"\n")

    def answer(self, request_id: Any, result: Any) -> None:
        self.write(
            json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode() + b"\n"
        )

    # -- receiving -----------------------------------------------------------------------

    def _take(self, timeout: float) -> dict[str, Any] | None:
        try:
            message = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing from mimirctl acp in {timeout} s") from None
        if message is None:
            self.ended = True
            return None
        self.sent.append(message)
        if "method" in message:
            self.received.append(message)
        else:
            self._answers[message.get("id")] = message
        return message

    def response(self, request_id: int, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """The whole answer to our request ``request_id``."""
        while request_id not in self._answers:
            if self._take(timeout) is None:
                raise AssertionError(f"mimirctl acp ended before answering {request_id}")
        return self._answers.pop(request_id)

    def result(self, request_id: int, timeout: float = TIMEOUT_S) -> Any:
        answer = self.response(request_id, timeout)
        if "error" in answer:
            raise AcpFailed(answer["error"])
        return answer["result"]

    def call(self, method: str, params: Any = None, timeout: float = TIMEOUT_S) -> Any:
        return self.result(self.send(method, params), timeout)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT_S
    ) -> dict[str, Any]:
        """The first kept notification or request that ``predicate`` accepts (taken
        out of ``received``), waiting for it if needed."""
        while True:
            for index, message in enumerate(self.received):
                if predicate(message):
                    return self.received.pop(index)
            if self._take(timeout) is None:
                raise AssertionError("mimirctl acp ended before the message came")

    def drain(self, timeout: float = 0.5) -> None:
        """Read what comes within ``timeout`` (to see that nothing more does)."""
        try:
            while self._take(timeout) is not None:
                pass
        except AssertionError:
            pass

    def updates(self, session_id: str) -> Iterator[dict[str, Any]]:
        """The ``update`` objects of the session's ``session/update`` notifications
        received so far, in order."""
        for message in self.sent:
            params = message.get("params") or {}
            if message.get("method") == "session/update" and params.get("sessionId") == session_id:
                yield params["update"]

    # -- ending ----------------------------------------------------------------------------

    def close_stdin(self, timeout: float = TIMEOUT_S) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(TIMEOUT_S)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._reader.join(TIMEOUT_S)


def text_of(updates: Iterator[dict[str, Any]] | list[dict[str, Any]], kind: str) -> list[str]:
    """The texts of the updates of one kind (``user_message_chunk``, ...)."""
    return [
        u["content"]["text"]
        for u in updates
        if u.get("sessionUpdate") == kind and u.get("content", {}).get("type") == "text"
    ]
