"""``mimird``: the command line of the daemon."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Final

import structlog
import trio

from mimird import __version__, paths, systemd
from mimird.config import DB_KEY_ENV, KEY_FILE_OTHERS_BITS, Overrides, Settings, load_settings
from mimird.daemon import run_daemon
from mimird.errors import StartupError
from mimird.log import configure_logging
from mimird.procenv import scrub_initial_environment

log = structlog.get_logger("mimird")

GIT_REDIRECTS: Final = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimird",
        description="The Mimir daemon: runs coding agents and serves JSON-RPC on a Unix socket. "
        "Runs in the foreground; stop it with SIGTERM or Ctrl-C.",
        epilog="Every path can also be set with MIMIR_* environment variables or in the "
        "config file; flags win, then the environment, then the file, then XDG defaults.",
    )
    parser.add_argument("--version", action="version", version=f"mimird {__version__}")
    parser.add_argument("--config", help="config file (default $XDG_CONFIG_HOME/mimir/config.toml)")
    parser.add_argument("--socket", help="socket path (default $XDG_RUNTIME_DIR/mimir/mimird.sock)")
    parser.add_argument("--database", help="database file (default $XDG_DATA_HOME/mimir/mimir.db)")
    parser.add_argument("--data-dir", help="directory for the database and worktrees")
    parser.add_argument("--runtime-dir", help="directory for the socket and lock files")
    parser.add_argument("--state-dir", help="directory for backups and logs")
    parser.add_argument("--db-key-file", help="file holding the database encryption key")
    parser.add_argument(
        "--insecure-key-file",
        action="store_true",
        help="start even if the key file can be read by other users (it is refused otherwise)",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", choices=("auto", "json", "console"))
    return parser


async def _serve(settings: Settings) -> None:
    watchdog = systemd.watchdog_interval(os.environ)
    listen_sockets = systemd.take_listen_fds(os.environ)
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    shutdown.set()

            nursery.start_soon(watch_signals)
            await run_daemon(
                settings, shutdown, listen_sockets=listen_sockets, watchdog_interval=watchdog
            )
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            Overrides(
                config=args.config,
                socket=args.socket,
                database=args.database,
                data_dir=args.data_dir,
                runtime_dir=args.runtime_dir,
                state_dir=args.state_dir,
                db_key_file=args.db_key_file,
                insecure_key_file=args.insecure_key_file,
                log_level=args.log_level,
                log_format=args.log_format,
            )
        )
        configure_logging(settings.log.level, settings.log.format)
        for variable in GIT_REDIRECTS:
            # Inherited from a shell inside a repository (a git hook, say), these would
            # point every git command mimird runs at the wrong repository.
            os.environ.pop(variable, None)
        if (
            settings.db_key_file_mode is not None
            and settings.db_key_file_mode & KEY_FILE_OTHERS_BITS
        ):
            log.warning(
                "database_key_file_insecure",
                source=settings.db_key_source,
                mode=f"{settings.db_key_file_mode:04o}",
            )
        if settings.db_key_source == DB_KEY_ENV:
            scrub_initial_environment((DB_KEY_ENV,))
        if str(settings.socket_path.parent) == paths.fallback_runtime_dir():
            # The XDG spec asks for a warning when $XDG_RUNTIME_DIR is missing:
            # files under /tmp may be cleaned behind our back.
            log.warning("xdg_runtime_dir_unset", socket=str(settings.socket_path))
        trio.run(_serve, settings)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    except BaseException as exc:
        error = _find_startup_error(exc)
        if error is None:
            raise
        print(f"mimird: {error}", file=sys.stderr)
        return error.exit_code
    return 0


def _find_startup_error(exc: BaseException) -> StartupError | None:
    """The StartupError in ``exc``, also when trio wrapped it in exception groups."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _find_startup_error(inner)) is not None:
                return found
    return None


if __name__ == "__main__":
    sys.exit(main())
