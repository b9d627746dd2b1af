"""``mimirctl``: control mimird from the command line.

Exit codes (stable, for scripts):

  0  success
  1  the daemon answered with an error not listed below, or the connection broke;
     also ``session new`` when the session was made but its setup command failed
     (the session is kept with status "failed"; the failure is printed on stderr)
  2  bad usage or invalid params (an ambiguous session id prefix among them)
  3  mimird is not running
  4  not found
  5  already exists
  6  invalid state (e.g. a project that still has sessions); also a merge refused
     because it conflicts or because the target branch's checkout is dirty

A session is named by its id or by any unique prefix of it (at least 4
characters), as ``session ls`` shows them. Times (``--since``, ``--until``) are
ISO 8601 dates or times in UTC (``2026-01-31``, ``2026-01-31T10:00Z``; an explicit
offset is converted) or an age: ``30m``, ``2h``, ``3d``, ``1w`` ago.
"""

from __future__ import annotations

import argparse
import os
import sys

from mimirctl import render
from mimirctl.client import (
    BadRequest,
    Client,
    ClientError,
    DaemonNotRunning,
    ProtocolMismatch,
    RpcError,
    check_protocol,
    loads,
    resolve_socket,
)
from mimirctl.commands import (
    EXIT_ALREADY_EXISTS,
    EXIT_ERROR,
    EXIT_INVALID_STATE,
    EXIT_NOT_FOUND,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from mimird.wire.codes import ErrorCode
from mimird.wire.formats import MIN_ID_PREFIX

# typing costs ~3 ms of start-up (with contextlib), which no command needs at run
# time: annotations are strings (PEP 563), and mypy takes any TYPE_CHECKING name
# for typing.TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, NoReturn

    from mimirctl.commands import Command

EXIT_CODES: Final = {
    ErrorCode.INVALID_PARAMS: EXIT_USAGE,
    ErrorCode.NOT_FOUND: EXIT_NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: EXIT_ALREADY_EXISTS,
    ErrorCode.INVALID_STATE: EXIT_INVALID_STATE,
    ErrorCode.MERGE_CONFLICT: EXIT_INVALID_STATE,
    ErrorCode.CHECKOUT_DIRTY: EXIT_INVALID_STATE,
}
#: The module of ``mimirctl.commands`` that owns each top-level word, in the order
#: ``mimirctl --help`` lists them. Only the module of the word given is imported.
WORDS: Final = {
    "status": "daemon",
    "metrics": "daemon",
    "project": "project",
    "session": "session",
    "run": "run",
    "worktree": "worktree",
    "prompt": "turn",
    "attach": "turn",
    "log": "turn",
    "cancel": "turn",
    "agent": "agent",
    "stop": "agent",
    "resume": "agent",
    "logs": "agent",
    "permission": "permission",
    "template": "template",
    "db": "db",
    "search": "search",
    "top": "top",
    "completion": "completion",
    "audit": "audit",
    "doctor": "doctor",
    "acp": "acp",
    "export": "transfer",
    "import": "transfer",
}
#: Options before the command word that take a value.
_VALUED_OPTIONS: Final = frozenset({"--socket"})


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it ($COLUMNS, then
    stdout's terminal, else 80), without importing shutil (~2 ms: argparse builds
    a help formatter for every argument it adds, and each would import it)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _HelpFormatter(argparse.HelpFormatter):
    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(
            prog, indent_increment, max_help_position, _columns() - 2 if width is None else width
        )


class _Parser(argparse.ArgumentParser):
    """argparse's parser with :class:`_HelpFormatter`; subcommands' parsers are of
    the same class (``add_subparsers`` makes them so)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """argparse's usage error, with the arguments it quotes made visible (a file
        name from a glob may hold a terminal escape)."""
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {render.visible(message)}\n")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = loads(text)
    except ValueError as exc:
        raise UsageError(f"--config is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError('--config must be a JSON object, e.g. \'{"agent": "opencode"}\'')
    return value


def _word(argv: list[str]) -> str | None:
    """The command word of ``argv`` (the first argument that is not an option)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--":
            return None
        elif arg.startswith("-"):
            skip = arg in _VALUED_OPTIONS
        else:
            return arg
    return None


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser for ``argv``: with only the commands of its word's module when the
    word is known (the others cost start-up time for nothing), with all of them
    otherwise (for ``--help`` and for argparse's message about an unknown word)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON"
    )
    common.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        help="mimird's socket (default: $MIMIR_SOCKET or the XDG runtime dir)",
    )

    parser = _Parser(
        prog="mimirctl",
        description="Control mimird, the Mimir daemon.",
        parents=[common],
        epilog="Sessions are named by their id or any unique prefix of it (4+ characters). "
        "Exit codes: 0 ok, 1 error (also: 'session new' whose setup failed), 2 usage/invalid "
        "params (also: an ambiguous id prefix), 3 mimird not running, 4 not found, "
        "5 already exists, 6 invalid state.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    word = _word(argv)
    modules = [WORDS[word]] if word in WORDS else list(dict.fromkeys(WORDS.values()))
    for name in modules:
        # __import__ rather than importlib.import_module: python -X importtime (and the
        # tests that read it) sees only imports made through the import statement's path.
        __import__(f"mimirctl.commands.{name}")
        sys.modules[f"mimirctl.commands.{name}"].add_commands(commands, common)
    return parser


def full_parser() -> argparse.ArgumentParser:
    """The parser with every command (what ``mimirctl completion`` describes)."""
    return _parser([])


def _run(run: Command, client: Client, args: argparse.Namespace) -> int:
    """``run``, once mimird said it speaks this mimirctl's protocol (pueue and
    supervisor check the same way on connect). One ``daemon.status`` on the open
    connection costs about a tenth of a millisecond; ``mimirctl status`` asks it
    anyway and warns about a skew itself."""
    if args.command != "status" and (skew := check_protocol(client)):
        raise ProtocolMismatch(skew)
    return run(client, args)


def _report(error: RpcError) -> int:
    render.say(f"mimirctl: {error.message}", err=True)
    try:
        return EXIT_CODES.get(ErrorCode(error.code), EXIT_ERROR)
    except ValueError:
        return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        # Commands that need no connection (completion scripts) or make their own.
        if (offline := getattr(args, "offline", None)) is not None:
            code: int = offline(args)
            return code
        run: Command = args.run
        # Check what can be checked before bothering the daemon.
        if getattr(args, "config", None) is not None:
            args.config = _json_object(args.config)
        session = getattr(args, "session", None)
        if session is not None and len(session) < MIN_ID_PREFIX:
            raise UsageError(
                f"session id {args.session!r} is too short: give the id or a unique prefix of "
                f"at least {MIN_ID_PREFIX} characters (as 'mimirctl session ls' shows them)"
            )
        if (standalone := getattr(args, "standalone", None)) is not None:
            # A command that makes its own connections (``acp``).
            ended: int = standalone(resolve_socket(getattr(args, "socket", None)), args)
            return ended
        with Client(resolve_socket(getattr(args, "socket", None))) as client:
            return _run(run, client, args)
    except DaemonNotRunning as exc:
        render.say(f"mimirctl: {exc}", err=True)
        return EXIT_NOT_RUNNING
    except (UsageError, BadRequest) as exc:
        render.say(f"mimirctl: {exc}", err=True)
        return EXIT_USAGE
    except RpcError as exc:
        return _report(exc)
    except ClientError as exc:
        render.say(f"mimirctl: {exc}", err=True)
        return EXIT_ERROR
    except BrokenPipeError:  # stdout closed early (e.g. piped into head)
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
