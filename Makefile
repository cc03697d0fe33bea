# Signet: the two commands a fresh machine needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# One pytest worker per core (pytest-xdist; each has its own test database) and the ten
# slowest tests at the end. `make test PYTEST_ARGS=...` replaces both.
PYTEST_ARGS ?= -n auto --durations=10

.PHONY: run serve test lint check hooks lock migrate system-packages test-system-packages verifiers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Installs come from the lock files (exact versions, every file's hash checked); the
# project itself is installed on top without resolving anything again.
$(VENV)/.installed-run: pyproject.toml requirements/run.txt | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r requirements/run.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@ $(VENV)/.installed-run

## make lock: re-resolve requirements/*.txt from pyproject.toml (pinned, with hashes)
lock: | $(BIN)/python
	$(BIN)/pip install -q 'uv==0.13.9'
	$(BIN)/uv pip compile -q --upgrade --generate-hashes --python-version 3.11 \
		--extra postgres -o requirements/run.txt pyproject.toml
	$(BIN)/uv pip compile -q --upgrade --generate-hashes --python-version 3.11 \
		--extra dev -o requirements/dev.txt pyproject.toml

system-packages:
	@scripts/system-packages

test-system-packages:
	@scripts/system-packages --tests

# skopeo and cosign from Debian trixie, unpacked under .local/verifiers (nothing system-wide):
# the independent verifiers the end-to-end signing tests run.
verifiers:
	@scripts/install-verifiers

## make run: install, migrate, create the admin and demo data, serve on 127.0.0.1:8000
## (with a Celery worker and beat when Redis answers on 127.0.0.1:6379)
run: $(VENV)/.installed-run
	@scripts/system-packages || echo "Continuing without them (no registry: no demo push; no Redis: signing stays in-process)."
	@scripts/dev-run

## make serve: production: collectstatic, then gunicorn (config/gunicorn.py; SIGNET_WEB_* variables)
serve: $(VENV)/.installed-run
	@PYTHON=$(BIN)/python scripts/serve

## make test: install the dev extras and run the whole test suite
test: $(VENV)/.installed-dev test-system-packages verifiers
	$(BIN)/pytest $(PYTEST_ARGS)

## make lint: ruff and the import layers (the contracts in pyproject.toml)
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## make check: the static checks of CI and of the pre-commit hooks (lint, format, types, layers)
check: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

## make hooks: run those checks before every commit (git pre-commit hook)
hooks: $(VENV)/.installed-dev
	$(BIN)/pre-commit install

clean:
	rm -rf $(VENV) .local db.sqlite3 db.sqlite3-wal db.sqlite3-shm .env
