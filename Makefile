# The two commands a new user types: `make run` (the study app on the demo profile) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup setup-dev

$(BIN)/python:
	$(PY) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt

setup-dev: $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm >/dev/null)
	@test -f node_modules/axe-core/axe.min.js || npm ci --no-audit --no-fund  # axe-core, pinned in package-lock.json

run: setup
	$(BIN)/python app.py

test: setup-dev
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=15
