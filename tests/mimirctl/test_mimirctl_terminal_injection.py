"""An agent (or whoever names a session) cannot drive the user's terminal through
mimirctl: its text, tool-call titles, permission options, stderr, session titles and
the daemon's error messages that quote them are shown with their control characters
made visible, through a pipe and on a terminal, while ``--json`` gives them exactly.
A real daemon; the scripted fake ACP agent plays the hostile agent."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Final

import trio

from tests.mimirctl.test_mimirctl_attach import following, mimirctl
from tests.mimirctl.test_mimirctl_permission_tty import Terminal
from tests.support.agents import Client, agent_world
from tests.support.helpers import DaemonDirs

#: Window title (OSC), erase and home, colour, a CR that overwrites the line, a C1
#: CSI, a bidi override, a zero-width space.
AGENT_TEXT: Final = (
    "pwned \x1b]0;agent-title\x07 \x1b[2J\x1b[H\x1b[31mred\rFAKE \x9b1m \u202eevil\u200b\n"
)
TOOL_TITLE: Final = "Edit \x1b]0;tool-title\x07 \u202egnp.exe"
PERMISSION_TITLE: Final = "Write \x1b[2Ja.txt\r"
SESSION_TITLE: Final = "fix \x1b]0;session-title\x07 \u202eit\x9b"
DESCRIPTION: Final = "api \x1b]0;project-title\x07\x85"
STDERR_LINE: Final = "oops \x1b]0;stderr-title\x07\x1b[2K"
REQUEST: Final = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t2", "title": PERMISSION_TITLE},
        "options": [
            {"optionId": "yes", "name": "Allow \x1b]0;option-title\x07once", "kind": "allow_once"},
            {"optionId": "no", "name": "Reject\u202e", "kind": "reject_once"},
        ],
    },
}
SCENARIO: Final = {
    "prompts": [
        [
            {
                "do": "update",
                "update": {
                    "sessionUpdate": "agent_message_chunk",
                    "content": {"type": "text", "text": AGENT_TEXT},
                },
            },
            {
                "do": "update",
                "update": {
                    "sessionUpdate": "tool_call",
                    "toolCallId": "t1",
                    "title": TOOL_TITLE,
                    "status": "pending",
                },
            },
            {"do": "stderr", "text": STDERR_LINE},
            REQUEST,
        ]
    ]
}
#: mimirctl's own styling on a terminal (SGR sequences), the only escapes it may print.
OWN_STYLING: Final = re.compile(r"\x1b\[[0-9;]*m")


def raw_controls(text: str) -> list[str]:
    """The characters of ``text`` a terminal would act on, or that hide or reorder
    text: C0 (but newline and tab), DEL, C1, format characters (but the joiners),
    separators, surrogates."""
    return [
        c
        for c in text
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") and c not in "\n\t\u200c\u200d"
    ]


async def hostile_session(c: Client, project: str) -> str:
    await c.call("project.update", {"project": project, "description": DESCRIPTION})
    session = await c.call("session.create", {"project": project, "title": SESSION_TITLE})
    session_id: str = session["id"]
    return session_id


async def test_what_an_agent_and_a_title_carry_reaches_a_pipe_made_visible(
    dirs: DaemonDirs,
) -> None:
    shown: dict[str, str] = {}
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as c:
        session_id = await hostile_session(c, world.project)
        async with trio.open_nursery() as nursery:
            prompt = await following(dirs, nursery, "prompt", session_id, "go")
            await prompt.expect("? permission")
            listed = await mimirctl(dirs, "permission", "ls")
            shown["permission ls"] = listed.stdout.decode()
            pending = (await c.call("permission.list", {"session": session_id}))["permissions"]
            await c.call(
                "permission.respond", {"permission": pending[0]["id"], "kind": "allow_once"}
            )
            code, shown["prompt"] = await prompt.rest()
        assert code == 0, shown["prompt"]
        for args in (
            ("log", session_id),
            ("attach", session_id, "--all"),
            ("session", "ls"),
            ("session", "show", session_id),
            ("session", "log", session_id),
            ("project", "show", "demo"),
            ("search", "pwned"),
            ("logs", session_id),
        ):
            done = await mimirctl(dirs, *args)
            assert done.returncode == 0, done.stderr
            shown[" ".join(args[:2])] = done.stdout.decode() + done.stderr.decode()
    for command, text in shown.items():
        assert raw_controls(text) == [], f"mimirctl {command}:\n{text}"
    assert (
        "pwned ^[]0;agent-title^G ^[[2J^[[H^[[31mred^MFAKE <U+009B>1m <U+202E>evil<U+200B>\n"
        in (shown["prompt"])
    )
    assert "⚙ Edit ^[]0;tool-title^G <U+202E>gnp.exe [pending]" in shown["prompt"]
    assert "for Write ^[[2Ja.txt^M: allow_once (yes), reject_once (no)" in shown["prompt"]
    assert shown["log " + session_id] in shown["attach " + session_id]
    assert "^[]0;agent-title^G" in shown["log " + session_id]
    assert "Write ^[[2Ja.txt^M" in shown["permission ls"]
    assert "fix ^[]0;session-title^G <U+202E>it<U+009B>" in shown["session ls"]
    assert "title:        fix ^[]0;session-title^G <U+202E>it<U+009B>" in shown["session show"]
    assert "api ^[]0;project-title^G<U+0085>" in shown["project show"]
    assert "^[]0;agent-title^G" in shown["search pwned"]
    assert "oops ^[]0;stderr-title^G^[[2K" in shown["logs " + session_id]


async def test_json_output_carries_the_same_text_exactly(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as c:
        session_id = await hostile_session(c, world.project)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            listed = await c.until(
                "permission.list", {"session": session_id}, lambda r: r["permissions"]
            )
            await c.call(
                "permission.respond",
                {"permission": listed["permissions"][0]["id"], "kind": "allow_once"},
            )
        events = (await c.call("session.events", {"session": session_id}))["events"]
        log = await mimirctl(dirs, "log", session_id, "--json")
        show = await mimirctl(dirs, "session", "show", session_id, "--json")
    assert log.returncode == show.returncode == 0
    printed = [json.loads(line) for line in log.stdout.decode().splitlines()]
    assert printed == events
    assert any(
        (e["data"].get("update") or {}).get("content", {}).get("text") == AGENT_TEXT
        for e in printed
    )
    assert json.loads(show.stdout)["title"] == SESSION_TITLE
    for output in (log.stdout.decode(), show.stdout.decode()):
        assert raw_controls(output) == []


async def test_an_error_message_quoting_hostile_text_is_made_visible(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}):
        done = await mimirctl(dirs, "project", "add", "/nowhere/\x1b]0;error-title\x07\u202e")
    assert done.returncode == 2
    error = done.stderr.decode()
    assert error.startswith("mimirctl: ")
    assert raw_controls(error) == [], error


async def test_the_question_on_a_terminal_shows_the_options_made_visible(
    dirs: DaemonDirs,
) -> None:
    scenario: dict[str, Any] = {"prompts": [[*SCENARIO["prompts"][0]]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await hostile_session(c, world.project)
        async with Terminal.run(dirs, "prompt", session_id, "go") as term:
            await term.expect("Enter to leave it for later: ")
            term.type("1\n")
            await term.expect("[turn ended: end_turn]")
            assert await term.exit_code() == 0
            screen = term.screen
    assert OWN_STYLING.search(screen), "no styling: was this a terminal?"
    plain = OWN_STYLING.sub("", screen)
    assert raw_controls(plain) == [], plain
    assert "? permission" in plain
    assert "for Write ^[[2Ja.txt^M" in plain
    assert "[1] Allow ^[]0;option-title^Gonce  [2] Reject<U+202E>" in plain
    assert "pwned ^[]0;agent-title^G ^[[2J^[[H^[[31mred^MFAKE" in plain
    assert "⚙ Edit ^[]0;tool-title^G <U+202E>gnp.exe [pending]" in plain


async def test_a_patch_is_exact_in_a_pipe_and_made_visible_on_a_terminal(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await hostile_session(c, world.project)
        session = await c.call("session.get", {"session": session_id})
        workspace = Path(session["workspace"]["path"])
        (workspace / "notes.txt").write_text("a \x1b]0;file-title\x07 b\r\n\u202ec\n")
        (workspace / "e\x1b[2J.txt").write_text("named\n")
        patch = (await c.call("session.diff", {"session": session_id, "patch": True}))["patch"]
        piped = await mimirctl(dirs, "session", "diff", session_id, "--patch")
        files = await mimirctl(dirs, "session", "diff", session_id)
        async with Terminal.run(dirs, "session", "diff", session_id, "--patch") as term:
            assert await term.exit_code() == 0
            screen = term.screen
    assert piped.returncode == files.returncode == 0
    assert "\x1b]0;file-title\x07" in patch
    assert piped.stdout.decode() == patch  # for `git apply`
    assert raw_controls(files.stdout.decode()) == []
    assert raw_controls(screen) == [], screen
    assert "+a ^[]0;file-title^G b^M" in screen
    assert "+<U+202E>c" in screen


#: What ACP says is an object or an array, sent as something else: kept in the
#: journal as it came, and read by mimirctl without a traceback.
MISSHAPEN: Final = {
    "prompts": [
        [
            {"do": "update", "update": {"sessionUpdate": "agent_message_chunk", "content": []}},
            {"do": "update", "update": {"sessionUpdate": "agent_thought_chunk", "content": "x"}},
            {"do": "update", "update": {"sessionUpdate": "plan", "entries": "\x1b[2Jall"}},
            {"do": "update", "update": {"sessionUpdate": "plan", "entries": {"a": 1}}},
            {
                "do": "request",
                "method": "session/request_permission",
                "params": {
                    "sessionId": "sess-1",
                    "toolCall": ["Write", "\x1b[2Ja.txt"],
                    "options": [7, {"optionId": "yes", "kind": "allow_once"}],
                },
            },
            {"do": "say", "text": "still here"},
        ]
    ]
}


async def test_an_agents_misshapen_updates_and_request_do_not_break_mimirctl(
    dirs: DaemonDirs,
) -> None:
    # attach and log died with AttributeError ('list' object has no attribute
    # 'get'), and permission ls too, on an update whose content, or a permission
    # request whose toolCall, was not an object.
    async with agent_world(dirs, MISSHAPEN) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call("session.create", {"project": world.project, "title": "t"})
        session_id = session["id"]
        async with trio.open_nursery() as nursery:
            prompt = await following(dirs, nursery, "prompt", session_id, "go")
            await prompt.expect("? permission")
            listed = await mimirctl(dirs, "permission", "ls")
            assert listed.returncode == 0, listed.stderr
            pending = (await c.call("permission.list", {"session": session_id}))["permissions"]
            assert pending[0]["tool_call"] == ["Write", "\x1b[2Ja.txt"]  # kept as it came
            await c.call(
                "permission.respond", {"permission": pending[0]["id"], "kind": "allow_once"}
            )
            code, shown = await prompt.rest()
        assert code == 0, shown
        assert "? permission" in shown
        assert "for a tool: allow_once (yes)" in shown
        assert "still here" in shown
        for args in (("log", session_id), ("attach", session_id, "--all")):
            done = await mimirctl(dirs, *args)
            assert done.returncode == 0, done.stderr
            text = done.stdout.decode()
            assert "still here" in text
            assert raw_controls(text) == [], text
