"""Inputs found by fuzzing the socket that once got -32603 or a dropped connection.

Each is sent to a real daemon over its socket; the answer must be a JSON-RPC error
with a clear code and ``data.field`` naming the offending param, and nothing may be
stored (no project, no session, no worktree, no changed config).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest

from mimird.errors import InvalidParams
from mimird.wire.errors import ErrorCode
from mimird.workspaces import git as worktrees
from tests.support.helpers import DaemonDirs, InProcessDaemon, TrioClient, add_project, git

GIT_TIMEOUT_S: Final = 30
GIT_ENV: Final = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Mimir Test",
    "GIT_AUTHOR_EMAIL": "test@mimir.invalid",
    "GIT_COMMITTER_NAME": "Mimir Test",
    "GIT_COMMITTER_EMAIL": "test@mimir.invalid",
}
#: Longer than any file name may be (NAME_MAX is 255 bytes).
LONG_NAME: Final = "x" * 300


@pytest.fixture
def repo(dirs: DaemonDirs) -> Path:
    """A git repository on branch main with one commit, and an ignored .env."""
    path = dirs.root / "repo"
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# repo\n")
    (path / ".gitignore").write_text(".env\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    (path / ".env").write_text("TOKEN=1\n")
    return path.resolve()


async def call_error(client: TrioClient, method: str, params: Any) -> dict[str, Any]:
    """The error a call must answer with: never internal_error, always with data."""
    response = await client.call_raw(method, params)
    assert "error" in response, response
    error: dict[str, Any] = response["error"]
    assert error["code"] != ErrorCode.INTERNAL_ERROR, error
    assert error["data"]["kind"] == ErrorCode(error["code"]).kind
    return error


def stored(dirs: DaemonDirs) -> tuple[list[Any], list[Any]]:
    """Every project (with its config) and every session row, as stored."""
    with contextlib.closing(sqlite3.connect(f"file:{dirs.database}?mode=ro", uri=True)) as db:
        projects = db.execute("SELECT id, name, config FROM projects ORDER BY id").fetchall()
        sessions = db.execute("SELECT id, config FROM sessions ORDER BY id").fetchall()
    return projects, sessions


def worktree_dirs(dirs: DaemonDirs) -> list[Path]:
    root = dirs.data / "worktrees"
    return sorted(p for p in root.glob("*/*")) if root.exists() else []


def store_project_config(dirs: DaemonDirs, project_id: str, config: dict[str, Any]) -> None:
    """Write a project's config straight into the database, as an older mimird
    (one that did not check it) could have stored it."""
    with contextlib.closing(sqlite3.connect(dirs.database)) as db, db:
        db.execute(
            "UPDATE projects SET config = ? WHERE id = ?",
            (msgspec.json.encode(config).decode(), project_id),
        )


# ---- 1. copy_files patterns that no file name can match -------------------------------


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (LONG_NAME, "255 bytes"),
        (f"config/{LONG_NAME}.local", "255 bytes"),
        ("é" * 200, "255 bytes"),
        ("secrets**", "'**'"),
        (".", "project itself"),
        ("./", "project itself"),
        ("/".join(["a"] * 500), "path components"),
    ],
)
async def test_a_copy_files_pattern_glob_cannot_use_is_refused_when_the_config_is_set(
    daemon: InProcessDaemon, client: TrioClient, repo: Path, pattern: str, reason: str
) -> None:
    config = {"copy_files": [".env", pattern]}
    error = await call_error(client, "project.add", {"path": str(repo), "config": config})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config.copy_files.1"
    assert reason in error["message"]
    assert stored(daemon.dirs) == ([], [])

    project = await add_project(client, repo)
    before = stored(daemon.dirs)
    update = {"project": project["id"], "config": config}
    error = await call_error(client, "project.update", update)
    assert error["data"]["field"] == "config.copy_files.1"
    error = await call_error(client, "session.create", {"project": project["id"], "config": config})
    assert error["data"]["field"] == "config.copy_files.1"
    assert stored(daemon.dirs) == before
    assert worktree_dirs(daemon.dirs) == []


async def test_a_session_update_with_a_too_long_copy_files_name_is_refused(
    daemon: InProcessDaemon, client: TrioClient, repo: Path
) -> None:
    project = await add_project(client, repo)
    session = await client.call("session.create", {"project": project["id"]})
    before = stored(daemon.dirs)
    error = await call_error(
        client,
        "session.update",
        {"session": session["id"], "config": {"copy_files": [LONG_NAME]}},
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config.copy_files.0"
    assert stored(daemon.dirs) == before


async def test_a_stored_copy_files_pattern_no_file_name_can_match_fails_create_clearly(
    daemon: InProcessDaemon, client: TrioClient, repo: Path
) -> None:
    project = await add_project(client, repo)
    store_project_config(daemon.dirs, project["id"], {"copy_files": [".env", LONG_NAME]})
    before = stored(daemon.dirs)

    error = await call_error(client, "session.create", {"project": project["id"]})

    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config.copy_files.1"
    assert error["message"].startswith("project config: key 'copy_files.1'")
    assert stored(daemon.dirs) == before
    assert worktree_dirs(daemon.dirs) == []
    assert git(repo, "branch", "--list", "mimir/*") == ""


async def test_a_file_copy_files_cannot_write_into_the_worktree_fails_create_clearly(
    daemon: InProcessDaemon, client: TrioClient, repo: Path
) -> None:
    # The base commit has a file `conf` where the project now has an ignored directory
    # `conf/` with a file: the copy cannot make the directory in the new worktree.
    (repo / "conf").write_text("old\n")
    git(repo, "add", "conf")
    git(repo, "commit", "-q", "-m", "conf as a file")
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "rm", "-q", "conf")
    git(repo, "commit", "-q", "-m", "no conf")
    (repo / ".gitignore").write_text(".env\nconf/\n")
    git(repo, "commit", "-q", "-am", "ignore conf/")
    (repo / "conf").mkdir()
    (repo / "conf" / "local.toml").write_text("x = 1\n")
    project = await add_project(client, repo, config={"copy_files": ["conf/local.toml"]})
    before = stored(daemon.dirs)

    error = await call_error(client, "session.create", {"project": project["id"], "base_ref": base})

    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["field"] == "copy_files"
    assert error["data"]["detail"]["path"] == "conf/local.toml"
    assert "conf/local.toml" in error["message"]
    assert stored(daemon.dirs) == before
    assert worktree_dirs(daemon.dirs) == []


@pytest.mark.parametrize("pattern", [LONG_NAME, f"conf/{LONG_NAME}", "a**", ".", "./"])
def test_copy_files_answers_a_pattern_glob_cannot_use_with_invalid_params(
    tmp_path: Path, pattern: str
) -> None:
    # What policy refuses can still reach the git module (a caller that skips policy).
    (tmp_path / "source" / "conf").mkdir(parents=True)
    (tmp_path / "target").mkdir()
    with pytest.raises(InvalidParams) as raised:
        worktrees.copy_files(tmp_path / "source", tmp_path / "target", [pattern])
    assert raised.value.field == "copy_files"
    assert list((tmp_path / "target").iterdir()) == []


# ---- 2. free-form JSON nested deeper than code walking it can recurse -------------------


def nested(depth: int, *, key: str | None = "a") -> Any:
    """An object (or, with ``key=None``, an array) nesting ``depth`` levels."""
    value: Any = {} if key is not None else []
    for _ in range(depth - 1):
        value = {key: value} if key is not None else [value]
    return value


DEEP: Final = 900


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("project.add", {"config": nested(DEEP)}, "config"),
        ("project.add", {"config": {"copy_files": nested(DEEP, key=None)}}, "config"),
        ("project.update", {"config": {"env": nested(DEEP)}}, "config"),
        ("session.create", {"config": nested(DEEP)}, "config"),
        ("session.update", {"config": nested(DEEP)}, "config"),
        (
            "session.prompt",
            {"content": [{"type": "text", "text": "hi", "_meta": nested(DEEP)}]},
            "content",
        ),
    ],
)
async def test_a_free_form_param_nested_too_deeply_is_invalid_params_naming_it(
    daemon: InProcessDaemon,
    client: TrioClient,
    repo: Path,
    method: str,
    params: dict[str, Any],
    field: str,
) -> None:
    project = await add_project(client, repo)
    session = await client.call("session.create", {"project": project["id"]})
    refs = {
        "project.add": {"path": str(repo)},
        "project.update": {"project": project["id"]},
        "session.create": {"project": project["id"]},
        "session.update": {"session": session["id"]},
        "session.prompt": {"session": session["id"]},
    }
    before = stored(daemon.dirs)

    error = await call_error(client, method, {**refs[method], **params})

    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == field
    assert "more than 64 levels deep" in error["message"]
    assert stored(daemon.dirs) == before
    # The connection is still there, and so is the daemon.
    assert (await client.call("daemon.status"))["pid"] == os.getpid()


async def test_a_config_nested_to_the_limit_is_checked_by_policy_as_usual(
    daemon: InProcessDaemon, client: TrioClient, repo: Path
) -> None:
    # 64 levels with config itself, the env map and the variable's long form.
    config = {"env": {"A": {"value": nested(61)}}}
    error = await call_error(client, "project.add", {"path": str(repo), "config": config})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config.env.A.value"
    assert stored(daemon.dirs) == ([], [])


# ---- 3. paths and git names the OS cannot take ------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("project.add", {"path": "/tmp/a\0b"}, "path"),
        ("session.create", {"base_ref": "main\0"}, "base_ref"),
        ("session.create", {"branch": "topic\0x"}, "branch"),
        ("db.backup", {"path": "/tmp/backup\0.db"}, "path"),
    ],
)
async def test_a_nul_byte_in_a_path_or_git_name_is_invalid_params_naming_it(
    daemon: InProcessDaemon,
    client: TrioClient,
    repo: Path,
    method: str,
    params: dict[str, Any],
    field: str,
) -> None:
    project = await add_project(client, repo)
    if method == "session.create":
        params = {"project": project["id"], **params}
    before = stored(daemon.dirs)

    error = await call_error(client, method, params)

    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == field
    assert "NUL" in error["message"]
    assert stored(daemon.dirs) == before
    assert worktree_dirs(daemon.dirs) == []


async def test_a_path_under_an_unknown_users_home_is_invalid_params(
    daemon: InProcessDaemon, client: TrioClient
) -> None:
    error = await call_error(client, "project.add", {"path": "~no-such-user-mimir/src"})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"
    assert stored(daemon.dirs) == ([], [])


async def test_a_backup_name_longer_than_a_file_name_can_be_is_invalid_params(
    daemon: InProcessDaemon, client: TrioClient
) -> None:
    target = daemon.dirs.root / ("b" * 250)
    error = await call_error(client, "db.backup", {"path": str(target)})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"
    assert list(daemon.dirs.root.glob("*bbbb*")) == []


# ---- 4. integers beyond what SQLite holds ----------------------------------------------

TOO_BIG: Final = (1 << 63, 1 << 70, 10**30)


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize(
    ("method", "field"),
    [
        ("session.events", "after_seq"),
        ("session.events", "before_seq"),
        ("subscribe", "after_seq"),
        ("subscribe", "after_id"),
        ("unsubscribe", "subscription"),
    ],
)
async def test_an_integer_param_beyond_sqlites_range_is_invalid_params_naming_it(
    daemon: InProcessDaemon,
    client: TrioClient,
    repo: Path,
    method: str,
    field: str,
    value: int,
) -> None:
    project = await add_project(client, repo)
    session = await client.call("session.create", {"project": project["id"]})
    params: dict[str, Any] = {field: value}
    if method != "unsubscribe" and field != "after_id":
        params["session"] = session["id"]

    error = await call_error(client, method, params)

    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == field
    assert "<= 9223372036854775807" in error["message"]


async def test_the_largest_integer_sqlite_holds_is_a_valid_bound(
    daemon: InProcessDaemon, client: TrioClient, repo: Path
) -> None:
    project = await add_project(client, repo)
    session = await client.call("session.create", {"project": project["id"]})
    biggest = (1 << 63) - 1
    events = await client.call("session.events", {"session": session["id"], "after_seq": biggest})
    assert events == {"events": []}
    events = await client.call("session.events", {"session": session["id"], "before_seq": biggest})
    assert [event["seq"] for event in events["events"]] == list(range(1, session["last_seq"] + 1))


@pytest.mark.parametrize("field", ["after_id", "after_seq"])
async def test_a_subscription_at_the_largest_cursor_keeps_its_connection_through_new_events(
    daemon: InProcessDaemon, client: TrioClient, repo: Path, field: str
) -> None:
    """Issue 10: subscribe with a cursor at the end of SQLite's range once answered and
    then tore the connection down; now it waits (no stored event is beyond it) and
    the connection goes on serving, new events or not."""
    project = await add_project(client, repo)
    session = await client.call("session.create", {"project": project["id"]})
    biggest = (1 << 63) - 1
    params: dict[str, Any] = {field: biggest}
    if field == "after_seq":
        params["session"] = session["id"]

    subscribed = await client.call("subscribe", params)

    assert subscribed["cursor"] == biggest
    await client.call("session.update", {"session": session["id"], "title": "new events"})
    await client.call("session.create", {"project": project["id"]})
    status = await client.call("daemon.status")
    assert status["pid"] == os.getpid()
    unsubscribed = await client.call("unsubscribe", {"subscription": subscribed["subscription"]})
    assert unsubscribed == {"subscription": subscribed["subscription"]}


# ---- 5. session.list cursors the daemon never gave --------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        "random text",
        "bm90IGEgY3Vyc29yIGF0IGFsbA==",  # base64 of junk
        "zzzzzzzzzzzzzzzzzzzzzzzzzz",  # 26 base32 characters, but more than 128 bits
        "01m80mw6x197j0w44666p8g1d",  # one character short
        "01m80mw6x197j0w44666p8g1dnx",  # one too many
        "01m80mw6x197j0w44666p8g1du",  # 'u' is not Crockford base32
        "",
    ],
)
async def test_an_unreadable_session_list_cursor_is_invalid_params(
    daemon: InProcessDaemon, client: TrioClient, repo: Path, cursor: str
) -> None:
    project = await add_project(client, repo)
    await client.call("session.create", {"project": project["id"]})

    error = await call_error(client, "session.list", {"cursor": cursor})

    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "cursor"
    assert "next_cursor" in error["message"]


async def test_the_cursors_session_list_gives_page_through_every_session(
    daemon: InProcessDaemon, client: TrioClient, repo: Path
) -> None:
    project = await add_project(client, repo)
    created = [
        (await client.call("session.create", {"project": project["id"], "title": f"s{i}"}))["id"]
        for i in range(3)
    ]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    while True:
        page = await client.call("session.list", params)
        seen += [session["id"] for session in page["sessions"]]
        if page["next_cursor"] is None:
            break
        # Upper case is read as well: ids are case-insensitive where they are typed.
        params["cursor"] = page["next_cursor"].upper()
    assert seen == created[::-1]


# ---- templates that make names no file can have ------------------------------------------


@pytest.mark.parametrize(
    ("key", "template"),
    [
        ("worktree_location", "x" * 300 + "/{short_id}"),
        ("worktree_location", "{project}/" + "é" * 120 + "-{slug}"),
        ("worktree_location", "{project}/" + "w" * 210 + "{slug}-{short_id}"),
        ("branch_template", "mimir/" + "y" * 300 + "{short_id}"),
    ],
)
async def test_a_template_that_can_make_a_name_longer_than_name_max_is_refused(
    daemon: InProcessDaemon, client: TrioClient, repo: Path, key: str, template: str
) -> None:
    project = await add_project(client, repo)
    before = stored(daemon.dirs)
    for method, params in (
        ("project.update", {"project": project["id"]}),
        ("session.create", {"project": project["id"]}),
    ):
        error = await call_error(client, method, {**params, "config": {key: template}})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == f"config.{key}"
        assert "255 bytes" in error["message"]
    assert stored(daemon.dirs) == before
    assert worktree_dirs(daemon.dirs) == []


async def test_a_template_whose_longest_names_fit_is_accepted(
    daemon: InProcessDaemon, client: TrioClient, repo: Path
) -> None:
    # 200 + a 40-character slug + '-' + 8: 249 bytes.
    location = "{project}/" + "w" * 200 + "{slug}-{short_id}"
    project = await add_project(client, repo, config={"worktree_location": location})
    session = await client.call("session.create", {"project": project["id"], "title": "t"})
    assert Path(session["workspace"]["path"]).name == "w" * 200 + f"t-{session['id'][-8:]}"
