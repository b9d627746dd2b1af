"""What the benchmarks share: a daemon's environment inside a temp dir, the
installed commands, percentiles. Imported by the bench scripts, which run as
``python bench/<name>.py`` (so this directory is on sys.path)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

BIN_DIR: Final = Path(sys.executable).parent
#: Environment variables of the caller that must not leak into the daemon under test.
FOREIGN_ENV: Final = ("MIMIR_", "XDG_", "NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_", "GIT_")


def mimir_env(root: Path) -> dict[str, str]:
    """The environment of a mimird (and its mimirctl) living entirely inside ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    env.update(
        HOME=str(root / "home"),
        MIMIR_RUNTIME_DIR=str(root / "run"),
        MIMIR_DATA_DIR=str(root / "data"),
        MIMIR_STATE_DIR=str(root / "state"),
    )
    return env


def installed(command: str) -> list[str]:
    """The console script next to this interpreter (the venv's), else ``python -m``."""
    script = BIN_DIR / command
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", command]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[rank])
