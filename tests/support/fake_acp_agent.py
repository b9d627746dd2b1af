"""A scripted ACP agent, run as a real subprocess by tests (stdlib only, no trio).

Usage: ``python fake_acp_agent.py SCENARIO.json`` (or ``FAKE_ACP_SCENARIO=...``).
The scenario is a JSON object:

- ``record``: a file to which every line received on stdin is appended;
  ``record_sent``: one to which every message it writes on stdout is appended (so a
  test can pair the answers it got with its requests: tests/agents/test_acp_schema.py);
- ``results``: ``{method: result}`` overriding the default answers (``null`` allowed);
- ``before``/``after``: ``{method: [step, ...]}`` played before/after answering
  ``initialize``, ``session/new`` or ``session/prompt``;
- ``prompts``: ``[[step, ...], ...]``: the steps played before answering the first,
  second, ... ``session/prompt`` (after any ``before`` steps);
- ``errors``: ``{method: error}``: that method is answered with that JSON-RPC error
  object (``{"code": ..., "message": ..., "data": ...}``), as gemini-cli answers a
  ``session/load`` it cannot do;
- ``ignore_eof``: keep running after stdin closes; ``ignore_sigterm``: ignore SIGTERM;
- ``signals``: a file to which ``eof`` (stdin closed) and ``SIGTERM`` (received) are
  appended, a line each, in the order they happen (SIGTERM then ends the agent,
  unless ``ignore_sigterm``);
- ``models``/``modes``: ids offered in the answer to ``session/new`` and ``session/load``
  (legacy ``models``, ``modes``; the first is current), set with ``session/set_model``
  (unless ``set_model`` is false: then it is not a method) and ``session/set_mode``;
  with ``config_options`` true, offered instead as config options of category
  ``model``/``mode`` (ids ``model``/``mode``), set with ``session/set_config_option``.
  Every call is in the ``record`` file, as every line received. With
  ``load_hides_choices``, the answer to ``session/load`` does not say them; with
  ``announce_mode``, a ``current_mode_update`` precedes the answer to ``session/set_mode``.

Steps (``{"do": ..., ...}``):

- ``chunks`` (``count``, ``text``): that many ``agent_message_chunk`` updates, texts ``text0``...;
- ``tool_call``: a ``tool_call`` then a ``tool_call_update`` (completed);
- ``request`` (``method``, ``params``, optional ``id``, ``cancel_after_s``, ``wait``): a
  request to the client; waits for its answer (unless ``wait`` is false), after sending
  ``$/cancel_request`` for it if asked. A string ``"$<id>"`` anywhere in ``params`` is
  replaced by the ``terminalId`` of the answer to request ``<id>``. With ``until`` (a
  string), the request is made again every 20 ms until its answer contains that text
  (10 s at most);
- ``await`` (``ids``): reads until the answers to those requests have arrived;
- ``script``: plays the steps given as a JSON list in the prompt's text;
- ``huge`` (``bytes``): one update whose text is that long;
- ``raw`` (``line``): writes the line as is; ``stderr`` (``text``, ``end`` = ``"\\n"``): writes
  the text and ``end`` to stderr;
- ``update`` (``update``): one ``session/update`` with that update object;
- ``sleep`` (``s``); ``crash`` (``exit_code``); ``hang`` (reads and records until EOF);
- ``wait_cancel``: reads until ``$/cancel_request`` or ``session/cancel`` arrives;
- ``stop_reason`` (``value``): the stopReason of the prompt being answered;
- ``echo``: one chunk with the prompt's text;
- ``say`` (``text``, optional ``pattern``): one chunk with ``text``, in which ``{1}`` is
  replaced by the first group of the regular expression ``pattern`` found in the
  prompt's text (empty when not found): an answer that quotes its prompt, as a judge
  quotes the token of its answer line;
- ``result`` (``value``): members added to the result of the prompt being answered
  (``usage``, ``_meta``, ...);
- ``disk_write`` (``path``, ``text`` or ``hex``), ``disk_remove`` (``path``), ``disk_rename``
  (``path``, ``to``): change a file of the working directory (the workspace) directly on
  disk, as agents that write files themselves do (no ``fs/write_text_file``); ``disk_write``
  makes missing directories.

Any step with ``once`` (a file path) is played only if that file does not exist
yet, and creates it: a crash that happens once, not again after the restart.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from typing import Any

SESSION_ID = "sess-1"
DEFAULT_RESULTS: dict[str, Any] = {
    "initialize": {"protocolVersion": 1, "agentCapabilities": {}, "authMethods": []},
    "session/new": {"sessionId": SESSION_ID},
    "session/prompt": {"stopReason": "end_turn"},
}


class Agent:
    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.record = scenario.get("record")
        self.next_id = 0
        self.prompts = 0
        self.stop_reason: str | None = None
        self.extra_result: dict[str, Any] = {}
        self.prompt_text = ""
        #: The client's answers to our requests, by request id.
        self.answers: dict[Any, dict[str, Any]] = {}
        #: The current model and mode, by key ("model", "mode").
        self.current = {k: scenario[f"{k}s"][0] for k in ("model", "mode") if scenario.get(f"{k}s")}

    def offered(self) -> dict[str, Any]:
        """What session/new and session/load add to their answer: models and modes."""
        ids = {k: self.scenario[f"{k}s"] for k in self.current}
        if self.scenario.get("config_options"):
            options = [
                {
                    "id": k,
                    "name": k.title(),
                    "category": k,
                    "type": "select",
                    "currentValue": self.current[k],
                    "options": [{"value": i, "name": i} for i in ids[k]],
                }
                for k in ids
            ]
            return {"configOptions": options}
        found: dict[str, Any] = {}
        if "model" in ids:
            available = [{"modelId": i, "name": i} for i in ids["model"]]
            found["models"] = {
                "currentModelId": self.current["model"],
                "availableModels": available,
            }
        if "mode" in ids:
            available = [{"id": i, "name": i} for i in ids["mode"]]
            found["modes"] = {"currentModeId": self.current["mode"], "availableModes": available}
        return found

    def choose(self, method: str, params: dict[str, Any]) -> Any:
        """The answer to session/set_model, set_mode or set_config_option; None when
        the agent has no such method."""
        if method == "session/set_config_option" and self.scenario.get("config_options"):
            self.current[params["configId"]] = params["value"]
            return self.offered()
        if self.scenario.get("config_options"):
            return None
        has_set_model = self.scenario.get("set_model", True)
        if method == "session/set_model" and "model" in self.current and has_set_model:
            self.current["model"] = params["modelId"]
            return {}
        if method == "session/set_mode" and "mode" in self.current:
            self.current["mode"] = params["modeId"]
            if self.scenario.get("announce_mode"):
                self.update(
                    {"sessionUpdate": "current_mode_update", "currentModeId": params["modeId"]}
                )
            return {}
        return None

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message) + "\n"
        sent = self.scenario.get("record_sent")
        if sent:
            with open(sent, "a") as file:
                file.write(line)
        sys.stdout.write(line)
        sys.stdout.flush()

    def update(self, update: dict[str, Any]) -> None:
        params = {"sessionId": SESSION_ID, "update": update}
        self.send({"jsonrpc": "2.0", "method": "session/update", "params": params})

    def receive(self) -> dict[str, Any] | None:
        """The next message from stdin (recorded), or None at EOF."""
        while True:
            line = sys.stdin.readline()
            if not line:
                return None
            if self.record:
                with open(self.record, "a") as file:
                    file.write(line if line.endswith("\n") else line + "\n")
            if line.strip():
                message: dict[str, Any] = json.loads(line)
                if "method" not in message and "id" in message:
                    self.answers[message["id"]] = message
                return message

    def at_eof(self) -> None:
        note(self.scenario, "eof")
        if self.scenario.get("ignore_eof"):
            while True:
                time.sleep(3600)
        sys.exit(0)

    def wait_for(self, done: Any) -> dict[str, Any]:
        while True:
            message = self.receive()
            if message is None:
                self.at_eof()
                raise SystemExit(0)
            if done(message):
                return message

    def substitute(self, value: Any) -> Any:
        """``value`` with each ``"$<id>"`` string replaced by the terminalId of that answer."""
        if isinstance(value, str) and value.startswith("$") and value[1:] in self.answers:
            return self.answers[value[1:]].get("result", {}).get("terminalId")
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        return value

    def play(self, step: dict[str, Any]) -> None:
        once = step.get("once")
        if once is not None:
            if os.path.exists(once):
                return
            with open(once, "w"):
                pass
        kind = step["do"]
        if kind == "stop_reason":
            self.stop_reason = step["value"]
        elif kind == "result":
            self.extra_result.update(step["value"])
        elif kind == "echo":
            content = {"type": "text", "text": self.prompt_text}
            self.update({"sessionUpdate": "agent_message_chunk", "content": content})
        elif kind == "say":
            found = re.search(step.get("pattern", "(?!)"), self.prompt_text)
            text = step["text"].replace("{1}", found.group(1) if found else "")
            content = {"type": "text", "text": text}
            self.update({"sessionUpdate": "agent_message_chunk", "content": content})
        elif kind == "chunks":
            for i in range(step.get("count", 1)):
                text = f"{step.get('text', 'chunk')}{i}"
                content = {"type": "text", "text": text}
                self.update({"sessionUpdate": "agent_message_chunk", "content": content})
        elif kind == "tool_call":
            self.update({"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "Edit"})
            self.update(
                {"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "completed"}
            )
        elif kind == "request" and "until" in step:
            once = {k: v for k, v in step.items() if k != "until"}
            deadline = time.monotonic() + 10
            while True:
                self.play(once)
                answer = self.answers.get(once.get("id", self.next_id - 1))
                if step["until"] in json.dumps(answer) or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        elif kind == "request":
            request_id = step.get("id", self.next_id)
            self.next_id += 1
            self.answers.pop(request_id, None)  # an id used again
            self.send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "method": step["method"],
                    "params": self.substitute(step.get("params", {})),
                }
            )
            if "cancel_after_s" in step:
                time.sleep(step["cancel_after_s"])
                params = {"requestId": request_id}
                self.send({"jsonrpc": "2.0", "method": "$/cancel_request", "params": params})
            if step.get("wait", True):
                self.wait_for(lambda m: request_id in self.answers)
        elif kind == "await":
            ids = step["ids"]
            if not all(i in self.answers for i in ids):
                self.wait_for(lambda m: all(i in self.answers for i in ids))
        elif kind == "script":
            for scripted in json.loads(self.prompt_text):
                self.play(scripted)
        elif kind == "huge":
            text = "x" * step["bytes"]
            content = {"type": "text", "text": text}
            self.update({"sessionUpdate": "agent_message_chunk", "content": content})
        elif kind == "raw":
            sys.stdout.write(step["line"] + "\n")
            sys.stdout.flush()
        elif kind == "sleep":
            time.sleep(step["s"])
        elif kind == "stderr":
            sys.stderr.write(step["text"] + step.get("end", "\n"))
            sys.stderr.flush()
        elif kind == "update":
            self.update(step["update"])
        elif kind == "crash":
            os._exit(step.get("exit_code", 1))
        elif kind == "hang":
            self.wait_for(lambda m: False)
        elif kind == "wait_cancel":
            self.wait_for(lambda m: m.get("method") in ("$/cancel_request", "session/cancel"))
        elif kind == "disk_write":
            directory = os.path.dirname(step["path"])
            if directory:
                os.makedirs(directory, exist_ok=True)
            data = bytes.fromhex(step["hex"]) if "hex" in step else step["text"].encode()
            with open(step["path"], "wb") as file:
                file.write(data)
        elif kind == "disk_remove":
            os.remove(step["path"])
        elif kind == "disk_rename":
            os.rename(step["path"], step["to"])
        else:
            raise ValueError(f"unknown step {kind!r}")

    def run(self) -> None:
        results = {**DEFAULT_RESULTS, **self.scenario.get("results", {})}
        while True:
            message = self.receive()
            if message is None:
                self.at_eof()
                return
            method = message.get("method")
            if "id" not in message or method is None:
                continue  # notifications and stray answers are only recorded
            for step in self.scenario.get("before", {}).get(method, []):
                self.play(step)
            if method == "session/prompt":
                blocks = message.get("params", {}).get("prompt", [])
                # The prompt's own blocks: Mimir's handoff of the earlier conversation
                # (marked in _meta) is not part of what the test scripted.
                self.prompt_text = " ".join(
                    b.get("text", "")
                    for b in blocks
                    if not (isinstance(b.get("_meta"), dict) and "mimir" in b["_meta"])
                )
                scripted = self.scenario.get("prompts", [])
                if self.prompts < len(scripted):
                    for step in scripted[self.prompts]:
                        self.play(step)
                self.prompts += 1
            chosen = None
            if method in ("session/set_model", "session/set_mode", "session/set_config_option"):
                chosen = self.choose(method, message.get("params", {}))
            if method in self.scenario.get("errors", {}):
                error = self.scenario["errors"][method]
                self.send({"jsonrpc": "2.0", "id": message["id"], "error": error})
            elif chosen is not None:
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": chosen})
            elif (
                method in ("session/new", "session/load")
                and self.current
                and not (method == "session/load" and self.scenario.get("load_hides_choices"))
            ):
                result = {**(results.get(method) or {}), **self.offered()}
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})
            elif method == "session/prompt" and (self.stop_reason is not None or self.extra_result):
                base = results.get(method)
                result = {**(base if isinstance(base, dict) else {})}
                result["stopReason"] = self.stop_reason or "end_turn"
                result.update(self.extra_result)
                self.stop_reason, self.extra_result = None, {}
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})
            elif method in results:
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": results[method]})
            else:
                error = {"code": -32601, "message": f"method not found: {method}"}
                self.send({"jsonrpc": "2.0", "id": message["id"], "error": error})
            for step in self.scenario.get("after", {}).get(method, []):
                self.play(step)


def note(scenario: dict[str, Any], what: str) -> None:
    """Append ``what`` to the scenario's ``signals`` file, if it has one."""
    if scenario.get("signals"):
        with open(scenario["signals"], "a") as file:
            file.write(what + "\n")


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ["FAKE_ACP_SCENARIO"]
    with open(path) as file:
        scenario = json.load(file)
    if scenario.get("signals"):

        def on_sigterm(signum: int, frame: Any) -> None:
            note(scenario, "SIGTERM")
            if not scenario.get("ignore_sigterm"):  # die of it, as it was sent
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
    elif scenario.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Agent(scenario).run()


if __name__ == "__main__":
    main()
