# immune: `make run` serves the console and API, `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000

LOAD_STAMP := $(VENV)/.installed-load

.PHONY: run test lint worker beat demo clean load

$(STAMP): requirements/base.txt requirements/prod.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_local_admin
	$(BIN)/python manage.py demo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

worker: $(STAMP)
	$(BIN)/celery -A immune worker -l info

beat: $(STAMP)
	$(BIN)/celery -A immune beat -l info

# The production server (uvicorn, requirements/prod.txt) beside the dev tools (Locust).
$(LOAD_STAMP): $(STAMP) requirements/prod.txt
	$(BIN)/python -m pip install --quiet -r requirements/prod.txt
	touch $(LOAD_STAMP)

# Production stack on loopback, seeded, under Locust (docs/performance.md, "Load testing").
# Knobs: STRESS=1, LOAD_USERS, LOAD_DURATION, LOAD_CLASSES, LOAD_WAIT, LOAD_SPAWN_RATE, ...
load: $(LOAD_STAMP)
	STRESS="$(STRESS)" $(BIN)/python loadtests/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
