"""Settings: config-file errors that say which key in which file (exit code 78),
precedence flag > MIMIR_* env > config file > XDG defaults, and secrets that
leave the environment and never show themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mimird.cli import main
from mimird.config import Overrides, Settings, load_settings
from mimird.errors import ConfigError
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

EX_CONFIG = 78
EXIT_TIMEOUT_S = 20.0
KEY = "hunter2-but-longer-3c9e"


def run_main(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """``mimird.cli.main()`` in this process, in ``dirs``' environment: fast, for
    errors raised before anything starts. Returns the exit code and stderr."""
    wanted = dirs.env()
    for name in list(os.environ):
        if name not in wanted:
            monkeypatch.delenv(name)
    for name, value in wanted.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main([])
    return code, capsys.readouterr().err


def run_mimird(dirs: DaemonDirs, *args: str) -> subprocess.CompletedProcess[str]:
    """Run mimird to completion (it is expected to refuse its configuration)."""
    return subprocess.run(
        [sys.executable, "-m", "mimird", "--log-format", "json", *args],
        env=dirs.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )


# ---- errors in the config file -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[rpc]\nmax_frame_byte = 4096\n",
            ["key 'rpc.max_frame_byte'", "unknown key"],
            id="unknown-key",
        ),
        pytest.param("[agentz]\nx = 1\n", ["key 'agentz'", "unknown key"], id="unknown-section"),
        pytest.param(
            '[rpc]\nmax_frame_bytes = "16 MiB"\n',
            ["key 'rpc.max_frame_bytes'", "Expected `int`, got `str`"],
            id="wrong-type",
        ),
        pytest.param(
            "[database]\nbusy_timeout_ms = -1\n",
            ["key 'database.busy_timeout_ms'", ">= 0"],
            id="out-of-range",
        ),
        pytest.param(
            '[log]\nlevel = "loud"\n',
            ["key 'log.level'", "'loud'"],
            id="not-one-of-the-choices",
        ),
        pytest.param(
            "[rpc\nmax_frame_bytes = 1\n", ["not valid TOML", "line 1"], id="invalid-toml"
        ),
    ],
)
def test_bad_config_file_is_one_error_line_naming_the_key_and_the_file(
    dirs: DaemonDirs,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    expected: list[str],
) -> None:
    dirs.config.write_text(text)
    code, stderr = run_main(dirs, monkeypatch, capsys)
    assert code == EX_CONFIG
    [line] = stderr.splitlines()
    assert line.startswith(f"mimird: {dirs.config}: ")
    for fragment in expected:
        assert fragment in line


def test_bad_config_file_makes_the_process_exit_78(dirs: DaemonDirs) -> None:
    dirs.config.write_text("[rpc]\nmax_frame_byte = 4096\n")
    result = run_mimird(dirs)
    assert result.returncode == EX_CONFIG
    assert result.stderr.splitlines() == [
        f"mimird: {dirs.config}: key 'rpc.max_frame_byte': unknown key"
    ]


def test_missing_config_file_given_with_the_flag_exits_78(dirs: DaemonDirs) -> None:
    missing = dirs.root / "nowhere.toml"
    result = run_mimird(dirs, "--config", str(missing))
    assert result.returncode == EX_CONFIG
    assert result.stderr.splitlines() == [f"mimird: config file {missing} does not exist"]


def test_bad_config_file_touches_nothing(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs.config.write_text("[rpc]\nmax_frame_byte = 4096\n")
    assert run_main(dirs, monkeypatch, capsys)[0] == EX_CONFIG
    assert sorted(p.name for p in dirs.root.iterdir()) == ["config.toml"]


# ---- precedence: flag > MIMIR_* env > config file > XDG defaults ----------------------

LEVELS = ["flag", "env", "file", "xdg"]


def layered_settings(root: Path, level: str) -> Settings:
    """Settings with every source at ``level`` and below it set to a distinct path."""
    below = LEVELS[LEVELS.index(level) :]
    env = {
        "HOME": str(root / "home"),
        "XDG_RUNTIME_DIR": str(root / "xdg-run"),
        "XDG_DATA_HOME": str(root / "xdg-data"),
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
    }
    if "file" in below:
        config = root / "xdg-config" / "mimir" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            f'[paths]\nsocket = "{root}/file/mimird.sock"\ndatabase = "{root}/file/mimir.db"\n'
        )
    if "env" in below:
        env["MIMIR_SOCKET"] = f"{root}/env/mimird.sock"
        env["MIMIR_DATABASE"] = f"{root}/env/mimir.db"
    overrides = Overrides()
    if "flag" in below:
        overrides = Overrides(socket=f"{root}/flag/mimird.sock", database=f"{root}/flag/mimir.db")
    return load_settings(overrides, env)


@pytest.mark.parametrize("level", LEVELS)
def test_socket_path_comes_from_the_strongest_source_given(dirs: DaemonDirs, level: str) -> None:
    settings = layered_settings(dirs.root, level)
    expected = {
        "flag": dirs.root / "flag" / "mimird.sock",
        "env": dirs.root / "env" / "mimird.sock",
        "file": dirs.root / "file" / "mimird.sock",
        "xdg": dirs.root / "xdg-run" / "mimir" / "mimird.sock",
    }
    assert settings.socket_path == expected[level]


@pytest.mark.parametrize("level", LEVELS)
def test_database_path_comes_from_the_strongest_source_given(dirs: DaemonDirs, level: str) -> None:
    settings = layered_settings(dirs.root, level)
    expected = {
        "flag": dirs.root / "flag" / "mimir.db",
        "env": dirs.root / "env" / "mimir.db",
        "file": dirs.root / "file" / "mimir.db",
        "xdg": dirs.root / "xdg-data" / "mimir" / "mimir.db",
    }
    assert settings.database_path == expected[level]


def test_config_flag_beats_mimir_config(dirs: DaemonDirs) -> None:
    from_flag, from_env = dirs.root / "flag.toml", dirs.root / "env.toml"
    from_flag.write_text('[log]\nlevel = "debug"\n')
    from_env.write_text('[log]\nlevel = "error"\n')
    env = {"HOME": str(dirs.root), "MIMIR_CONFIG": str(from_env)}
    settings = load_settings(Overrides(config=str(from_flag)), env)
    assert settings.config_path == from_flag
    assert settings.log.level == "debug"


@pytest.mark.parametrize("xdg_runtime_dir", [None, "relative/run"], ids=["unset", "relative"])
def test_socket_falls_back_to_tmp_without_a_usable_xdg_runtime_dir(
    dirs: DaemonDirs, xdg_runtime_dir: str | None
) -> None:
    env = {"HOME": str(dirs.root / "home")}
    if xdg_runtime_dir is not None:
        env["XDG_RUNTIME_DIR"] = xdg_runtime_dir
    settings = load_settings(Overrides(), env)
    assert settings.socket_path == Path(f"/tmp/mimir-{os.geteuid()}/mimird.sock")


def test_socket_path_too_long_for_a_unix_socket_is_a_config_error(dirs: DaemonDirs) -> None:
    env = {"HOME": str(dirs.root), "MIMIR_SOCKET": "/tmp/" + "x" * 120 + ".sock"}
    with pytest.raises(ConfigError, match="at most 107"):
        load_settings(Overrides(), env)


# ---- secrets and systemd variables leave the environment -------------------------------


def test_db_key_is_taken_out_of_the_environment(dirs: DaemonDirs) -> None:
    env = {"HOME": str(dirs.root), "MIMIR_DB_KEY": KEY}
    settings = load_settings(Overrides(), env)
    assert "MIMIR_DB_KEY" not in env
    assert settings.db_key is not None
    assert settings.db_key.reveal() == KEY.encode()
    assert settings.db_key_source == "MIMIR_DB_KEY"


def test_db_key_leaves_the_environment_even_when_a_key_file_flag_wins(dirs: DaemonDirs) -> None:
    key_file = dirs.root / "db.key"
    key_file.write_text("from-the-file\n")
    key_file.chmod(0o600)
    env = {"HOME": str(dirs.root), "MIMIR_DB_KEY": KEY}
    settings = load_settings(Overrides(db_key_file=str(key_file)), env)
    assert settings.db_key is not None
    assert settings.db_key.reveal() == b"from-the-file"
    assert "MIMIR_DB_KEY" not in env


def test_empty_db_key_is_a_config_error(dirs: DaemonDirs) -> None:
    with pytest.raises(ConfigError, match="MIMIR_DB_KEY is set but empty"):
        load_settings(Overrides(), {"HOME": str(dirs.root), "MIMIR_DB_KEY": ""})


def test_notify_socket_is_taken_out_of_the_environment(dirs: DaemonDirs) -> None:
    env = {"HOME": str(dirs.root), "NOTIFY_SOCKET": "/run/user/1000/systemd/notify"}
    settings = load_settings(Overrides(), env)
    assert "NOTIFY_SOCKET" not in env
    assert settings.notify_socket == "/run/user/1000/systemd/notify"


def test_settings_never_show_the_db_key(dirs: DaemonDirs) -> None:
    settings = load_settings(Overrides(), {"HOME": str(dirs.root), "MIMIR_DB_KEY": KEY})
    assert KEY not in repr(settings)
    assert KEY not in str(settings)
    assert KEY not in f"{settings.db_key}"
