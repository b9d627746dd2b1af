"""Coverage in the Python subprocesses the tests start (daemons, mimirctl), during
``make mutate``'s coverage run only: this directory is on PYTHONPATH then, and
COVERAGE_PROCESS_START names the run's rc file. Their lines count for the test that
started them (MUTATE_COVERAGE_CONTEXT, set by ``.ci/mutate_contexts.py``).

(coverage 7.7+ starts itself from its own .pth when COVERAGE_PROCESS_START is set;
``process_startup`` then returns None, so the running instance is asked for.)"""

import os

if os.environ.get("COVERAGE_PROCESS_START"):
    import coverage

    coverage.process_startup()
    _cov = coverage.Coverage.current()
    _context = os.environ.get("MUTATE_COVERAGE_CONTEXT")
    if _cov is not None and _context:
        _cov.switch_context(_context)
