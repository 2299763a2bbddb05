# The two commands of the README (`make up`, `make test`) do all set-up on a fresh machine:
# a virtual environment from pyproject.toml pinned by requirements.lock, and the Kafka jars
# through Maven on first use (Java 17+ and Maven must be on the machine).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_HOME ?= $(shell mktemp -d -u /tmp/agenttrace-test.XXXXXX)
TEST_KAFKA_PORT ?= 19092
PYTEST_ARGS ?=

.PHONY: install system-deps up test lint bench clean dashboards

# Debian packages the tests drive for real: promtool (rule checks) and headless Chromium (overview page).
# Security updates replace chromium builds, so an exact pin falls back to the archive's current one.
CHROMIUM_VERSION := 156.0.8078.79-1~deb12u1
PROMETHEUS_VERSION := 2.42.0+ds-5+deb12u1
system-deps:
	@if ! command -v promtool >/dev/null || ! command -v chromium >/dev/null; then \
	  command -v apt-get >/dev/null || { echo "need promtool and chromium (Debian packages prometheus, chromium)"; exit 1; }; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null; \
	  apt-get install -y -q --no-install-recommends prometheus=$(PROMETHEUS_VERSION) chromium=$(CHROMIUM_VERSION) >/dev/null \
	    || apt-get install -y -q --no-install-recommends prometheus=$(PROMETHEUS_VERSION) chromium >/dev/null; \
	fi

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/agenttrace up

# One broker for the whole run, started by the project's stack launcher and stopped whatever happens.
test: install system-deps
	@export AGENTTRACE_HOME=$(TEST_HOME) AGENTTRACE_KAFKA_PORT=$(TEST_KAFKA_PORT) \
	  AGENTTRACE_KAFKA_CONTROLLER_PORT=$$(( $(TEST_KAFKA_PORT) + 1 )) \
	  AGENTTRACE_KAFKA_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT); \
	trap '$(BIN)/agenttrace stack down; rm -rf "$$AGENTTRACE_HOME"' EXIT; \
	$(BIN)/agenttrace stack up && $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# Regenerate the Grafana JSON and alert rules from dashboards/*.py (commit the result; tests compare).
dashboards: install
	$(BIN)/python -m dashboards.build

bench: install
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .pytest_cache
