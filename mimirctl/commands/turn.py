"""A session's conversation: ``prompt`` (send one and stream the reply),
``attach`` (follow it live), ``log`` (its history) and ``cancel``.

Rendering is line-oriented and stateless per event, so that ``attach`` from the
middle of a turn prints sensibly. On a terminal, ``prompt`` and ``attach`` ask
how to answer permission requests (``mimirctl.ask``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Final

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_ERROR, EXIT_OK, UsageError, add_command, template_vars
from mimirctl.render import Renderer
from mimirctl.stream import (
    asker,
    emit_json,
    event_of,
    history,
    messages,
    next_message,
    pending_permissions,
)

#: Exit code of ``prompt`` when the turn ended but not with end_turn.
EXIT_TURN_CANCELLED: Final = 130
#: Statuses in which a session is not at rest: a setup command or a turn runs, a
#: permission request waits for an answer, or the agent is starting.
_BUSY: Final = frozenset({"preparing", "starting", "running", "awaiting_permission"})


def prompt_params(args: argparse.Namespace) -> dict[str, Any]:
    """The prompt of ``args``: its text (``-`` reads stdin), or ``--template`` with ``--var``."""
    if (args.text is None) == (args.template is None):
        raise UsageError("give the prompt's text or --template NAME (not both)")
    if args.var and args.template is None:
        raise UsageError("--var goes with --template")
    if args.template is not None:
        return {"template": args.template, "vars": template_vars(args.var)}
    return {"text": sys.stdin.read() if args.text == "-" else args.text}


def cmd_prompt(client: Client, args: argparse.Namespace) -> int:
    prompt = prompt_params(args)
    session = client.call("session.get", {"session": args.session})
    sub = client.call("subscribe", {"session": session["id"]})
    client.set_timeout(None)
    prompt_id = client.send("session.prompt", {"session": session["id"], **prompt})
    renderer = Renderer()
    asking = asker(client, args, renderer, sub["subscription"])
    cancelled = False

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal cancelled
        if cancelled:
            raise KeyboardInterrupt
        cancelled = True
        render.say("\nmimirctl: cancelling the turn (Ctrl-C again to detach)", err=True)
        client.send("session.cancel", {"session": session["id"]})

    previous = signal.signal(signal.SIGINT, on_interrupt)
    result: dict[str, Any] | None = None
    last_seq = 0
    try:
        for message in messages(client):
            event = event_of(message, sub["subscription"])
            if event is not None:
                last_seq = event["seq"]
                if args.json:
                    emit_json(event)
                elif asking is not None and event["kind"] == "permission_requested":
                    asking.ask(event)
                else:
                    renderer.event(event)
            elif message.get("id") == prompt_id:
                result = Client.result(message)
            if result is not None and last_seq >= result["end_seq"]:
                break
    except KeyboardInterrupt:
        renderer.finish()
        render.say("mimirctl: detached; the session goes on ('mimirctl attach')", err=True)
        return EXIT_TURN_CANCELLED
    finally:
        signal.signal(signal.SIGINT, previous)
        renderer.finish()
    assert result is not None  # the loop ends only at the turn's end
    if args.json:
        emit_json({"result": result})
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
    """Replay from ``after`` (default: the last turn's prompt), then follow live.
    Without ``--follow``, end once the replay is done and the agent is at rest: no
    turn running, no permission request waiting, nothing starting."""
    session = client.call("session.get", {"session": args.session})
    if args.all:
        after = 0
    elif args.after is not None:
        after = args.after
    else:
        after = _last_turn_cursor(client, session["id"])
    # Listed after session.get: a request journaled up to its last_seq and not
    # listed now was answered (the daemon drops a request before it journals the
    # answer); one journaled later is live, and is hinted as it comes.
    pending = pending_permissions(client, session["id"])
    sub = client.call("subscribe", {"session": session["id"], "after_seq": after})
    client.set_timeout(None)
    renderer = Renderer(replayed_until=session["last_seq"], pending=pending)
    asking = asker(client, args, renderer, sub["subscription"])
    # The status as of the last event seen, once the replay is done.
    status = session["status"]
    seen = after
    try:
        while args.follow or seen < session["last_seq"] or status in _BUSY:
            message = next_message(client)
            event = event_of(message, sub["subscription"])
            if event is None:
                continue  # no request of ours is outstanding: nothing else matters
            if args.json:
                emit_json(event)
            elif asking is not None and event["kind"] == "permission_requested":
                asking.ask(event)
            else:
                renderer.event(event)
            seen = event["seq"]
            if event["kind"] == "status_changed" and seen > session["last_seq"]:
                status = event["data"].get("to")
    except KeyboardInterrupt:
        pass
    finally:
        renderer.finish()
    return EXIT_OK


def cmd_log(client: Client, args: argparse.Namespace) -> int:
    """The history: prompts, the agent's messages, tool calls, turn ends."""
    session = client.call("session.get", {"session": args.session})
    pending = pending_permissions(client, session["id"])
    renderer = Renderer(replayed_until=session["last_seq"], pending=pending)
    for event in history(client, session["id"], args.after):
        if args.json:
            emit_json(event)
        elif event["kind"] == "message":
            pass  # the chunks it consolidates are shown as they came
        else:
            renderer.event(event)
    renderer.finish()
    return EXIT_OK


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    session = client.call("session.get", {"session": args.session})
    result = client.call("session.cancel", {"session": session["id"]})
    what = "setup command" if session["status"] == "preparing" else "turn"
    if args.json:
        emit_json(result)
    else:
        render.say(f"{what} cancelled" if result["cancelled"] else f"no {what} was running")
    return EXIT_OK


def add_template_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--template", metavar="NAME", help="a prompt template ('mimirctl template ls')"
    )
    parser.add_argument(
        "--var",
        action="append",
        metavar="KEY=VALUE",
        help="a value for the template's {KEY} (repeat for each)",
    )


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    no_ask = "on a terminal, only print permission requests (do not ask how to answer them)"
    prompt = add_command(
        commands,
        common,
        "prompt",
        cmd_prompt,
        "send a prompt and stream the reply live (Ctrl-C cancels the turn)",
        session=True,
    )
    prompt.add_argument("text", nargs="?", help="the prompt ('-' reads it from stdin)")
    add_template_options(prompt)
    prompt.add_argument("--no-ask", action="store_true", help=no_ask)

    attach = add_command(
        commands,
        common,
        "attach",
        cmd_attach,
        "follow a session live (default: its last turn)",
        session=True,
    )
    attach.add_argument("--after", type=int, metavar="SEQ", help="from the event after SEQ")
    attach.add_argument("--all", action="store_true", help="from the session's first event")
    attach.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep following after the agent stops (until Ctrl-C)",
    )
    attach.add_argument("--no-ask", action="store_true", help=no_ask)

    log = add_command(
        commands,
        common,
        "log",
        cmd_log,
        "print a session's history: prompts, replies, tools",
        session=True,
    )
    log.add_argument("--after", type=int, default=0, metavar="SEQ", help="events after SEQ")

    add_command(commands, common, "cancel", cmd_cancel, "cancel the running turn", session=True)
