"""mimirctl's commands, one module per noun; what they share is here.

Each module has ``add_commands(commands, common)``, which adds its top-level
words to the parser, and a ``cmd_*`` function per command that takes the
connected :class:`~mimirctl.client.Client` and the parsed arguments and returns
the exit code. ``mimirctl.cli`` imports only the module that owns the word given
on the command line (see ``cli.WORDS``).
"""

from __future__ import annotations

import argparse

from mimirctl import render

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final

    from mimirctl.client import Client

    Command = Callable[[Client, argparse.Namespace], int]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3
EXIT_NOT_FOUND: Final = 4
EXIT_ALREADY_EXISTS: Final = 5
EXIT_INVALID_STATE: Final = 6


class UsageError(Exception):
    """The command line asks for something that cannot be done: exit 2."""


def number_arg(low: float, high: float, unit: str) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high`` (not NaN, not infinite)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:  # NaN is never in range
            raise argparse.ArgumentTypeError(f"{text!r} is not from {low:g} to {high:g} {unit}")
        return value

    return parse


def add_command(
    commands: Any,
    common: argparse.ArgumentParser,
    name: str,
    run: Command | None,
    summary: str,
    *,
    session: bool = False,
) -> argparse.ArgumentParser:
    """A (sub)command named ``name`` under ``commands`` that runs ``run``, with the
    common options, ``summary`` as its help and description, and with ``session``
    a first argument ``ID`` naming a session."""
    sub: argparse.ArgumentParser = commands.add_parser(
        name, parents=[common], help=summary, description=summary[0].upper() + summary[1:] + "."
    )
    if session:
        sub.add_argument("session", metavar="ID", help="session id or unique prefix (4+)")
    if run is not None:
        sub.set_defaults(run=run)
    return sub


def add_group(
    commands: Any, common: argparse.ArgumentParser, name: str, summary: str, **kwargs: Any
) -> Any:
    """A noun (``project``, ``session`` ...) whose verbs are added to what it returns."""
    group = commands.add_parser(name, parents=[common], help=summary, **kwargs)
    return group.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def emit(
    args: argparse.Namespace, value: Any, human: Callable[[Any], str], *, styled: bool = False
) -> None:
    """The result as JSON with ``--json``, as ``human`` makes it otherwise: made
    :func:`~mimirctl.render.visible`, unless ``styled`` (``human`` made each piece
    visible itself, and puts mimirctl's own styling around them)."""
    if args.json:
        render.say(render.json_text(value), exact=True)
    else:
        render.say(human(value), exact=styled)


def template_vars(values: list[str] | None) -> dict[str, str]:
    """``--var KEY=VALUE`` options as a map (a later KEY wins)."""
    found: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--var {item!r} is not KEY=VALUE")
        found[key] = value
    return found
