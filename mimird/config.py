"""Settings: the TOML config file, ``MIMIR_*`` environment variables and flags.

The file is decoded into frozen msgspec Structs that forbid unknown keys; an
error names the key and the file. ``Settings`` is the resolved, read-only
result every part of the daemon receives.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import Meta

from mimird import paths
from mimird.errors import ConfigError, InvalidParams
from mimird.policy import ConfigLayer, parse_layer
from mimird.validation import describe_validation_error
from mimird.wire.protocol import DEFAULT_MAX_FRAME_BYTES

#: Environment variable holding the database key itself (removed from the
#: environment as soon as it is read, so no child process ever sees it).
DB_KEY_ENV: Final = "MIMIR_DB_KEY"
DB_KEY_FILE_ENV: Final = "MIMIR_DB_KEY_FILE"
#: Name of the systemd credential (``LoadCredential=mimir-db-key:...``).
DB_KEY_CREDENTIAL: Final = "mimir-db-key"


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class PathsSection(_Section, frozen=True):
    socket: str | None = None
    database: str | None = None
    worktrees: str | None = None
    state: str | None = None


class DatabaseSection(_Section, frozen=True):
    synchronous: Literal["normal", "full"] = "normal"
    busy_timeout_ms: Annotated[int, Meta(ge=0, le=600_000)] = 5000
    key_file: str | None = None
    backups_to_keep: Annotated[int, Meta(ge=1, le=1000)] = 5
    reader_threads: Annotated[int, Meta(ge=1, le=64)] = 4


class RpcSection(_Section, frozen=True):
    max_frame_bytes: Annotated[int, Meta(ge=1024, le=1 << 30)] = DEFAULT_MAX_FRAME_BYTES
    max_inflight_per_connection: Annotated[int, Meta(ge=1, le=10_000)] = 64
    write_stall_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    #: Connections open at once; past it a new one gets one error line and is
    #: closed. Clamped at start to what the process's fd limit leaves room for.
    max_connections: Annotated[int, Meta(ge=1, le=65_536)] = 512
    #: A connection holding part of a frame that sends nothing more for this long
    #: is closed (one idle between whole frames, a subscriber's, never is).
    idle_frame_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    #: Bytes of unfinished frames all connections together may hold; the
    #: connection whose frame would go past it gets an error and is closed.
    max_partial_frame_bytes_total: Annotated[int, Meta(ge=1024, le=1 << 34)] = 64 << 20


class LogSection(_Section, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class SupervisionSection(_Section, frozen=True):
    """``[supervision]``: how agent processes are started, restarted and stopped."""

    #: Restarts after unexpected exits before the session is failed.
    max_restarts: Annotated[int, Meta(ge=0, le=100)] = 3
    #: The first restart waits this long; each next one twice as long, up to the max.
    backoff_initial_s: Annotated[float, Meta(ge=0, le=3600)] = 1.0
    backoff_max_s: Annotated[float, Meta(ge=0, le=3600)] = 30.0
    #: An agent that ran this long before exiting starts again with a clean count.
    stable_after_s: Annotated[float, Meta(ge=0, le=86400)] = 60.0
    #: How long ``initialize`` plus ``session/new`` (or ``session/load``) may take.
    start_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 120.0
    #: After ``session/cancel``, how long the agent has to end the turn before it
    #: is restarted.
    cancel_grace_s: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    #: Stopping: wait this long after closing stdin, and again after SIGTERM.
    stop_grace_s: Annotated[float, Meta(gt=0, le=600)] = 3.0
    #: A session's setup command is stopped (and the session failed) after this long.
    setup_timeout_s: Annotated[float, Meta(gt=0, le=86400)] = 1800.0
    #: Terminals (ACP ``terminal/*``) an agent may hold at once, running or not
    #: yet released.
    max_terminals: Annotated[int, Meta(ge=1, le=1000)] = 16
    #: The most output kept per terminal (the newest), whatever the agent asks for.
    terminal_output_bytes: Annotated[int, Meta(ge=1024, le=64 << 20)] = 1 << 20
    #: An agent's message longer than this (its text as stored, in bytes of JSON) is
    #: journaled in pieces of at most this size, as it streams.
    message_piece_bytes: Annotated[int, Meta(ge=1024, le=64 << 20)] = 1 << 20
    #: Requests of one agent (fs, terminal, permission) being answered at once; more
    #: are answered at once with an error (busy).
    max_agent_requests: Annotated[int, Meta(ge=1, le=10_000)] = 64
    #: How long one file read or write of an agent may take before it is given up.
    file_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    #: The largest file an agent may read, and the most it may write at once.
    file_max_bytes: Annotated[int, Meta(ge=1024, le=64 << 20)] = 32 << 20
    #: How long an attached client (an editor) may take to answer a file or terminal
    #: request forwarded to it (``terminal/wait_for_exit`` excepted) before it is
    #: detached and Mimir serves the request itself (a terminal request errors).
    client_request_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 10.0


class RunsSection(_Section, frozen=True):
    """``[runs]``: how a run's checks are run (``run.create``'s ``check_command``)."""

    #: A member's check command is stopped (and counts as failed) after this long.
    check_timeout_s: Annotated[float, Meta(gt=0, le=86400)] = 600.0
    #: The most of a check's output journaled (its end; secrets masked).
    check_output_bytes: Annotated[int, Meta(ge=1024, le=16 << 20)] = 64 << 10
    #: The largest prompt a run writes for a judge, an integration session or a debate
    #: round (UTF-8 bytes); the members' diffs share it (mimird/runs/prompts.py).
    prompt_max_bytes: Annotated[int, Meta(ge=16 << 10, le=8 << 20)] = 256 << 10


class AgentSection(_Section, frozen=True):
    """``[agents.<name>]``: how to start an ACP agent (adds a kind, or replaces a preset)."""

    command: Annotated[str, Meta(min_length=1)]
    args: list[str] = msgspec.field(default_factory=list)
    env: dict[str, str] = msgspec.field(default_factory=dict)
    description: str = ""
    #: The kind's quirks (mimird/agents/presets.py ``Quirks``); unset: the preset's
    #: of the same name, else the plain ACP behaviour.
    missing_file: Literal["error", "empty"] | None = None
    stop: Literal["eof", "term"] | None = None
    #: The mode set at the agent's start when the layered config sets none.
    mode: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")] | None = None


class ConfigFile(_Section, frozen=True):
    paths: PathsSection = PathsSection()
    database: DatabaseSection = DatabaseSection()
    rpc: RpcSection = RpcSection()
    log: LogSection = LogSection()
    supervision: SupervisionSection = SupervisionSection()
    runs: RunsSection = RunsSection()
    #: Session configuration defaults (agent, env, tool_policy, ...), checked by
    #: ``mimird.policy.parse_layer``: the layer above the built-in defaults.
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)
    agents: dict[str, AgentSection] = msgspec.field(default_factory=dict)


class Secret:
    """A value that never shows itself in repr, logs or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the daemon needs to know, resolved from flags, env, file and defaults."""

    config_path: Path | None
    socket_path: Path
    database_path: Path
    worktrees_dir: Path
    state_dir: Path
    db_key: Secret | None
    db_key_source: str | None
    notify_socket: str | None
    #: The permission bits of the key file, when the key came from one.
    db_key_file_mode: int | None = None
    database: DatabaseSection
    rpc: RpcSection
    log: LogSection
    supervision: SupervisionSection = SupervisionSection()
    runs: RunsSection = RunsSection()
    #: The config file's ``[defaults]``, parsed; empty without a file.
    defaults: ConfigLayer = ConfigLayer()
    #: The config file's ``[agents.<name>]`` sections.
    agents: dict[str, AgentSection] = msgspec.field(default_factory=dict)
    #: Where ``agent.install`` puts agents: ``<data dir>/agents``.
    agents_dir: Path | None = None

    @property
    def backup_dir(self) -> Path:
        return self.state_dir / "backups"

    @property
    def lock_paths(self) -> tuple[Path, Path]:
        """One lock per resource a second daemon must not share: the socket and the database."""
        return (
            self.socket_path.with_name(self.socket_path.name + ".lock"),
            self.database_path.with_name(self.database_path.name + ".lock"),
        )


class Overrides(msgspec.Struct, frozen=True, kw_only=True):
    """Values given on the command line (None: not given)."""

    config: str | None = None
    socket: str | None = None
    database: str | None = None
    data_dir: str | None = None
    runtime_dir: str | None = None
    state_dir: str | None = None
    db_key_file: str | None = None
    #: Start with a key file that other users may read.
    insecure_key_file: bool = False
    log_level: str | None = None
    log_format: str | None = None


def parse_config_file(path: Path) -> ConfigFile:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    # Map entries are checked one by one: msgspec names a bad entry of a map only
    # as "[...]", and the error must name the key.
    agents = data.pop("agents", {})
    file = _convert(path, data, ConfigFile, "")
    if not isinstance(agents, dict):
        raise ConfigError(f"{path}: key 'agents': expected a table of [agents.<name>] sections")
    sections = {}
    for name, section in agents.items():
        if not _AGENT_NAME.fullmatch(name):
            raise ConfigError(
                f"{path}: key 'agents.{name}': agent names use letters, digits, '.', '_', '-'"
            )
        sections[name] = _convert(path, section, AgentSection, f"agents.{name}")
        if not (sections[name].mode or "").isprintable():
            raise ConfigError(f"{path}: key 'agents.{name}.mode': must be printable")
    file = msgspec.structs.replace(file, agents=sections)
    parse_defaults(path, file)
    return file


_AGENT_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,100}")
T = TypeVar("T")


def _convert(path: Path, data: Any, kind: type[T], prefix: str) -> T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        key, reason = describe_validation_error(exc)
        if reason.startswith("Object contains unknown field"):
            reason = "unknown key"
        elif reason.startswith("Object missing required field"):
            reason = "required key is missing"
        full = ".".join(part for part in (prefix, key) if part) or "(top level)"
        raise ConfigError(f"{path}: key '{full}': {reason}") from None


def parse_defaults(path: Path, file: ConfigFile) -> ConfigLayer:
    """The ``[defaults]`` section as a config layer; ConfigError names the key and the file."""
    try:
        return parse_layer(file.defaults, "defaults")
    except InvalidParams as exc:
        detail = exc.detail or {}
        key = f"defaults.{detail['key']}" if detail.get("key") else "defaults"
        raise ConfigError(f"{path}: key '{key}': {detail.get('reason', exc.message)}") from None


#: Permission bits of a key file that let someone else than its owner at it.
KEY_FILE_OTHERS_BITS: Final = 0o077


def _read_key_file(path: Path, origin: str, *, insecure_ok: bool) -> tuple[Secret, int]:
    """The key in ``path`` and the file's permission bits. A file that its group or
    others may access is refused unless ``insecure_ok`` (``--insecure-key-file``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # The mode of the file read, not of whatever is at the path a moment later.
            mode = os.fstat(fd).st_mode & 0o777
            with os.fdopen(os.dup(fd), "rb") as f:
                value = f.read().rstrip(b"\r\n")
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"cannot read database key file {path} ({origin}): {exc.strerror}"
        ) from None
    if mode & KEY_FILE_OTHERS_BITS and not insecure_ok:
        raise ConfigError(
            f"database key file {path} ({origin}) has mode {mode:04o}: other users can "
            f"read or change it. Run 'chmod 600 {path}', or pass --insecure-key-file to "
            "start anyway"
        )
    if not value:
        raise ConfigError(f"database key file {path} ({origin}) is empty")
    return Secret(value), mode


def _resolve_db_key(
    overrides: Overrides, file: ConfigFile, env: MutableMapping[str, str]
) -> tuple[Secret | None, str | None, int | None]:
    """Find the database key: flag, env var, env key file, systemd credential, config
    file. Returns the key, where it came from, and the key file's mode (if a file).

    ``MIMIR_DB_KEY`` is removed from ``env`` so that it never reaches a child,
    also when another source wins.
    """
    env_key = env.pop(DB_KEY_ENV, None)
    insecure_ok = overrides.insecure_key_file
    key_file: str | Path | None = None
    if overrides.db_key_file:
        key_file, origin = overrides.db_key_file, "--db-key-file"
    elif env_key is not None:
        if not env_key:
            raise ConfigError(f"{DB_KEY_ENV} is set but empty")
        return Secret(env_key.encode()), DB_KEY_ENV, None
    elif env.get(DB_KEY_FILE_ENV):
        key_file, origin = env[DB_KEY_FILE_ENV], DB_KEY_FILE_ENV
    elif (creds := env.get("CREDENTIALS_DIRECTORY")) and (Path(creds) / DB_KEY_CREDENTIAL).exists():
        key_file = Path(creds) / DB_KEY_CREDENTIAL
        origin = f"systemd credential {DB_KEY_CREDENTIAL}"
    elif file.database.key_file:
        key_file, origin = Path(file.database.key_file).expanduser(), "database.key_file"
    if key_file is None:
        return None, None, None
    key, mode = _read_key_file(Path(key_file), origin, insecure_ok=insecure_ok)
    return key, origin, mode


def load_settings(overrides: Overrides, env: MutableMapping[str, str] | None = None) -> Settings:
    """Resolve settings. ``env`` defaults to ``os.environ`` and is modified: secrets
    and systemd's per-process variables are removed from it."""
    if env is None:
        env = os.environ
    # Flags that move whole directories act like their environment variables.
    scoped: dict[str, str] = dict(env)
    for flag, var in (
        (overrides.data_dir, "MIMIR_DATA_DIR"),
        (overrides.runtime_dir, "MIMIR_RUNTIME_DIR"),
        (overrides.state_dir, "MIMIR_STATE_DIR"),
        (overrides.config, "MIMIR_CONFIG"),
        (overrides.socket, "MIMIR_SOCKET"),
    ):
        if flag:
            scoped[var] = flag

    explicit_config = "MIMIR_CONFIG" in scoped
    config_path = Path(paths.config_file(scoped))
    if config_path.exists() or explicit_config:
        file = parse_config_file(config_path)
        defaults = parse_defaults(config_path, file)
    else:
        file, config_path = ConfigFile(), None  # type: ignore[assignment]
        defaults = ConfigLayer()

    def pick(flag: str | None, var: str, from_file: str | None, default: Path) -> Path:
        if flag:
            return Path(flag).expanduser().absolute()
        if value := scoped.get(var):
            return Path(value).expanduser().absolute()
        if from_file:
            return Path(from_file).expanduser().absolute()
        return default.absolute()

    data = Path(paths.data_dir(scoped))
    socket_default = Path(paths.runtime_dir(scoped)) / paths.SOCKET_NAME
    socket_path = pick(overrides.socket, "MIMIR_SOCKET", file.paths.socket, socket_default)
    database_path = pick(
        overrides.database, "MIMIR_DATABASE", file.paths.database, data / paths.DATABASE_NAME
    )
    worktrees_dir = pick(None, "MIMIR_WORKTREES_DIR", file.paths.worktrees, data / "worktrees")
    state = pick(
        overrides.state_dir, "MIMIR_STATE_DIR", file.paths.state, Path(paths.state_dir(scoped))
    )

    if len(os.fsencode(socket_path)) > paths.MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"socket path {socket_path} is {len(os.fsencode(socket_path))} bytes; Unix sockets "
            f"allow at most {paths.MAX_SOCKET_PATH_BYTES}: choose a shorter --socket"
        )

    log = file.log
    if overrides.log_level or overrides.log_format or env.get("MIMIR_LOG_LEVEL"):
        try:
            log = msgspec.structs.replace(
                log,
                level=(overrides.log_level or env.get("MIMIR_LOG_LEVEL") or log.level),
                format=(overrides.log_format or log.format),
            )
            log = msgspec.convert(msgspec.to_builtins(log), LogSection)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"log level or format: {exc}") from None

    db_key, db_key_source, db_key_file_mode = _resolve_db_key(overrides, file, env)

    # systemd's per-process variables are for this process alone; keep what we
    # need and make sure no child ever inherits them.
    notify_socket = env.pop("NOTIFY_SOCKET", None)

    return Settings(
        config_path=config_path,
        socket_path=socket_path,
        database_path=database_path,
        worktrees_dir=worktrees_dir,
        state_dir=state,
        db_key=db_key,
        db_key_source=db_key_source,
        db_key_file_mode=db_key_file_mode,
        notify_socket=notify_socket,
        database=file.database,
        rpc=file.rpc,
        log=log,
        supervision=file.supervision,
        runs=file.runs,
        defaults=defaults,
        agents=dict(file.agents),
        agents_dir=data / "agents",
    )
