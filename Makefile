# The two commands a newcomer needs: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test

.PHONY: run test install install-test chromium redis-server bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(TSTAMP): $(STAMP) requirements-test.txt
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

install: $(STAMP)
install-test: $(TSTAMP) chromium redis-server

## Debian's chromium drives the browser tests (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

## Debian's redis-server: the broker of the scale-out tests (`ingest --broker`, `serve --workers`).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing Debian redis-server"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

## Extra serve flags: make run ARGS="--port 5123 --source replay"
run: $(STAMP)
	$(BIN)/quantpanel serve $(ARGS)

## Lint (ruff: style, bugs, import order) and types (mypy: strict on analytics/pipeline), then the suite.
test: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

bench: install-test
	$(BIN)/quantpanel bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
