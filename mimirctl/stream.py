"""Commands that follow a session's agent: ``prompt``, ``attach``, ``log``,
``cancel``, ``stop``, ``resume``, ``logs`` and ``permission``.

Streaming reads the socket in a plain blocking loop: a subscription's ``event``
notifications and the responses to our own requests arrive on one connection,
told apart by ``method``. Rendering is line-oriented and stateless per event,
so that ``attach`` from the middle of a turn prints sensibly. On a terminal,
``prompt`` and ``attach`` ask how to answer permission requests (``mimirctl.ask``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final, TextIO

from mimirctl import render
from mimirctl.client import Client

if TYPE_CHECKING:
    from mimirctl.ask import PermissionAsker

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
#: Exit code of ``prompt`` when the turn ended but not with end_turn.
EXIT_TURN_CANCELLED: Final = 130
#: Statuses in which a session's agent will produce no more events by itself.
_AT_REST: Final = frozenset(
    {"created", "stopped", "failed", "interrupted", "archived", "deleted", "budget_exceeded"}
)


class Renderer:
    """Prints events for a human: agent text as it streams, tool calls with their
    status, the plan, permission requests, and where each turn ended."""

    def __init__(
        self, out: TextIO = sys.stdout, err: TextIO = sys.stderr, *, hints: bool = True
    ) -> None:
        self.out = out
        #: Whether a permission request is followed by the command that answers it
        #: (not in the history, where its answer follows).
        self.hints = hints
        self.err = err
        self.tty = out.isatty()
        self._midline = False
        self._tools: dict[str, str] = {}
        self._section: str | None = None

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.tty else text

    def _line(self, text: str) -> None:
        if self._midline:
            self.out.write("\n")
            self._midline = False
        self.out.write(text + "\n")
        self.out.flush()
        self._section = None

    def _stream(self, section: str, text: str) -> None:
        if self._section != section:
            if self._midline:
                self.out.write("\n")
            if section == "thought":
                self.out.write(self._style("(thinking) ", "2"))
            self._section = section
        self.out.write(self._style(text, "2") if section == "thought" else text)
        self._midline = not text.endswith("\n")
        self.out.flush()

    def event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        data = event.get("data") or {}
        if kind == "update":
            self.update(data.get("update") or {})
        elif kind == "prompt":
            text = " ".join(
                b.get("text", "") for b in data.get("content", []) if isinstance(b, dict)
            )
            self._line(self._style(f"> {text}", "1"))
        elif kind == "turn_ended":
            reason = data.get("stop_reason")
            extra = f": {data['error']}" if data.get("error") else ""
            self._line(self._style(f"[turn ended: {reason}{extra}]", "2"))
        elif kind == "permission_requested":
            self.permission_request(data, hint=self.hints)
        elif kind == "permission_answered":
            self._line(
                self._style(
                    f"  permission {data.get('permission')}: {data.get('outcome')}"
                    + (f" {data['option_id']}" if data.get("option_id") else "")
                    + f" (by {data.get('by')})",
                    "2",
                )
            )
        elif kind == "status_changed":
            if data.get("to") in ("failed", "stopped", "interrupted"):
                self._line(self._style(f"[session {data.get('to')}]", "2"))
        elif kind == "agent_exited" and not data.get("expected"):
            how = data.get("signal") or f"code {data.get('exit_code')}"
            self._line(self._style(f"[agent exited unexpectedly: {how}]", "31"))
            for line in data.get("stderr_tail", [])[-5:]:
                self._line(self._style(f"  {line}", "2"))
        elif kind == "agent_started":
            how = ", its ACP session loaded" if data.get("loaded") else ""
            self._line(self._style(f"[agent started{how}]", "2"))
        elif kind == "agent_restarting":
            self._line(self._style(f"[restarting the agent in {data.get('delay_s')} s]", "2"))
        elif kind == "agent_start_failed":
            self._line(self._style(f"[agent failed to start: {data.get('reason')}]", "31"))
        elif kind == "file_written":
            self._line(self._style(f"  wrote {data.get('path')} ({data.get('bytes')} bytes)", "2"))
        elif kind == "file_refused":
            self._line(self._style(f"  refused {data.get('op')} of {data.get('path')}", "31"))
        elif kind == "terminal_started":
            line = render.printable(" ".join([str(data.get("command")), *data.get("args", [])]))
            where = f" (in {data['cwd']})" if data.get("cwd") not in (None, "", ".") else ""
            self._line(self._style(f"  $ {line}{where}", "2"))
        elif kind == "terminal_exited":
            how = data.get("signal") or f"code {data.get('exit_code')}"
            crash = ", after a crash of mimird" if data.get("after_crash") else ""
            self._line(self._style(f"  [command exited: {how}{crash}]", "2"))
        elif kind == "terminal_refused":
            self._line(
                self._style(f"  refused to run {data.get('command')}: {data.get('reason')}", "31")
            )
        elif kind == "setup_output":
            self._line(self._style(str(data.get("text", "")).rstrip("\n"), "2"))

    def permission_request(self, data: dict[str, Any], *, hint: bool) -> None:
        """A permission request and its options on one line; with ``hint``, how to
        answer it."""
        title = render.permission_title(data)
        options = ", ".join(
            f"{o.get('kind')} ({o.get('optionId')})" for o in data.get("options", [])
        )
        self._line(
            self._style(f"? permission {data.get('permission')} for {title}: {options}", "33")
        )
        if hint:
            self._line(f"  answer: mimirctl permission allow {data.get('permission')}   (or deny)")

    # What PermissionAsker (mimirctl.ask) writes around the user's input.

    def question_line(self, text: str) -> None:
        self._line(self._style(text, "33"))

    def note(self, text: str, style: str | None = "2") -> None:
        self._line(self._style(text, style) if style else text)

    def question(self, text: str) -> None:
        """``text`` with the cursor left after it, for the user to type there."""
        if self._midline:
            self.out.write("\n")
        self.out.write(self._style(text, "1"))
        self.out.flush()
        self._midline = True
        self._section = None

    def typed_line(self) -> None:
        """The user ended a line: the terminal's echo went to the next one."""
        self._midline = False

    def update(self, update: dict[str, Any]) -> None:
        kind = update.get("sessionUpdate")
        if kind in ("agent_message_chunk", "agent_thought_chunk"):
            content = update.get("content") or {}
            if content.get("type") == "text":
                section = "agent" if kind == "agent_message_chunk" else "thought"
                self._stream(section, str(content.get("text", "")))
        elif kind in ("tool_call", "tool_call_update"):
            tool_id = str(update.get("toolCallId"))
            title = update.get("title") or self._tools.get(tool_id) or "tool"
            self._tools[tool_id] = title
            status = update.get("status")
            if kind == "tool_call" or status:
                self._line(self._style(f"  ⚙ {title} [{status or 'pending'}]", "36"))
        elif kind == "plan":
            self._line(self._style("  plan:", "36"))
            for entry in update.get("entries", []):
                mark = {"completed": "x", "in_progress": ">"}.get(entry.get("status"), " ")
                self._line(f"    [{mark}] {entry.get('content')}")

    def finish(self) -> None:
        if self._midline:
            self.out.write("\n")
            self._midline = False
        self.out.flush()


def _emit_json(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _messages(client: Client) -> Iterator[dict[str, Any]]:
    """Every message on the connection (those already read first), forever."""
    while True:
        yield client.notifications.pop(0) if client.notifications else client.read()


def _event_of(message: dict[str, Any], subscription: int) -> dict[str, Any] | None:
    """The event a message carries for ``subscription``, if it carries one."""
    if message.get("method") != "event":
        return None
    params = message.get("params") or {}
    if params.get("subscription") != subscription:
        return None
    event: dict[str, Any] = params["event"]
    return event


def _asker(
    client: Client, args: argparse.Namespace, renderer: Renderer, sub: int
) -> PermissionAsker | None:
    """A :class:`PermissionAsker` when the user is at a terminal and wants to be asked."""
    if args.json or args.no_ask or not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    from mimirctl.ask import PermissionAsker  # termios, select: only when asking

    return PermissionAsker(client, renderer, sub, sys.stdin.fileno())


def cmd_prompt(client: Client, args: argparse.Namespace) -> int:
    text = args.text
    if text == "-":
        text = sys.stdin.read()
    session = client.call("session.get", {"session": args.session})
    sub = client.call("subscribe", {"session": session["id"]})
    client.set_timeout(None)
    prompt_id = client.send("session.prompt", {"session": session["id"], "text": text})
    renderer = Renderer()
    asker = _asker(client, args, renderer, sub["subscription"])
    cancelled = False

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal cancelled
        if cancelled:
            raise KeyboardInterrupt
        cancelled = True
        print("\nmimirctl: cancelling the turn (Ctrl-C again to detach)", file=sys.stderr)
        client.send("session.cancel", {"session": session["id"]})

    previous = signal.signal(signal.SIGINT, on_interrupt)
    result: dict[str, Any] | None = None
    last_seq = 0
    try:
        for message in _messages(client):
            event = _event_of(message, sub["subscription"])
            if event is not None:
                last_seq = event["seq"]
                if args.json:
                    _emit_json(event)
                elif asker is not None and event["kind"] == "permission_requested":
                    asker.ask(event)
                else:
                    renderer.event(event)
            elif message.get("id") == prompt_id:
                result = Client.result(message)
            if result is not None and last_seq >= result["end_seq"]:
                break
    except KeyboardInterrupt:
        renderer.finish()
        print("mimirctl: detached; the session goes on ('mimirctl attach')", file=sys.stderr)
        return EXIT_TURN_CANCELLED
    finally:
        signal.signal(signal.SIGINT, previous)
        renderer.finish()
    assert result is not None  # the loop ends only at the turn's end
    if args.json:
        _emit_json({"result": result})
    if result["stop_reason"] in ("end_turn", "max_tokens", "max_turn_requests", "refusal"):
        return EXIT_OK
    return EXIT_TURN_CANCELLED if result["stop_reason"] == "cancelled" else EXIT_ERROR


def _last_turn_cursor(client: Client, session_id: str) -> int:
    prompts = client.call(
        "session.events",
        {"session": session_id, "kind": "prompt", "newest_first": True, "limit": 1},
    )["events"]
    return prompts[0]["seq"] - 1 if prompts else 0


def cmd_attach(client: Client, args: argparse.Namespace) -> int:
    session = client.call("session.get", {"session": args.session})
    if args.all:
        after = 0
    elif args.after is not None:
        after = args.after
    else:
        after = _last_turn_cursor(client, session["id"])
    sub = client.call("subscribe", {"session": session["id"], "after_seq": after})
    client.set_timeout(None)
    renderer = Renderer()
    asker = _asker(client, args, renderer, sub["subscription"])
    try:
        for message in _messages(client):
            event = _event_of(message, sub["subscription"])
            if event is None:
                continue  # no request of ours is outstanding: nothing else matters
            if args.json:
                _emit_json(event)
            elif asker is not None and event["kind"] == "permission_requested":
                asker.ask(event)
            else:
                renderer.event(event)
            if (
                not args.follow
                and event["kind"] == "status_changed"
                and event["data"].get("to") in _AT_REST
                and event["seq"] >= session["last_seq"]
            ):
                break
    except KeyboardInterrupt:
        pass
    finally:
        renderer.finish()
    return EXIT_OK


def cmd_log(client: Client, args: argparse.Namespace) -> int:
    """The history: prompts, the agent's messages, tool calls, turn ends."""
    session = client.call("session.get", {"session": args.session})
    after = args.after
    renderer = Renderer(hints=False)
    while True:
        page = client.call(
            "session.events", {"session": session["id"], "after_seq": after, "limit": 1000}
        )["events"]
        for event in page:
            if args.json:
                _emit_json(event)
            elif event["kind"] == "message":
                pass  # the chunks it consolidates are shown as they came
            else:
                renderer.event(event)
        if len(page) < 1000:
            break
        after = page[-1]["seq"]
    renderer.finish()
    return EXIT_OK


def _session_line(s: dict[str, Any]) -> str:
    line = f"session {s['id']}: {s['status']}"
    if s.get("failure") and s["status"] == "failed":
        line += f"\n{s['failure']}"
    return line


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    session = client.call("session.get", {"session": args.session})
    result = client.call("session.cancel", {"session": session["id"]})
    what = "setup command" if session["status"] == "preparing" else "turn"
    if args.json:
        _emit_json(result)
    else:
        print(f"{what} cancelled" if result["cancelled"] else f"no {what} was running")
    return EXIT_OK


def cmd_stop(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    session = client.call("session.stop", {"session": args.session})
    _emit_json(session) if args.json else print(_session_line(session))
    return EXIT_OK


def cmd_resume(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    session = client.call("session.resume", {"session": args.session})
    _emit_json(session) if args.json else print(_session_line(session))
    return EXIT_OK


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    result = client.call("session.logs", {"session": args.session, "lines": args.lines})
    if args.json:
        _emit_json(result)
    else:
        for line in result["lines"]:
            print(line)
    return EXIT_OK


def cmd_permission_ls(client: Client, args: argparse.Namespace) -> int:
    params = {"session": args.session} if args.session else {}
    pending = client.call("permission.list", params)["permissions"]
    if args.json:
        _emit_json({"permissions": pending})
        return EXIT_OK
    if not pending:
        print("no pending permission requests")
        return EXIT_OK
    rows = []
    for p in pending:
        tool = p.get("tool_call") or {}
        kinds = ",".join(str(o.get("kind")) for o in p["options"])
        rows.append([p["id"], render.short_id(p["session_id"]), tool.get("title") or "", kinds])
    print(render.table(["ID", "SESSION", "TOOL", "OPTIONS"], rows))
    return EXIT_OK


def cmd_permission_answer(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"permission": args.permission}
    if args.option:
        params["option_id"] = args.option
    elif args.permission_command == "allow":
        params["kind"] = "allow_always" if args.always else "allow_once"
    else:
        params["kind"] = "reject_always" if args.always else "reject_once"
    result = client.call("permission.respond", params)
    if args.json:
        _emit_json(result)
    else:
        print(f"permission {result['permission']}: {result['option_id']}")
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Top-level commands: prompt, attach, log, cancel, stop, resume, logs, permission."""

    def command(name: str, run: Any, summary: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name, parents=[common], help=summary, description=summary[0].upper() + summary[1:] + "."
        )
        sub.set_defaults(run=run)
        return sub

    def ref(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("session", metavar="SESSION", help="session id or unique prefix (4+)")
        return sub

    prompt = ref(
        command(
            "prompt",
            cmd_prompt,
            "send a prompt and stream the reply live (Ctrl-C cancels the turn)",
        )
    )
    prompt.add_argument("text", help="the prompt ('-' reads it from stdin)")
    no_ask = "on a terminal, only print permission requests (do not ask how to answer them)"
    prompt.add_argument("--no-ask", action="store_true", help=no_ask)

    attach = ref(command("attach", cmd_attach, "follow a session live (default: its last turn)"))
    attach.add_argument("--after", type=int, metavar="SEQ", help="from the event after SEQ")
    attach.add_argument("--all", action="store_true", help="from the session's first event")
    attach.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep following after the agent stops (until Ctrl-C)",
    )
    attach.add_argument("--no-ask", action="store_true", help=no_ask)

    log = ref(command("log", cmd_log, "print a session's history: prompts, replies, tools"))
    log.add_argument("--after", type=int, default=0, metavar="SEQ", help="events after SEQ")

    ref(command("cancel", cmd_cancel, "cancel the running turn"))
    ref(command("stop", cmd_stop, "stop the session's agent (its whole process group)"))
    ref(command("resume", cmd_resume, "start the session's agent again"))
    logs = ref(command("logs", cmd_logs, "the agent's stderr (last lines)"))
    logs.add_argument("--lines", "-n", type=int, default=100, metavar="N")

    permission = commands.add_parser(
        "permission", parents=[common], help="answer agents' permission requests"
    )
    permission_commands = permission.add_subparsers(
        dest="permission_command", metavar="COMMAND", required=True
    )
    ls = permission_commands.add_parser("ls", parents=[common], help="pending requests")
    ls.add_argument("--session", "-s", help="only this session's")
    ls.set_defaults(run=cmd_permission_ls)
    for name, summary in (("allow", "allow a request"), ("deny", "reject a request")):
        answer = permission_commands.add_parser(name, parents=[common], help=summary)
        answer.add_argument("permission", metavar="ID", help="the request's id")
        answer.add_argument("--always", action="store_true", help="the *_always option")
        answer.add_argument("--option", metavar="OPTION_ID", help="this exact option")
        answer.set_defaults(run=cmd_permission_answer)
