"""``mimirctl completion bash|zsh|fish``: the scripts, loaded into the real shells,
complete commands, subcommands and options from mimirctl's own parser, and
project names and session ids from a real daemon (nothing, silently, when the
daemon is down)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from mimirctl.cli import WORDS
from tests.support.agents import write_config
from tests.support.helpers import (
    DaemonDirs,
    DaemonProcess,
    daemon_process,
    make_repo,
    rpc,
    short_tmpdir,
)

RUN_TIMEOUT_S: Final = 30
BIN: Final = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[DaemonDirs, DaemonProcess, list[str]]]:
    """A daemon with a project "demo" and two sessions (their ids)."""
    with short_tmpdir() as root:
        dirs = DaemonDirs(root)
        write_config(dirs, {})
        (root / "home").mkdir()
        repo = make_repo(root / "repo")
        with daemon_process(dirs) as daemon:
            project = rpc(dirs, "project.add", {"path": str(repo), "name": "demo"})
            ids = [
                rpc(dirs, "session.create", {"project": project["id"], "title": t})["id"]
                for t in ("one", "two")
            ]
            yield dirs, daemon, ids


def env_of(dirs: DaemonDirs) -> dict[str, str]:
    """The daemon's environment, with this mimirctl first on PATH (the scripts run
    ``mimirctl`` by name, as a user's shell would)."""
    env = dirs.env()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def script(dirs: DaemonDirs, shell: str) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "mimirctl", "completion", shell],
        env=env_of(dirs),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    path = dirs.root / f"completion.{shell}"
    path.write_text(done.stdout)
    return path


def bash_complete(dirs: DaemonDirs, *words: str, env: dict[str, str] | None = None) -> list[str]:
    """What the bash function completes, the last word being the one under the cursor."""
    loaded = script(dirs, "bash")
    program = (
        f"source {shlex.quote(str(loaded))}\n"
        f"COMP_WORDS=({shlex.join(words)}); COMP_CWORD={len(words) - 1}\n"
        '_mimirctl; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        env=env or env_of(dirs),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    assert done.stderr == ""
    return [line for line in done.stdout.splitlines() if line]


# ---- bash -----------------------------------------------------------------------------


def test_the_bash_script_registers_its_function(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, _ = world
    loaded = script(dirs, "bash")
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", f"source {shlex.quote(str(loaded))}; complete -p"],
        env=env_of(dirs),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    assert "complete -F _mimirctl mimirctl" in done.stdout


def test_bash_completes_every_command_word_of_the_parser(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, _ = world
    found = bash_complete(dirs, "mimirctl", "")
    # WORDS is the table the parser is built from: a new word is completed with no
    # change to the script's code.
    assert set(found) == set(WORDS)
    assert bash_complete(dirs, "mimirctl", "se") == ["session", "search"]


def test_bash_completes_subcommands_and_their_options(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, _ = world
    verbs = bash_complete(dirs, "mimirctl", "session", "")
    assert {"new", "ls", "show", "rm"} <= set(verbs)
    options = bash_complete(dirs, "mimirctl", "--json", "session", "ls", "--")
    assert {"--project", "--status", "--limit", "--json"} <= set(options)
    assert "--force" not in options
    assert bash_complete(dirs, "mimirctl", "completion", "") == ["bash", "zsh", "fish"]


def test_bash_completes_project_names_and_session_ids_from_the_daemon(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, ids = world
    assert bash_complete(dirs, "mimirctl", "session", "new", "") == ["demo"]
    assert bash_complete(dirs, "mimirctl", "session", "ls", "--project", "d") == ["demo"]
    assert bash_complete(dirs, "mimirctl", "session", "ls", "-p", "") == ["demo"]
    assert sorted(bash_complete(dirs, "mimirctl", "prompt", "")) == sorted(ids)
    assert bash_complete(dirs, "mimirctl", "attach", ids[0][:12]) == [ids[0]]
    # The second positional of prompt is its text: nothing to offer.
    assert bash_complete(dirs, "mimirctl", "prompt", ids[0], "") == []


def test_bash_completes_nothing_and_says_nothing_when_the_daemon_is_down(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, _ = world
    env = {**env_of(dirs), "MIMIR_SOCKET": str(dirs.root / "nothing.sock")}
    assert bash_complete(dirs, "mimirctl", "prompt", "", env=env) == []
    assert bash_complete(dirs, "mimirctl", "--socket", "/nowhere", "prompt", "") == []
    # The commands themselves need no daemon.
    assert "prompt" in bash_complete(dirs, "mimirctl", "", env=env)


def test_the_hidden_helper_is_not_in_help_nor_completed(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, _ = world
    done = subprocess.run(
        [sys.executable, "-m", "mimirctl", "completion", "--help"],
        env=env_of(dirs),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    assert "__list" not in done.stdout
    assert "__list" not in bash_complete(dirs, "mimirctl", "completion", "")


# ---- zsh and fish ---------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed (make system-deps)")
def test_zsh_loads_the_script_and_completes_from_the_daemon(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, ids = world
    loaded = script(dirs, "zsh")
    check = subprocess.run(["zsh", "-n", str(loaded)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    # compgen -F runs the function as zsh's bashcompinit does: in sh emulation.
    program = f"""
autoload -U compinit && compinit -u -D
source {shlex.quote(str(loaded))}
print -r -- "registered: ${{_comps[mimirctl]}}"
# What _bash_complete does: the function's candidates (compgen -F), which compadd
# then matches against the word typed.
t() {{
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
    local -a found
    found=(${{(f)"$(compgen -F _mimirctl_bash -- "${{@[-1]}}")"}})
    print -r -- ${{(M)found:#${{@[-1]}}*}}
}}
t mimirctl sess
t mimirctl session ls --pro
t mimirctl session new ''
t mimirctl prompt ''
"""
    done = subprocess.run(
        ["zsh", "-f", "-c", program],
        env=env_of(dirs),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "registered: _bash_complete -F _mimirctl_bash"
    assert lines[1].split() == ["session"]
    assert lines[2].split() == ["--project"]
    assert lines[3].split() == ["demo"]
    assert sorted(lines[4].split()) == sorted(ids)


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish not installed (make system-deps)")
def test_fish_loads_the_script_and_completes_from_the_daemon(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, ids = world
    loaded = script(dirs, "fish")
    check = subprocess.run(["fish", "-n", str(loaded)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr

    def complete(line: str) -> list[str]:
        program = f"source {shlex.quote(str(loaded))}; complete -C {shlex.quote(line)}"
        done = subprocess.run(
            ["fish", "--no-config", "-c", program],
            env=env_of(dirs),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=True,
        )
        return sorted(line.split("\t")[0] for line in done.stdout.splitlines() if line)

    assert complete("mimirctl sess") == ["session"]
    assert {"new", "ls"} <= set(complete("mimirctl session "))
    assert "--project" in complete("mimirctl session ls --")
    assert complete("mimirctl session ls --project ") == ["demo"]
    assert complete("mimirctl session new ") == ["demo"]
    assert complete("mimirctl prompt ") == sorted(ids)
    assert complete("mimirctl completion ") == ["bash", "fish", "zsh"]


@pytest.mark.skipif(
    shutil.which("zsh") is None or shutil.which("tmux") is None,
    reason="zsh or tmux not installed (make system-deps)",
)
def test_zsh_autoloads_the_script_from_fpath_and_completes_at_the_first_tab(
    world: tuple[DaemonDirs, DaemonProcess, list[str]],
) -> None:
    dirs, _, _ = world
    functions = dirs.root / "zfunc"
    functions.mkdir(exist_ok=True)
    shutil.copy(script(dirs, "zsh"), functions / "_mimirctl")
    tmux = [str(shutil.which("tmux")), "-S", str(dirs.root / "tmux-zsh.sock"), "-f", "/dev/null"]
    env = {**env_of(dirs), "TERM": "xterm-256color"}
    env.pop("TMUX", None)

    def run(*args: str) -> str:
        done = subprocess.run(
            [*tmux, *args], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def shown(text: str) -> str:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            if text in (screen := run("capture-pane", "-p")):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never showed:\n{run('capture-pane', '-p')}")

    run("new-session", "-d", "-x", "120", "-y", "20", "zsh -f")
    try:
        run(
            "send-keys",
            f"fpath=({functions} $fpath); autoload -U compinit; compinit -u -D",
            "Enter",
        )
        run("send-keys", "PS1='> '", "Enter")
        run("send-keys", "mimirctl session ne", "Tab")
        shown("> mimirctl session new")
        run("send-keys", "-l", " --pro")
        run("send-keys", "Tab")
        shown("> mimirctl session new --prompt")
        run("send-keys", "C-u", "mimirctl session ls -p ", "Tab")
        shown("> mimirctl session ls -p demo")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=RUN_TIMEOUT_S)
