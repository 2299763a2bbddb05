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

.PHONY: install up test lint bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/agenttrace up

# One broker for the whole run, started by the project's stack launcher and stopped whatever happens.
test: install
	@export AGENTTRACE_HOME=$(TEST_HOME) AGENTTRACE_KAFKA_PORT=$(TEST_KAFKA_PORT) \
	  AGENTTRACE_KAFKA_CONTROLLER_PORT=$$(( $(TEST_KAFKA_PORT) + 1 )) \
	  AGENTTRACE_KAFKA_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT); \
	trap '$(BIN)/agenttrace stack down; rm -rf "$$AGENTTRACE_HOME"' EXIT; \
	$(BIN)/agenttrace stack up && $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .pytest_cache
