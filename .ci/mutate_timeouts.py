"""pytest plugin for a mutant's test run (``-p mutate_timeouts``): each test gets a
timeout of its own, ``TIMEOUT_BASE + TIMEOUT_FACTOR`` times its duration in the
coverage run (``.mutmut-coverage/map.json``), at most ``TIMEOUT_MAX``. A mutant that
makes a test hang (a journal that never publishes, a subscription that never goes
live) is then stopped seconds after the test would have passed, instead of waiting
for the test's own deadline (tens of seconds, sized for loaded machines), and counts
as killed: the test failed."""

from __future__ import annotations

import json

import mutmut_config
import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    try:
        durations: dict[str, float] = json.loads(mutmut_config.MAP.read_text())["durations"]
    except (OSError, ValueError, KeyError):
        return
    for item in items:
        took = durations.get(item.nodeid)
        if took is not None:
            timeout = mutmut_config.TIMEOUT_BASE + mutmut_config.TIMEOUT_FACTOR * took
            item.add_marker(pytest.mark.timeout(min(timeout, mutmut_config.TIMEOUT_MAX)))
