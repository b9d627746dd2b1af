"""``mimirctl completion bash|zsh|fish``: a shell completion script.

The script is made when asked, from mimirctl's own argparse tree (every command
module's ``add_commands``), so it lists the commands, subcommands and options of
the mimirctl that printed it. Project names and session ids come from the daemon
when a TAB needs them: the script runs ``mimirctl completion __list projects`` (or
``sessions``), which asks mimird with a short timeout and prints nothing when the
daemon is down.

The tree goes into the script as a table, one row per command path:
``PATH|SUBCOMMANDS|OPTIONS|OPTIONS THAT TAKE A VALUE|POSITIONALS`` (words separated
by spaces; a positional is ``session``, ``project``, ``file`` or ``-``). Each
shell's function walks the words typed so far through that table.
"""

from __future__ import annotations

import argparse

from mimirctl import render
from mimirctl.commands import EXIT_OK, add_group

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    from typing import Any, Final

SHELLS: Final = ("bash", "zsh", "fish")
#: How long a TAB waits for the daemon's names.
LIST_TIMEOUT_S: Final = 1.0
#: At most this many session ids are offered (the newest first).
MAX_SESSIONS: Final = 200
#: Options whose value is a project, a session or a path (the rest complete nothing).
_VALUE_KINDS: Final = {
    "--project": "project",
    "-p": "project",
    "--session": "session",
    "-s": "session",
    "--socket": "file",
}
#: Positional arguments (by dest) whose value is a project, a session or a path.
_POSITIONAL_KINDS: Final = {"session": "session", "project": "project", "path": "file"}


def _rows(parser: argparse.ArgumentParser, path: str, rows: list[str]) -> None:
    subcommands: list[str] = []
    options: list[str] = []
    valued: list[str] = []
    positionals: list[str] = []
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if not name.startswith("__"):
                    subcommands.append(name)
                    children.append((name, child))
        elif action.option_strings:
            options.extend(action.option_strings)
            if action.nargs != 0:
                valued.extend(action.option_strings)
        elif action.dest != argparse.SUPPRESS:
            positionals.append(_POSITIONAL_KINDS.get(action.dest, "-"))
    rows.append(
        "|".join(
            [
                path,
                " ".join(subcommands),
                " ".join(options),
                " ".join(valued),
                " ".join(positionals),
            ]
        )
    )
    for name, child in children:
        _rows(child, f"{path} {name}".strip(), rows)


def table() -> list[str]:
    """The rows of mimirctl's command tree (see the module's docstring)."""
    from mimirctl import cli  # the whole tree: every command module

    rows: list[str] = []
    _rows(cli.full_parser(), "", rows)
    value_kinds = " ".join(f"{option}={kind}" for option, kind in _VALUE_KINDS.items())
    return [f"#values|{value_kinds}", *rows]


_BASH: Final = r"""# mimirctl completion for bash: source it, or put it in
# ~/.local/share/bash-completion/completions/mimirctl
_mimirctl_table='@TABLE@'
_mimirctl_row() {
    local line
    while IFS= read -r line; do
        [[ ${line%%|*} == "$1" ]] && { printf '%s\n' "$line"; return; }
    done <<< "$_mimirctl_table"
}
_mimirctl_field() {
    local rest="$1|" i
    for ((i = 0; i < $2; i++)); do rest=${rest#*|}; done
    printf '%s' "${rest%%|*}"
}
_mimirctl_names() {
    local socket=()
    [[ -n $_mimirctl_socket ]] && socket=(--socket "$_mimirctl_socket")
    command mimirctl completion __list "$1" "${socket[@]}" 2>/dev/null
}
_mimirctl() {
    # (not "path": zsh ties it to PATH)
    local cur=${COMP_WORDS[COMP_CWORD]} cmdpath="" row i word positional=0 kind="" n=0
    local values _mimirctl_socket=""
    values=$(_mimirctl_field "$(_mimirctl_row '#values')" 1)
    row=$(_mimirctl_row "")
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == -* ]]; then
            if [[ " $(_mimirctl_field "$row" 3) " == *" $word "* ]]; then
                ((i++))
                [[ $word == --socket ]] && _mimirctl_socket=${COMP_WORDS[i]}
            fi
        elif [[ " $(_mimirctl_field "$row" 1) " == *" $word "* ]]; then
            cmdpath=${cmdpath:+$cmdpath }$word
            row=$(_mimirctl_row "$cmdpath")
            positional=0
        else
            ((positional++))
        fi
    done
    word=${COMP_WORDS[COMP_CWORD-1]}
    local valued
    valued=" $(_mimirctl_field "$row" 3) "
    if ((COMP_CWORD > 1)) && [[ $word == -* && $valued == *" $word "* ]]; then
        for kind in $values; do [[ ${kind%%=*} == "$word" ]] && break; kind=""; done
        kind=${kind#*=}
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_mimirctl_field "$row" 2)" -- "$cur"))
        return
    elif [[ -n $(_mimirctl_field "$row" 1) ]]; then
        COMPREPLY=($(compgen -W "$(_mimirctl_field "$row" 1)" -- "$cur"))
        return
    else
        for kind in $(_mimirctl_field "$row" 4); do
            ((n == positional)) && break
            ((n++))
            kind=""
        done
    fi
    case $kind in
        project) COMPREPLY=($(compgen -W "$(_mimirctl_names projects)" -- "$cur")) ;;
        session) COMPREPLY=($(compgen -W "$(_mimirctl_names sessions)" -- "$cur")) ;;
        file) COMPREPLY=($(compgen -f -- "$cur")) ;;
        *) COMPREPLY=() ;;
    esac
}
complete -F _mimirctl mimirctl
"""

_ZSH: Final = r"""#compdef mimirctl
# mimirctl completion for zsh: put it as _mimirctl in a directory of $fpath (before
# compinit runs), or source it after compinit. It runs the bash completion function
# (_mimirctl_bash) through zsh's bashcompinit.
autoload -U +X bashcompinit && bashcompinit
@BASH@
# Autoloaded from $fpath as _mimirctl on the first TAB: complete that TAB too.
if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _bash_complete -F _mimirctl_bash "$@"
fi
"""

_FISH: Final = r"""# mimirctl completion for fish: put it in
# ~/.config/fish/completions/mimirctl.fish
set -g __mimirctl_table @TABLE@
function __mimirctl_row
    for line in $__mimirctl_table
        set -l fields (string split '|' -- $line)
        if test "$fields[1]" = "$argv[1]"
            printf '%s\n' $line
            return
        end
    end
end
function __mimirctl_field
    set -l fields (string split '|' -- $argv[1])
    string split -n ' ' -- $fields[$argv[2]]
end
function __mimirctl_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l path ''
    set -l row (__mimirctl_row '')
    set -l positional 0
    set -l socket
    set -l skip 0
    set -l valued ''
    for word in $words[2..-1]
        if test $skip = 1
            set skip 0
            test "$valued" = --socket; and set socket --socket $word
            continue
        end
        if string match -q -- '-*' $word
            if contains -- $word (__mimirctl_field $row 4)
                set skip 1
                set valued $word
            end
        else if contains -- $word (__mimirctl_field $row 2)
            set path (string trim -- "$path $word")
            set row (__mimirctl_row $path)
            set positional 0
        else
            set positional (math $positional + 1)
        end
    end
    set -l kind ''
    set -l subcommands (__mimirctl_field $row 2)
    if test $skip = 1
        for pair in (__mimirctl_field (__mimirctl_row '#values') 2)
            set -l kv (string split '=' -- $pair)
            test "$kv[1]" = "$valued"; and set kind $kv[2]
        end
    else if string match -q -- '-*' "$cur"
        __mimirctl_field $row 3
        return
    else if test (count $subcommands) -gt 0
        printf '%s\n' $subcommands
        return
    else
        set -l kinds (__mimirctl_field $row 5)
        set kind $kinds[(math $positional + 1)]
    end
    switch "$kind"
        case project
            command mimirctl completion __list projects $socket 2>/dev/null
        case session
            command mimirctl completion __list sessions $socket 2>/dev/null
        case file
            __fish_complete_path $cur
    end
end
complete -c mimirctl -f -a '(__mimirctl_complete)'
"""


def script(shell: str) -> str:
    rows = table()
    if shell == "fish":
        quoted = " ".join("'" + row.replace("\\", "\\\\").replace("'", "\\'") + "'" for row in rows)
        return _FISH.replace("@TABLE@", quoted)
    # Rows hold no single quote (argparse option strings and command words).
    bash = _BASH.replace("@TABLE@", "\n".join(rows).replace("'", "'\\''"))
    if shell == "zsh":
        # Its own name: the file itself is the function _mimirctl once autoloaded.
        bash = bash.replace("_mimirctl()", "_mimirctl_bash()")
        bash = bash.replace("complete -F _mimirctl mimirctl", "complete -F _mimirctl_bash mimirctl")
        return _ZSH.replace("@BASH@", bash)
    return bash


def cmd_script(args: argparse.Namespace) -> int:
    render.write_exact(script(args.shell))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """Project names or session ids, one a line; nothing at all if mimird does not
    answer within :data:`LIST_TIMEOUT_S` (a TAB must never hang or print errors)."""
    from mimirctl.client import Client, ClientError, resolve_socket

    try:
        with Client(resolve_socket(getattr(args, "socket", None)), timeout=LIST_TIMEOUT_S) as c:
            if args.what == "projects":
                names = [p["name"] for p in c.call("project.list")["projects"]]
            else:
                found = c.call("session.list", {"limit": MAX_SESSIONS})["sessions"]
                names = [s["id"] for s in found]
    except (ClientError, OSError, KeyError, TypeError):
        return EXIT_OK
    # Names are the daemon's (projects' names follow one rule); still, one a line and
    # nothing a shell would take for more than a word.
    render.write_exact("".join(n + "\n" for n in names if n.isprintable() and " " not in n))
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    verbs = add_group(commands, common, "completion", "print a shell completion script")
    for shell in SHELLS:
        sub = verbs.add_parser(
            shell,
            parents=[common],
            help=f"the {shell} completion script (see the README for where to put it)",
        )
        sub.set_defaults(offline=cmd_script, shell=shell)
    # Hidden (no help): what the scripts run for the daemon's names.
    hidden = verbs.add_parser("__list", parents=[common])
    hidden.add_argument("what", choices=("projects", "sessions"))
    hidden.set_defaults(offline=cmd_list)
