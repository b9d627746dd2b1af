"""pytest plugin for the coverage run of ``make mutate`` (``-p mutate_contexts``).

It names coverage's dynamic context after each test's node id, in this process
(``Coverage.current().switch_context``) and in every Python subprocess a test starts
(the node id goes into ``MUTATE_COVERAGE_CONTEXT``, which ``coverage-startup/
sitecustomize.py`` reads), and it writes each test's duration (setup + call +
teardown) to ``$MUTATE_DURATIONS`` so that a mutant's tests run fastest first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import coverage
import pytest

CONTEXT_ENV = "MUTATE_COVERAGE_CONTEXT"
_durations: dict[str, float] = {}


def _switch(context: str) -> None:
    cov = coverage.Coverage.current()
    if cov is not None:
        cov.switch_context(context)
    if context:
        os.environ[CONTEXT_ENV] = context
    else:
        os.environ.pop(CONTEXT_ENV, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _switch(item.nodeid)
    try:
        yield
    finally:
        # Between tests (and during collection) lines count for no test.
        _switch("")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish() -> None:
    path = os.environ.get("MUTATE_DURATIONS")
    if path:
        with open(path, "w") as f:
            json.dump(_durations, f)
