"""What mimirctl shows of untrusted text: control characters made visible by one
function (``render.visible``), which every printer uses, while ``--json`` stays
exact. (Against a real daemon and agent: test_mimirctl_terminal_injection.py.)"""

from __future__ import annotations

import ast
import io
import json
import re
import sys
import tomllib
import unicodedata
from pathlib import Path
from typing import Final

from hypothesis import given
from hypothesis import strategies as st

from mimirctl import render

#: Unicode's categories of characters a terminal may act on, or that hide or reorder text.
CONTROL_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
#: Format characters that are shown as they are: emoji sequences and several scripts
#: need them, and they neither hide nor reorder text.
JOINERS: Final = frozenset({"\u200c", "\u200d"})
HOSTILE: Final = (
    "\x1b]0;pwned\x07",  # OSC: the window's title
    "\x1b[2J\x1b[H",  # erase the screen, cursor home
    "\x1b[31m",  # colour
    "ok\rFAKE",  # CR: overwrite the line
    "\x9b31m",  # C1 CSI
    "\u202egnp.exe",  # bidi override
    "\u2066x\u2069",  # bidi isolate
    "\ufeff\u200b\U000e0041",  # invisible: BOM, zero-width space, a tag character
    "\x00\x7f\x85\u2028",  # NUL, DEL, NEL, line separator
    "\ud800",  # a lone surrogate (JSON can carry one)
)
hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(sorted({c for s in HOSTILE for c in s} | {"\n", "\t", "\r"})),
        st.characters(min_codepoint=0x80, max_codepoint=0x9F),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    )
)


def is_control(char: str) -> bool:
    return unicodedata.category(char) in CONTROL_CATEGORIES and char not in JOINERS


def controls_in(text: str, allowed: str = "") -> list[str]:
    return [c for c in text if is_control(c) and c not in allowed]


def unvisible(text: str) -> str:
    """The text :func:`render.visible` was given, when it had no ``^`` or ``<``."""

    def back(match: re.Match[str]) -> str:
        if match[1] is not None:
            return "\x7f" if match[1] == "?" else chr(ord(match[1]) - 0x40)
        return chr(int(match[2], 16))

    return re.sub(r"\^(.)|<U\+([0-9A-F]{4,6})>", back, text)


# ---- the one function ---------------------------------------------------------------


def test_every_control_character_of_the_running_pythons_unicode_is_made_visible() -> None:
    # The list in render.py is spelled out (unicodedata costs start-up time): it must
    # cover every such character the Python that runs mimirctl knows of.
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if is_control(char):
            shown = render.visible(char)
            assert shown != char, f"U+{code:04X} is shown as it is"
            assert controls_in(shown) == [], f"U+{code:04X} -> {shown!r}"


def test_control_characters_are_shown_as_less_and_cat_v_show_them() -> None:
    assert render.visible("\x1b]0;pwned\x07") == "^[]0;pwned^G"
    assert render.visible("ok\rFAKE") == "ok^MFAKE"
    assert render.visible("\x00\x7f") == "^@^?"
    assert render.visible("\x9b31m\x85") == "<U+009B>31m<U+0085>"
    assert render.visible("\u202egnp.exe") == "<U+202E>gnp.exe"
    assert render.visible("\U000e0041") == "<U+E0041>"
    assert render.visible("a\nb\tc") == "a^Jb^Ic"
    assert render.visible("a\nb\tc\r\n", multiline=True) == "a\nb\tc^M\n"


def test_joiners_and_other_printable_text_are_shown_as_they_are() -> None:
    family = "\U0001f468\u200d\U0001f469"  # ZWJ
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # ZWNJ
    text = f"caf\u00e9 \u65e5\u672c {family} {persian} ~!@#$%&*()[]{{}}|\\;:'\",./?"
    assert render.visible(text) == text


@given(hostile_text)
def test_one_line_text_keeps_no_control_character(text: str) -> None:
    assert controls_in(render.visible(text)) == []


@given(hostile_text)
def test_multi_line_text_keeps_only_its_newlines_and_tabs(text: str) -> None:
    shown = render.visible(text, multiline=True)
    assert controls_in(shown, allowed="\n\t") == []
    assert shown.count("\n") == text.count("\n")
    assert shown.count("\t") == text.count("\t")


@given(st.text(alphabet=st.characters().filter(lambda c: not is_control(c))))
def test_text_without_control_characters_comes_back_unchanged(text: str) -> None:
    assert render.visible(text) == text
    assert render.visible(text, multiline=True) == text


@given(hostile_text.filter(lambda t: "^" not in t and "<" not in t))
def test_what_was_shown_can_be_read_back(text: str) -> None:
    assert unvisible(render.visible(text)) == text


@given(st.dictionaries(hostile_text, hostile_text | st.lists(hostile_text)))
def test_json_output_is_the_exact_value_with_no_control_character(value: object) -> None:
    printed = render.json_text(value)
    assert json.loads(printed) == value
    assert controls_in(printed, allowed="\n") == []
    line = render.json_line(value)
    assert json.loads(line) == value
    assert controls_in(line) == []


# ---- the printers use it ----------------------------------------------------------------


def test_a_table_cell_cannot_add_a_row_or_move_the_cursor() -> None:
    title = "fix\n01fake  demo  idle\x1b[1A\r"
    text = render.table(["ID", "TITLE"], [["01abc", title], ["01def", "ok"]])
    assert len(text.splitlines()) == 3
    assert "fix^J01fake  demo  idle^[[1A^M" in text
    assert controls_in(text, allowed="\n") == []


def test_a_table_aligns_wide_and_combining_characters_by_the_columns_they_take() -> None:
    rows = [
        ["01abc", "修复登录", "idle"],
        ["01def", "fix 😀", "idle"],
        ["01ghi", "cafe\u0301", "x"],
    ]
    lines = render.table(["ID", "TITLE", "STATUS"], rows).splitlines()
    # TITLE is 8 columns wide (four CJK characters): STATUS starts at column 17 in each line.
    assert lines == [
        "ID     TITLE     STATUS",
        "01abc  修复登录  idle",
        "01def  fix 😀    idle",
        "01ghi  cafe\u0301      x",
    ]
    assert [render.columns(r[1]) for r in rows] == [8, 6, 4]


def test_a_field_keeps_its_lines_indented_and_shows_the_rest() -> None:
    text = render.fields([("title", "a\x1b[2J"), ("task", "one\ntwo\u202e")])
    assert text == "title: a^[[2J\ntask:  one\n       two<U+202E>"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_events_on_a_terminal_carry_only_mimirctls_own_styling() -> None:
    out = Terminal()
    renderer = render.Renderer(out)
    update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text"}}
    for text in HOSTILE:
        renderer.event(
            {
                "kind": "update",
                "data": {"update": {**update, "content": {"type": "text", "text": text + "\n"}}},
            }
        )
    renderer.event(
        {
            "kind": "update",
            "data": {
                "update": {
                    "sessionUpdate": "tool_call",
                    "toolCallId": "t\x1b",
                    "title": "\x1b]0;t\x07\nx",
                }
            },
        }
    )
    renderer.event(
        {
            "kind": "permission_requested",
            "seq": 9,
            "data": {
                "permission": "p\x1b[2J",
                "title": "w\u202e",
                "options": [{"kind": "allow_once\r", "optionId": "\x9b1"}],
            },
        }
    )
    renderer.event({"kind": "turn_ended", "data": {"stop_reason": "end\x07", "error": "e\x1b"}})
    # An agent's reason for a failed session/load, journaled as it said it.
    error = {"loaded": False, "load_error": "No session\x1b[2J (code -32603)"}
    renderer.event({"kind": "agent_started", "data": error})
    handoff = {"bytes": 120, "turns": 2, "cut": True, "reason": "load_failed"}
    renderer.event({"kind": "handoff_sent", "data": handoff})
    renderer.finish()
    own = re.compile(r"\x1b\[[0-9;]*m")  # the Renderer's SGR styling
    shown = own.sub("", out.getvalue())
    assert controls_in(shown, allowed="\n") == []
    assert "^[]0;pwned^G" in shown
    assert "⚙ ^[]0;t^G^Jx [pending]" in shown
    assert "? permission p^[[2J for w<U+202E>: allow_once^M (<U+009B>1)" in shown
    assert "[turn ended: end^G: e^[]" in shown
    assert "[agent started fresh: session/load failed: No session^[[2J (code -32603)]" in shown
    assert "[earlier conversation sent with the prompt: 2 turns, 120 bytes, older turns" in shown


#: Every kind the Renderer shows, and the members it reads.
RENDERED_KINDS: Final = (
    "update", "prompt", "turn_ended", "budget_warning", "budget_exceeded",
    "session_completed", "permission_requested", "permission_answered",
    "permission_decided", "status_changed", "agent_exited", "agent_started",
    "handoff_sent", "agent_restarting", "agent_start_failed", "file_written",
    "file_refused", "terminal_started", "terminal_exited", "terminal_refused",
    "setup_output", "model_changed", "mode_changed", "setting_failed", "prompt_failed",
)  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)
KEYS: Final = (
    "update", "sessionUpdate", "content", "type", "text", "entries", "status", "title",
    "toolCallId", "tool_call", "options", "permission", "policy", "rule", "args", "command",
    "stderr_tail", "error", "reason", "files", "stop_reason", "data", "kind", "optionId",
)  # fmt: skip


def shaped(depth: int = 2) -> st.SearchStrategy[object]:
    """JSON whose objects use the members the Renderer reads, any value in each."""
    if depth == 0:
        return json_values
    return st.one_of(
        json_values,
        st.lists(shaped(depth - 1), max_size=3),
        st.dictionaries(st.sampled_from(KEYS), shaped(depth - 1), max_size=5),
    )


@given(kind=st.sampled_from(RENDERED_KINDS), data=shaped(3))
def test_any_json_in_an_events_data_is_shown_without_a_crash(kind: str, data: object) -> None:
    # An agent's update or request is journaled as it came: what ACP says is an
    # object may be a list or a string there (attach died on one).
    out = Terminal()
    renderer = render.Renderer(out, pending=["p"])
    renderer.event({"kind": kind, "seq": 5, "data": data})
    if isinstance(data, dict):
        renderer.event({"kind": "update", "data": {"update": data}})
        renderer.permission_request(data, hint=True)
    renderer.finish()
    assert controls_in(re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()), allowed="\n\t") == []


MIMIRCTL: Final = Path(render.__file__).parent
#: The one module that writes to stdout or stderr.
#: The modules that write: render.py, and two that write machine streams that never
#: go to a terminal: the ACP connection to the editor (acp/loop.py, JSON-RPC on a pipe)
#: and an export file (commands/transfer.py refuses a terminal).
WRITERS: Final = frozenset({"render.py", "loop.py", "transfer.py"})


def test_only_the_render_module_prints_text() -> None:
    # A command that prints untrusted text must go through render.say (or emit); a
    # print() or a write() of its own would bypass render.visible.
    bypasses = []
    for path in sorted(MIMIRCTL.rglob("*.py")):
        if path.name in WRITERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            prints = isinstance(func, ast.Name) and func.id == "print"
            writes = isinstance(func, ast.Attribute) and func.attr in ("write", "writelines")
            if prints or writes:
                bypasses.append(f"{path.relative_to(MIMIRCTL)}:{node.lineno}")
    assert bypasses == []


def test_config_values_stay_valid_toml_with_their_control_characters_escaped() -> None:
    values = {"setup_command": "echo \x1b]0;t\x07\u202e\x85\U000e0041", "k\u202e": "v"}
    text = render.toml_lines(values)
    assert controls_in(text, allowed="\n") == []
    assert tomllib.loads(text) == values
