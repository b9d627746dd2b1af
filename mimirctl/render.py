"""Human-readable output: aligned tables, key/value blocks, the small formatters
the commands share (short ids, ages, TOML-ish config values), and the
:class:`Renderer` that prints a session's events as they stream.

Everything mimirctl prints goes out from here, and every string in it that mimirctl
did not write itself passes :func:`visible` first, so that no agent, title or name
can drive the user's terminal (invariant 11); ``--json`` output is exact."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Collection
    from typing import Any, Final, TextIO

#: Characters of an id shown in tables; `session show` and friends print it whole.
SHORT_ID: Final = 10
#: Characters of a commit hash shown (git's own default abbreviation).
SHORT_COMMIT: Final = 7
ELLIPSIS: Final = "…"
_BARE_KEY: Final = r"^[A-Za-z0-9_-]+$"
_BARE_VALUE: Final = r"^[^\s\"'=]+$"
#: How a search hit's matches are shown: bold on a terminal, brackets otherwise.
BOLD: Final = ("\x1b[1m", "\x1b[22m")
BRACKETS: Final = ("[", "]")
#: What :func:`visible` shows rather than prints: C0 controls and DEL (ESC, which starts
#: every terminal escape, and CR, which lets a line overwrite itself, among them); C1
#: controls (U+009B is a CSI of its own); Unicode's format characters (bidi overrides and
#: isolates, zero-width and invisible characters, tag characters) but the zero-width
#: (non-)joiners that emoji and several scripts need; the line and paragraph separators;
#: lone surrogates (which could not even be encoded). Unicode 15's ``Cc``, ``Cf``, ``Zl``,
#: ``Zp`` and ``Cs``, spelled out: ``unicodedata`` would cost start-up time (a test holds
#: the list to the running Python's tables).
_CONTROLS: Final = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    r"\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff"
    r"\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_CONTROL: Final = re.compile(f"[{_CONTROLS}]")
#: The same, but newline and tab: multi-line text keeps its lines and indentation.
_CONTROL_IN_TEXT: Final = re.compile(f"(?![\n\t])[{_CONTROLS}]")
#: Whitespace that a one-line excerpt folds into one space.
_WHITESPACE_RUN: Final = re.compile(r"[ \t\n]+")


# ---- untrusted text on a terminal -----------------------------------------------------


def _shown(match: re.Match[str]) -> str:
    code = ord(match[0])
    if code < 0x20:
        return "^" + chr(code + 0x40)
    return "^?" if code == 0x7F else f"<U+{code:04X}>"


def visible(text: str, *, multiline: bool = False) -> str:
    """``text`` as it may reach a terminal: every control character (see ``_CONTROLS``)
    made visible, as ``less`` and ``cat -v`` show them: C0 controls and DEL in caret
    notation (ESC is ``^[``, CR ``^M``, DEL ``^?``), the others as ``<U+202E>``. With
    ``multiline``, newline and tab are kept. Text without control characters comes
    back unchanged. Every string mimirctl prints that did not come from mimirctl
    itself (agent text, titles, names, paths, the daemon's messages) goes through
    here, except in ``--json`` output, which is exact."""
    return (_CONTROL_IN_TEXT if multiline else _CONTROL).sub(_shown, text)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    if code > 0xFFFF:  # JSON spells a character past the BMP as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def say(text: str, *, err: bool = False, exact: bool = False) -> None:
    """Print ``text`` and a newline on stdout (or stderr), made :func:`visible` with
    its lines kept; ``exact`` when the text is safe as it is: JSON from
    :func:`json_text`, or lines made visible piece by piece that carry mimirctl's own
    styling. The commands print through here (events stream through :class:`Renderer`)."""
    print(text if exact else visible(text, multiline=True), file=sys.stderr if err else sys.stdout)


def write_exact(text: str) -> None:
    """``text`` on stdout as it is, no newline added: only text mimirctl made itself
    (a completion script from its own parser) or already made :func:`visible`."""
    sys.stdout.write(text)


def write_patch(patch: str) -> None:
    """A patch exactly as git wrote it into a pipe or a file (for ``git apply``); on a
    terminal, made :func:`visible` (tabs and lines kept), since it holds file contents
    the agent wrote."""
    sys.stdout.write(visible(patch, multiline=True) if sys.stdout.isatty() else patch)


# ---- tables and fields -------------------------------------------------------------


def columns(text: str) -> int:
    """How many terminal columns ``text`` (made :func:`visible`) takes: East Asian wide
    and fullwidth characters (CJK, most emoji) two, combining marks none, others one."""
    if text.isascii():
        return len(text)
    import unicodedata  # ~0.3 ms, only for text that needs it

    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns (by the terminal columns each cell takes: a CJK title is as wide
    as it shows); each cell on one line, made :func:`visible`."""
    cells = [[visible(str(h)) for h in headers]] + [
        ["" if v is None else visible(str(v)) for v in r] for r in rows
    ]
    sizes = [[columns(cell) for cell in row] for row in cells]
    widths = [max(row[i] for row in sizes) for i in range(len(headers))]
    lines = [
        "  ".join(
            cell + " " * (width - size)
            for cell, size, width in zip(row, row_sizes, widths, strict=True)
        ).rstrip()
        for row, row_sizes in zip(cells, sizes, strict=True)
    ]
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``key: value`` lines, values aligned and made :func:`visible`; a multi-line
    value's further lines are indented to the value column."""
    width = max(len(k) for k, _ in pairs)
    out = []
    for key, value in pairs:
        if isinstance(value, dict | list):
            value = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        first, *rest = visible(str(value), multiline=True).split("\n")
        out.append(f"{key + ':':<{width + 1}} {first}".rstrip())
        out.extend((" " * (width + 2) + line).rstrip() for line in rest)
    return "\n".join(out)


def json_text(value: Any) -> str:
    """``value`` as indented JSON, non-ASCII text as it is but for the characters
    :func:`visible` would show, which are escaped (``\\u001b``, ``\\u202e``): the same
    JSON value, and nothing a terminal acts on."""
    return _CONTROL_IN_TEXT.sub(_json_escape, json.dumps(value, indent=2, ensure_ascii=False))


def json_line(value: Any) -> str:
    """``value`` as JSON on one line (ASCII, DEL escaped too), for NDJSON output."""
    return _CONTROL.sub(_json_escape, json.dumps(value, separators=(",", ":")))


def _figure(value: Any) -> str:
    """A budget's figure as sent (tokens or USD): a whole number with thousands
    separators, else the number as is; anything else made visible."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4f}"
    return visible(str(value))


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {s}s"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{seconds:.1f}s"


def usage(u: Mapping[str, Any]) -> str:
    """Tokens and cost of a turn or a sum of turns, on one line."""
    parts = [f"in {u['input_tokens']:,}", f"out {u['output_tokens']:,}"]
    parts += [
        f"{name} {u[f'{name}_tokens']:,}" for name in ("cached", "thought") if u[f"{name}_tokens"]
    ]
    turns = u["turns"]
    return (
        f"{u['total_tokens']:,} tokens ({', '.join(parts)}), {u['cost_usd']:.4f} USD, "
        f"{turns} turn{'s' if turns != 1 else ''}"
    )


# ---- small formatters -------------------------------------------------------------


def short_id(value: str | None) -> str:
    return value[:SHORT_ID] if value else "-"


def short_commit(value: str | None) -> str:
    return value[:SHORT_COMMIT] if value else "-"


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def parse_timestamp(value: str) -> dt.datetime:
    """A daemon timestamp (ISO 8601 UTC, ``Z``-suffixed or naive) as an aware datetime."""
    import datetime as dt  # only where times are shown: it costs start-up time

    when = dt.datetime.fromisoformat(value.removesuffix("Z"))
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def age(value: str, now: dt.datetime | None = None) -> str:
    """How long ago a daemon timestamp was: ``42s ago``, ``5m ago``, ``3h ago``,
    ``6d ago``; the date itself after a month."""
    import datetime as dt

    try:
        when = parse_timestamp(value)
    except ValueError:
        return value
    seconds = int(((now or dt.datetime.now(dt.UTC)) - when).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            if unit == "d" and seconds >= 31 * 86400:
                return when.strftime("%Y-%m-%d")
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


# ---- config values as TOML ----------------------------------------------------------


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's); what :func:`visible` would
    show escaped, as ``\\u202e`` or ``\\U000e0041``."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match[0])
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    return _CONTROL.sub(escape, json.dumps(text, ensure_ascii=False))


def toml_key(key: str) -> str:
    return key if re.match(_BARE_KEY, key) else _toml_string(key)


def toml_value(value: Any) -> str:
    """A value as TOML writes it (JSON's string escapes are TOML's); ``None``, which
    TOML cannot say, as ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + (f" {inner} " if inner else "") + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=str)


def toml_lines(values: Mapping[str, Any]) -> str:
    """Effective config as a TOML document: plain keys first, then a table per map.
    A key whose value is ``None`` (unset: unlimited, nothing to run) is a comment,
    so the text stays valid TOML that can be pasted into ``[defaults]``."""
    plain = sorted((k, v) for k, v in values.items() if not isinstance(v, Mapping))
    maps = sorted((k, v) for k, v in values.items() if isinstance(v, Mapping))
    out = [
        f"# {toml_key(k)} is not set" if v is None else f"{toml_key(k)} = {toml_value(v)}"
        for k, v in plain
    ]
    for key, members in maps:
        out.append("")
        out.append(f"[{toml_key(key)}]")
        out.extend(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in members.items())
    return "\n".join(out)


def compact(data: Mapping[str, Any]) -> str:
    """An event's data on one line: ``key=value`` pairs, values in JSON unless they
    are plain words."""
    parts = []
    for key, value in data.items():
        if isinstance(value, str) and re.match(_BARE_VALUE, value):
            text = value
        else:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(f"{key}={text}")
    return " ".join(parts)


def turn_files(data: Mapping[str, Any]) -> str:
    """What a ``turn_ended`` says of the files the turn changed, in a few words (nothing
    when it changed none, or they were not computed)."""
    files = data.get("files")
    if not isinstance(files, list):
        return ""
    count = len(files) + int(data.get("files_more") or 0)
    if not count:
        return ""  # nothing changed: nothing to say
    added = sum(int(f.get("insertions") or 0) for f in files if isinstance(f, dict))
    removed = sum(int(f.get("deletions") or 0) for f in files if isinstance(f, dict))
    return f"{count} file{'' if count == 1 else 's'} +{added} -{removed}"


def as_dict(value: Any) -> Mapping[str, Any]:
    """``value`` if it is an object, else an empty one. What an agent sent is kept in
    the journal as it came, any JSON where ACP says object: read through this, a
    list or a string there is nothing instead of a crash."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is an array, else an empty one (see :func:`as_dict`)."""
    return value if isinstance(value, list) else []


def permission_title(data: Mapping[str, Any]) -> str:
    """What a ``permission_requested`` event asks about: its tool call's title."""
    return str(data.get("title") or as_dict(data.get("tool_call")).get("title") or "a tool")


def snippet(parts: Sequence[Mapping[str, Any]], marks: tuple[str, str] = BRACKETS) -> str:
    """A search hit's excerpt on one line (its whitespace folded), made :func:`visible`,
    each matched part between ``marks``."""
    out = []
    for part in parts:
        text = visible(_WHITESPACE_RUN.sub(" ", part["text"]))
        out.append(f"{marks[0]}{text}{marks[1]}" if part["match"] else text)
    return "".join(out).strip()


def highlight_marks(stream: Any = None) -> tuple[str, str]:
    """Bold on a terminal (unless NO_COLOR is set), brackets in a pipe or a file."""
    stream = sys.stdout if stream is None else stream
    if stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb":
        return BOLD
    return BRACKETS


# ---- a session's events ---------------------------------------------------------------


class Renderer:
    """Prints events for a human: agent text as it streams, tool calls with their
    status, the plan, permission requests, and where each turn ended. Every line and
    every streamed piece is made :func:`visible` (its lines kept) before mimirctl's own
    styling is put around it; what must stay on one line (titles, names, paths) is
    made visible where it is put in."""

    def __init__(
        self,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
        *,
        replayed_until: int = 0,
        pending: Collection[str] = (),
    ) -> None:
        """Events after seq ``replayed_until`` are live; those up to it are history,
        where a permission request is followed by the command that answers it only
        if it is still ``pending`` (the others' answers follow in the history)."""
        self.out = out
        self.replayed_until = replayed_until
        self.pending = frozenset(pending)
        self.err = err
        self.tty = out.isatty()
        self._midline = False
        self._tools: dict[str, str] = {}
        self._section: str | None = None

    def _style(self, text: str, code: str | None) -> str:
        return f"\033[{code}m{text}\033[0m" if self.tty and code else text

    def _line(self, text: str, style: str | None = None) -> None:
        if self._midline:
            self.out.write("\n")
            self._midline = False
        self.out.write(self._style(visible(text, multiline=True), style) + "\n")
        self.out.flush()
        self._section = None

    def _stream(self, section: str, text: str) -> None:
        if self._section != section:
            if self._midline:
                self.out.write("\n")
            if section == "thought":
                self.out.write(self._style("(thinking) ", "2"))
            self._section = section
        text = visible(text, multiline=True)
        self.out.write(self._style(text, "2") if section == "thought" else text)
        self._midline = not text.endswith("\n")
        self.out.flush()

    def event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        data = as_dict(event.get("data"))
        if kind == "update":
            self.update(as_dict(data.get("update")))
        elif kind == "prompt":
            text = " ".join(
                str(b.get("text", "")) for b in as_list(data.get("content")) if isinstance(b, dict)
            )
            self._line(f"> {text}", "1")
        elif kind == "turn_ended":
            reason = visible(str(data.get("stop_reason")))
            extra = f": {visible(str(data['error']))}" if data.get("error") else ""
            files = turn_files(data)
            if data.get("reason"):  # Mimir cancelled it: turn_timeout, budget_exceeded
                extra += f" ({visible(str(data['reason']))})"
            self._line(f"[turn ended: {reason}{extra}{'; ' + files if files else ''}]", "2")
        elif kind in ("budget_warning", "budget_exceeded"):
            said = "reached" if kind == "budget_exceeded" else "nearly reached"
            self._line(
                f"[{visible(str(data.get('budget')))} {said}: {_figure(data.get('used'))} used of "
                f"{_figure(data.get('limit'))} (set by the {visible(str(data.get('layer')))} "
                "config)]",
                "2",
            )
        elif kind == "session_completed":
            note = f": {visible(str(data['note']))}" if data.get("note") else ""
            self._line(f"[session completed (by {visible(str(data.get('by')))}){note}]", "2")
        elif kind == "permission_requested":
            live = int(event.get("seq", 0)) > self.replayed_until
            hint = live or str(data.get("permission")) in self.pending
            self.permission_request(data, hint=hint)
        elif kind == "permission_answered":
            option = f" {visible(str(data['option_id']))}" if data.get("option_id") else ""
            self._line(
                f"  permission {visible(str(data.get('permission')))}: "
                f"{visible(str(data.get('outcome')))}{option} (by {visible(str(data.get('by')))})",
                "2",
            )
        elif kind == "permission_decided":
            rule = as_dict(data.get("rule"))
            pattern = f" {rule['pattern']!r}" if rule.get("pattern") else ""
            option = f" {data['option_id']}" if data.get("option_id") else ""
            self._line(
                visible(
                    f"  permission {data.get('permission')}: {data.get('decision')} by "
                    f"{data.get('by')} ({rule.get('key')}{pattern} from {rule.get('layer')}): "
                    f"{data.get('outcome')}{option}"
                ),
                "2",
            )
        elif kind == "status_changed":
            if data.get("to") in ("failed", "stopped", "interrupted"):
                self._line(f"[session {data.get('to')}]", "2")
        elif kind == "agent_exited" and not data.get("expected"):
            how = visible(str(data.get("signal") or f"code {data.get('exit_code')}"))
            self._line(f"[agent exited unexpectedly: {how}]", "31")
            for line in as_list(data.get("stderr_tail"))[-5:]:
                self._line(f"  {visible(str(line))}", "2")
        elif kind == "agent_started":
            how = ", its ACP session loaded" if data.get("loaded") else ""
            if data.get("load_error"):
                how = f" fresh: session/load failed: {data['load_error']}"
            self._line(f"[agent started{how}]", "2")
        elif kind == "handoff_sent":
            cut = ", older turns left out" if data.get("cut") else ""
            turns = f"{data.get('turns')} turn{'' if data.get('turns') == 1 else 's'}"
            self._line(
                f"[earlier conversation sent with the prompt: {turns}, "
                f"{data.get('bytes')} bytes{cut}]",
                "2",
            )
        elif kind == "agent_restarting":
            self._line(f"[restarting the agent in {visible(str(data.get('delay_s')))} s]", "2")
        elif kind == "agent_start_failed":
            self._line(f"[agent failed to start: {data.get('reason')}]", "31")
        elif kind == "file_written":
            path, size = visible(str(data.get("path"))), visible(str(data.get("bytes")))
            buffer = ", in the editor's buffer" if data.get("served_by") == "client" else ""
            self._line(f"  wrote {path} ({size} bytes{buffer})", "2")
        elif kind == "file_refused":
            op, path = visible(str(data.get("op"))), visible(str(data.get("path")))
            self._line(f"  refused {op} of {path}", "31")
        elif kind == "terminal_started":
            args = map(str, as_list(data.get("args")))
            line = visible(" ".join([str(data.get("command")), *args]))
            cwd = data.get("cwd")
            where = f" (in {visible(str(cwd))})" if cwd not in (None, "", ".") else ""
            by = " [in the editor]" if data.get("served_by") == "client" else ""
            self._line(f"  $ {line}{where}{by}", "2")
        elif kind == "terminal_exited":
            how = visible(str(data.get("signal") or f"code {data.get('exit_code')}"))
            crash = ", after a crash of mimird" if data.get("after_crash") else ""
            self._line(f"  [command exited: {how}{crash}]", "2")
        elif kind == "terminal_refused":
            command = visible(str(data.get("command")))
            self._line(f"  refused to run {command}: {data.get('reason')}", "31")
        elif kind == "setup_output":
            self._line(str(data.get("text", "")).rstrip("\n"), "2")
        elif kind in ("model_changed", "mode_changed"):
            key = kind.removesuffix("_changed")
            self._line(f"[{key}: {data.get(key)} (set by {data.get('by')})]", "2")
        elif kind == "setting_failed":
            what = f"{data.get('key')} {data.get('value')}"
            self._line(f"[{what} not set: {data.get('reason')}]", "31")
        elif kind == "prompt_failed":
            self._line(f"[prompt not sent: {data.get('reason')}]", "31")

    def permission_request(self, data: Mapping[str, Any], *, hint: bool) -> None:
        """A permission request and its options on one line; with ``hint``, how to
        answer it. A request the tool policy decided is no question: one dim line."""
        permission = visible(str(data.get("permission")))
        title = visible(permission_title(data))
        policy = data.get("policy")
        if isinstance(policy, dict) and policy.get("decision") in ("allow", "deny"):
            # Decided by the tool policy at once: no question, the next line answers it.
            self._line(f"  permission {permission} for {title}", "2")
            return
        options = ", ".join(
            visible(f"{o.get('kind')} ({o.get('optionId')})")
            for o in as_list(data.get("options"))
            if isinstance(o, dict)
        )
        self._line(f"? permission {permission} for {title}: {options}", "33")
        if hint:
            self._line(f"  answer: mimirctl permission allow {permission}   (or deny)")

    # What PermissionAsker (mimirctl.ask) writes around the user's input.

    def question_line(self, text: str) -> None:
        self._line(text, "33")

    def note(self, text: str, style: str | None = "2") -> None:
        self._line(text, style)

    def question(self, text: str) -> None:
        """``text`` with the cursor left after it, for the user to type there."""
        if self._midline:
            self.out.write("\n")
        self.out.write(self._style(visible(text), "1"))
        self.out.flush()
        self._midline = True
        self._section = None

    def typed_line(self) -> None:
        """The user ended a line: the terminal's echo went to the next one."""
        self._midline = False

    def update(self, update: Mapping[str, Any]) -> None:
        kind = update.get("sessionUpdate")
        if kind in ("agent_message_chunk", "agent_thought_chunk"):
            content = as_dict(update.get("content"))
            if content.get("type") == "text":
                section = "agent" if kind == "agent_message_chunk" else "thought"
                self._stream(section, str(content.get("text", "")))
        elif kind in ("tool_call", "tool_call_update"):
            tool_id = str(update.get("toolCallId"))
            title = visible(str(update.get("title") or self._tools.get(tool_id) or "tool"))
            self._tools[tool_id] = title
            status = visible(str(update.get("status") or "pending"))
            if kind == "tool_call" or update.get("status"):
                self._line(f"  ⚙ {title} [{status}]", "36")
        elif kind == "plan":
            self._line("  plan:", "36")
            for entry in as_list(update.get("entries")):
                if not isinstance(entry, dict):
                    continue
                mark = {"completed": "x", "in_progress": ">"}.get(str(entry.get("status")), " ")
                self._line(f"    [{mark}] {visible(str(entry.get('content')))}")

    def finish(self) -> None:
        if self._midline:
            self.out.write("\n")
            self._midline = False
        self.out.flush()
