# Mimir: the two commands a new machine needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# compat: a plain .pth path entry. setuptools' default editable finder costs every
# mimirctl start ~45 ms of imports (importlib.util, pathlib) before main() runs.
EDITABLE := --config-settings editable_mode=compat
# pytest-xdist: one worker per core, at most 4 (each test starts daemons, git and
# agents of its own); worksteal evens out the long tests. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= auto
XDIST  := -n $(PYTEST_WORKERS) --maxprocesses 4 --dist worksteal

.PHONY: run test test-fast mutate check lint typecheck bench bench-sessions bench-search bench-stream bench-memory bench-runs clean migration install-systemd install install-test system-deps

# Install (runtime + encryption extra) and start mimird in the foreground with its
# embedded defaults. Stop it with Ctrl-C.
run: $(VENV)/.installed
	$(BIN)/mimird

# Install everything (Python packages and the Debian packages the tests need),
# then run the whole test suite.
test: $(VENV)/.installed-test system-deps
	$(BIN)/pytest -q $(XDIST) -m "not agents" $(PYTEST_ARGS)

# The same suite without the slow tier (tests that start several real daemons or take
# over ~2 s: see the slow marker in pyproject.toml).
test-fast: $(VENV)/.installed-test
	$(BIN)/pytest -q $(XDIST) -m "not slow and not agents" $(PYTEST_ARGS)

# Real ACP agents from npm, pinned in .ci/agents (opencode, claude-agent-acp, codex-acp, gemini-cli:
# ~1.1 GB, once).
.PHONY: install-agents test-agents
install-agents:
	@bash .ci/install-agents

# The agents tier: real agents (opencode, Claude Code, Codex, Gemini CLI) driven over ACP against a fake LLM
# server (Codex's sandbox needs bubblewrap: make system-deps, which make test runs).
test-agents: $(VENV)/.installed-test install-agents
	$(BIN)/pytest -q -m agents tests/real_agents $(PYTEST_ARGS)

# Mutation testing (mutmut 2) of the journal, snapshot/removal, audit, secret masking and
# the socket's peer check (.ci/mutmut_config.py, docs/mutation.md). One coverage run, then
# each mutant against only its module's tests that ran its line, through a fork server, two
# at once. Prints killed/survived/timeout per module and the survivors. MODULES=path ... for
# a subset. ~720 mutants. Not yet under 30 min: full runs on this shared 2-core machine at
# nice 19 (load 2-4) tested 9.5-13.6 s a mutant: 1.5-2.5 h at that load, ~30-40
# min idle (docs/mutation.md). Later runs re-test only changed lines (all if tests change).
mutate: $(VENV)/.installed-mutate
	$(PY) .ci/mutate $(MODULES)

$(VENV)/.installed-mutate: pyproject.toml $(VENV)/.installed-test
	$(PIP) install $(EDITABLE) -e '.[encryption,test,dev,mutate]'
	@touch $@

check: lint typecheck

lint: $(VENV)/.installed-test
	$(BIN)/ruff check mimird mimirctl tests bench
	$(BIN)/ruff format --check mimird mimirctl tests bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(PY) bench/rpc.py

bench-sessions: $(VENV)/.installed-test
	$(PY) bench/sessions.py

bench-search: $(VENV)/.installed-test
	$(PY) bench/search.py

bench-stream: $(VENV)/.installed-test
	$(PY) bench/stream.py

bench-memory: $(VENV)/.installed-test
	$(PY) bench/memory.py

bench-runs: $(VENV)/.installed-test
	$(PY) bench/runs.py

# Regenerate docs/openrpc.json from a real daemon's rpc.discover (after adding or changing
# a method; tests/daemon/test_openrpc_doc.py fails until it is regenerated).
.PHONY: openrpc
openrpc: $(VENV)/.installed-test
	$(PY) .ci/openrpc

# Write the user units with this checkout's mimird in ExecStart, then enable the socket.
UNIT_DIR ?= $(HOME)/.config/systemd/user
install-systemd: $(VENV)/.installed
	mkdir -p $(UNIT_DIR)
	sed 's|^ExecStart=%h/.local/bin/mimird|ExecStart=$(abspath $(BIN))/mimird|' systemd/mimird.service > $(UNIT_DIR)/mimird.service
	cp systemd/mimird.socket $(UNIT_DIR)/mimird.socket
	systemctl --user daemon-reload
	systemctl --user enable --now mimird.socket

# A new Alembic revision from the difference between schema.py and the newest migration.
migration: $(VENV)/.installed-test
	$(PY) -m mimird.store.new_revision "$(MSG)"

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install $(EDITABLE) -e '.[encryption]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install $(EDITABLE) -e '.[encryption,test,dev]'
	@touch $@ $(VENV)/.installed

# Debian packages the tests need: systemd-socket-activate (package systemd).
system-deps:
	@bash .ci/install-system-deps

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
