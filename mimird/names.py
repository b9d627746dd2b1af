"""The one rule for names that become paths or git refs, and the check that a
computed path lies under its root.

Three kinds of names come from outside (a client, a config file, an agent's
project directory) and end up on disk:

- A **project name** is what people type and see: 1-128 printable characters
  (``str.isprintable``: no control or format characters, no newline, NUL or ESC),
  no ``/``, not starting with ``.`` or ``-``, no leading or trailing whitespace.
- A project name becomes a path (and may become part of a branch) only through its
  **path slug**: the name itself when it is already a safe name (ASCII letters,
  digits, ``.``, ``_``, ``-``; starting with a letter or digit; no ``..``; not
  ending with ``.`` or ``.lock``), else :func:`slugify` of it. A safe name is a
  valid directory name and a valid ref component, never ``.`` or ``..``. Names
  stored before this rule existed keep working: their slug is what goes on disk.
- A **branch name** follows ``git check-ref-format --branch`` (checked here in
  Python, no git process per check) plus Mimir's own limits: not ``@`` or ``HEAD``,
  no ``refs/`` prefix (git would make ``refs/heads/refs/heads/x``), no leading
  ``-``, at most 250 characters with each ``/``-separated part at most 255 bytes.

Pure functions, standard library only (``mimird.policy`` imports this module).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Final

from mimird.errors import InvalidParams

MAX_PROJECT_NAME_LENGTH: Final = 128
MAX_BRANCH_LENGTH: Final = 250
#: Linux's NAME_MAX: the longest file name, so the longest ref component (bytes).
MAX_COMPONENT_BYTES: Final = 255

_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SLUG_SEPARATORS: Final = re.compile(r"[^a-z0-9]+")
#: Characters git refuses in a ref name (git-check-ref-format(1), rules 4, 5 and 10).
_REF_FORBIDDEN: Final = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def slugify(text: str, max_length: int = 40, *, fallback: str = "session") -> str:
    """A short ASCII name for branches and directories: "Fix the login bug!" ->
    "fix-the-login-bug". Accents are dropped ("Café" -> "cafe"), other characters
    become hyphens; a long text is cut at a word boundary when one is near; a text
    with nothing usable gives ``fallback``. The result is always a safe name."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, not {max_length}")
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii")
    slug = _SLUG_SEPARATORS.sub("-", ascii_text).strip("-")
    if len(slug) > max_length:
        cut = slug[:max_length]
        boundary = cut.rfind("-")
        if slug[max_length] != "-" and boundary >= max_length // 2:
            cut = cut[:boundary]
        slug = cut.strip("-")
    return slug or fallback


def is_safe_name(name: str) -> bool:
    """Whether ``name`` can be used as one directory name or ref component as it is."""
    return (
        len(name) <= MAX_PROJECT_NAME_LENGTH
        and _SAFE_NAME.fullmatch(name) is not None
        and ".." not in name
        and not name.endswith((".", ".lock"))
    )


def path_slug(name: str) -> str:
    """What a project name becomes in a path or a branch (``{project}``): the name
    when it is safe, else its slug."""
    return (
        name if is_safe_name(name) else slugify(name, MAX_PROJECT_NAME_LENGTH, fallback="project")
    )


def project_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a new project's name, or None."""
    if not name or len(name) > MAX_PROJECT_NAME_LENGTH:
        return f"must be 1 to {MAX_PROJECT_NAME_LENGTH} characters long"
    if not name.isprintable():
        bad = next(char for char in name if not char.isprintable())
        return f"contains the control or invisible character U+{ord(bad):04X}"
    if "/" in name:
        return "contains '/'"
    if name.startswith((".", "-")):
        return "starts with '.' or '-'"
    if name != name.strip():
        return "starts or ends with whitespace"
    return None


def check_project_name(name: str) -> str:
    """Raise invalid_params (field ``name``) unless ``name`` can be a new project's name."""
    if problem := project_name_problem(name):
        raise InvalidParams(
            f"project name {name!r} {problem}; use printable characters, no '/', not "
            "starting with '.' or '-'",
            field="name",
        )
    return name


def ref_problem(name: str) -> str | None:
    """Why ``git check-ref-format --branch`` would refuse ``name``, or None."""
    if not name:
        return "it is empty"
    if match := _REF_FORBIDDEN.search(name):
        return f"it contains {match.group()!r}"
    if name.startswith("-"):
        return "it starts with '-'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "it starts or ends with '/', or contains '//'"
    if name.endswith("."):
        return "it ends with '.'"
    if ".." in name or "@{" in name:
        return "it contains '..' or '@{'"
    if name == "HEAD":
        return "it is 'HEAD'"
    if any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        return "a '/'-separated part starts with '.' or ends with '.lock'"
    return None


def branch_problem(name: str) -> str | None:
    """Why ``name`` cannot be a new session's branch, or None: :func:`ref_problem`
    plus Mimir's own limits."""
    if problem := ref_problem(name):
        return problem
    if name == "@":
        return "it is '@' (git's shorthand for HEAD)"
    if name.startswith("refs/"):
        return "it starts with 'refs/' (the branch would be refs/heads/refs/...)"
    if any(
        len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES for part in name.split("/")
    ):
        return f"a '/'-separated part is longer than {MAX_COMPONENT_BYTES} bytes"
    if len(name) > MAX_BRANCH_LENGTH:
        return f"it is longer than {MAX_BRANCH_LENGTH} characters"
    return None


def check_branch(name: str, *, field: str = "branch") -> str:
    """Raise invalid_params unless ``name`` can be a new session's branch."""
    if problem := branch_problem(name):
        raise InvalidParams(
            f"{name!r} is not a valid branch name ({problem}); use letters, digits and "
            "'/', '-', '_', '.', without spaces, '..', '~', '^', ':', '?', '*', '[', '\\' or "
            "'@{', not starting with '-' or 'refs/'",
            field=field,
        )
    return name


def under_root(root: Path, path: Path, *, what: str, field: str) -> Path:
    """``path``, made absolute and normalised, after checking that it lies strictly
    under ``root``; invalid_params naming ``field`` otherwise.

    The check is lexical (``..`` folded, symlinks not followed): it is about the
    names Mimir computes, and a directory the user made a symlink on purpose (a
    worktrees directory on another disk) stays usable."""
    base = Path(os.path.normpath(os.path.abspath(root)))
    target = Path(os.path.normpath(os.path.abspath(path)))
    if target == base or not target.is_relative_to(base):
        raise InvalidParams(
            f"{what} {path} is not inside {base}; a name or template led it out",
            field=field,
            detail={"root": str(base), "path": str(path)},
        )
    return target
