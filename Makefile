# Two commands on a fresh machine: `make run` and `make test`. Only Python >= 3.11 and make are needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# `make run` is the demo: development tools on (a local mailbox, a notify hook), template settings that
# point the demo's HTTP and GraphQL tasks at this server, and the host policy re-opened for this server's
# own address and port (tasks may not call loopback otherwise). Set any of the variables to override.
run: export STEPWISE_DEV ?= true
run: export STEPWISE_TEMPLATE_SETTINGS ?= {"baseUrl": "http://$(HOST):$(PORT)", "notifyUrl": "http://$(HOST):$(PORT)/dev/notify"}
run: export STEPWISE_HTTP_ALLOW ?= $(HOST):$(PORT)

.PHONY: install install-test run test test-plain test-latest lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

# The stamps re-run an install only when a lock file changes.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: requirements-test.lock $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-test.lock
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-bench: requirements-bench.lock $(VENV)/.installed-test
	$(BIN)/pip install --quiet -r requirements-bench.lock
	touch $@

install-test: $(VENV)/.installed-test

.PHONY: install-bench
install-bench: $(VENV)/.installed-bench

run: install
	$(BIN)/stepwise db upgrade
	$(BIN)/stepwise demo load
	$(BIN)/stepwise serve --host $(HOST) --port $(PORT)

# The browser tests (tests/web/, GraphiQL's) drive Debian's Chromium: installed here when make runs as root on
# Debian; otherwise this says what to install (without it they are skipped, and fail under CI=true).
CHROMIUM := /usr/bin/chromium
.PHONY: browser
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: the browser tests will be skipped (and fail under CI=true)"; \
	  else \
	    echo "the browser tests need Debian's chromium at $(CHROMIUM): run 'sudo apt-get install chromium'" \
	         "(without it they are skipped, and fail under CI=true)"; \
	  fi; \
	fi

test: install-test browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite with every fast path off (engine/fastpaths.py, docs/adr/): the plain path each mechanism replaces
# must stay correct, since it is what an operator falls back to when a library upgrade breaks the mechanism.
PLAIN := STEPWISE_FAST_EXECUTION=false STEPWISE_FAST_DRIVER_WRITES=false \
	STEPWISE_FAST_REMEMBERED_INSTANCES=false STEPWISE_FAST_COUNT_BESIDE=false STEPWISE_FAST_WEBHOOK_CLIENT=false \
	STEPWISE_FAST_REMEMBERED_MEMBERS=false

test-plain: install-test
	$(PLAIN) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The schema and server tests on the newest strawberry-graphql and graphql-core releases the registry offers,
# in a venv of their own (everything else as locked): schema/execution.py and schema/subscriptions.py use both
# beyond their public API, so this says whether raising their pins is safe. `.ci/run` reports the outcome and
# never fails on it (docs/architecture.md, "Development habits").
LATEST := .venv-latest
LATEST_BIN := $(LATEST)/bin

$(LATEST)/.installed: requirements-test.lock
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST_BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(LATEST_BIN)/pip install --quiet -r requirements-test.lock
	touch $@

test-latest: $(LATEST)/.installed
	@rm -f $(LATEST)/versions
	$(LATEST_BIN)/pip install --quiet --upgrade --upgrade-strategy only-if-needed strawberry-graphql graphql-core
	$(LATEST_BIN)/pip install --quiet --no-deps -e .
	@$(LATEST_BIN)/python -c 'from importlib.metadata import version as v; print(*(f"{p}=={v(p)}" for p in ("strawberry-graphql", "graphql-core")))' > $(LATEST)/versions
	@echo "test-latest: testing with $$(cat $(LATEST)/versions)"
	$(LATEST_BIN)/python -m pytest tests/schema tests/server -m "not browser" -p no:cacheprovider $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Benchmarks (bench/): figures and ratios against PostgreSQL, SpiffWorkflow and a bare route; never part of `make test`.
bench: install-bench
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LATEST) stepwise.db files .pytest_cache .mypy_cache .ruff_cache
