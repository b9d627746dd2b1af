"""The one rule for names that become paths or refs (mimird/names.py), and the
check that every computed workspace path lies under its root.

Pure functions, checked against git itself where git is the authority
(``git check-ref-format --branch``), and with hypothesis over any text."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mimird import names, policy, workspace_keys
from mimird.errors import InvalidParams
from mimird.workspaces.provision import Workspaces
from tests.support.helpers import GIT_ENV, GIT_TIMEOUT_S, DaemonDirs, make_repo, short_tmpdir

pytestmark = pytest.mark.timeout(120)

#: Locations a user may configure; {project} twice was the way out past the "no '..'" check.
LOCATIONS = [
    workspace_keys.DEFAULT_WORKTREE_LOCATION,
    "{project}/{project}/{slug}",
    "{project}/{project}/{project}/{project}",
    "{project}-{date}/{project}/{id}",
    "/srv/mimir/{project}/{project}/{slug}-{short_id}",
]

#: Any text a client or an old database could hold (no surrogates: not UTF-8).
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=130)
#: Text made mostly of the characters that matter to paths and refs.
NASTY_TEXT = st.lists(
    st.sampled_from([*"./-@{}~^:?*[\\ \t\n\x1b\x7fabcAB09_é", "..", ".lock", "HEAD", "refs/"]),
    min_size=1,
    max_size=20,
).map("".join)


@pytest.fixture(scope="module")
def dirs() -> Iterator[DaemonDirs]:
    with short_tmpdir() as root:
        yield DaemonDirs(root)


@pytest.fixture(scope="module")
def workspaces(dirs: DaemonDirs) -> Workspaces:
    return Workspaces(dirs.settings())


@pytest.fixture(scope="module")
def repo() -> Iterator[Path]:
    with short_tmpdir() as root:
        yield make_repo(root / "repo")


def path_for(workspaces: Workspaces, location: str, project: str) -> Path:
    layer = policy.parse_layer({"worktree_location": location}, "session")
    effective = policy.effective([("session", layer)])
    placeholders = {
        "slug": names.slugify("Fix it"),
        "short_id": "0123abcd",
        "id": "01m96q63gt22tpb7c8ah09f0q0",
        "project": names.path_slug(project),
        "date": "20260101",
    }
    return workspaces.path_for(effective, placeholders)


# ---- the project name's slug -------------------------------------------------------------


@given(name=st.one_of(ANY_TEXT, NASTY_TEXT))
def test_any_name_slugs_to_a_safe_name(name: str) -> None:
    slug = names.path_slug(name)
    assert names.is_safe_name(slug)
    assert slug not in (".", "..")
    assert "/" not in slug
    assert names.ref_problem(f"mimir/{slug}/x") is None  # a valid ref component
    assert 1 <= len(slug.encode()) <= names.MAX_COMPONENT_BYTES


@pytest.mark.parametrize("name", ["api", "my.project", "Web_2", "a-b.c"])
def test_a_safe_name_is_its_own_slug(name: str) -> None:
    assert names.path_slug(name) == name


@pytest.mark.parametrize(
    ("name", "slug"),
    [("..", "project"), (".", "project"), ("-rf", "rf"), ("a..b", "a-b"), ("x.lock", "x-lock")],
)
def test_an_unsafe_name_is_slugged(name: str, slug: str) -> None:
    assert names.path_slug(name) == slug


# ---- every computed path lies under its root ------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(ANY_TEXT, NASTY_TEXT), location=st.sampled_from(LOCATIONS))
def test_any_project_name_gives_a_workspace_path_under_its_root(
    workspaces: Workspaces, dirs: DaemonDirs, name: str, location: str
) -> None:
    path = path_for(workspaces, location, name)
    root = Path("/srv/mimir") if location.startswith("/") else dirs.settings().worktrees_dir
    assert path.is_relative_to(root)
    assert path != root
    assert ".." not in path.parts
    assert names.path_slug(name) in path.relative_to(root).parts[0]


@given(name=st.one_of(ANY_TEXT, NASTY_TEXT))
def test_any_accepted_project_name_is_printable_and_not_a_path_trick(name: str) -> None:
    if names.project_name_problem(name) is None:
        assert name.isprintable()
        assert "/" not in name
        assert name not in (".", "..")
        assert not name.startswith("-")


@pytest.mark.parametrize("name", ["..", ".", "-rf", "a\nb", "a\0b", "a\x1bb", "", "x" * 129])
def test_a_hostile_project_name_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        names.check_project_name(name)
    assert caught.value.field == "name"


def test_the_trash_path_lies_under_the_trash_directory(
    workspaces: Workspaces, dirs: DaemonDirs
) -> None:
    assert workspaces.trash("01m96q63gt22tpb7c8ah09f0q0").parent == dirs.state / "trash"
    with pytest.raises(InvalidParams):
        workspaces.trash("../../elsewhere")


@pytest.mark.parametrize(
    "path",
    ["/r/wt/../x", "/r/wt", "/r/wtx/a", "/r/wt/a/../../b", "/elsewhere"],
)
def test_under_root_refuses_a_path_outside_or_equal_to_its_root(path: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        names.under_root(Path("/r/wt"), Path(path), what="workspace path", field="f")
    assert caught.value.field == "f"
    assert caught.value.detail == {"root": "/r/wt", "path": path}


def test_under_root_accepts_a_path_below_its_root() -> None:
    assert names.under_root(Path("/r/wt"), Path("/r/wt/a/./b"), what="x", field="f") == Path(
        "/r/wt/a/b"
    )


# ---- branches --------------------------------------------------------------------------------


def git_accepts_branch(repo: Path, name: str) -> bool:
    """What ``git check-ref-format --branch`` says, taken literally (it expands
    ``@{-1}`` and friends, which Mimir refuses)."""
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        cwd=repo,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=GIT_TIMEOUT_S,
    )
    # Only git's newline comes off: str.strip() would take a name's own U+0085 too.
    return done.returncode == 0 and done.stdout.removesuffix("\n") == name


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.one_of(NASTY_TEXT, ANY_TEXT.filter(lambda text: "\0" not in text)))
@example(name="\x85")  # NEL: str.strip() takes it, git does not
def test_ref_problem_agrees_with_git_check_ref_format(repo: Path, name: str) -> None:
    assert (names.ref_problem(name) is None) == git_accepts_branch(repo, name), name


@pytest.mark.parametrize(
    "name",
    ["@", "refs/heads/x", "refs/x", "-x", "HEAD", "x" * 251, "a/" + "é" * 128],
)
def test_mimirs_own_limits_refuse_what_git_would_take_or_misread(name: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        names.check_branch(name)
    assert caught.value.field == "branch"


@pytest.mark.parametrize("name", ["mimir/fix-login_2", "feature/x.y", "a@b", "é"])
def test_a_good_branch_passes(name: str) -> None:
    assert names.check_branch(name) == name
