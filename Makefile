# Pulse: two commands do everything on a fresh machine.
#   make run   - install, migrate, seed demo data, start web + Celery worker + beat + the gateway
#                and its consumer + the simulated provider (Ctrl-C stops all)
#   make test  - install dev dependencies, make sure PostgreSQL and Redis are up, run the whole suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PULSE_PORT ?= 8000
PULSE_GATEWAY_PORT ?= 8001
export PULSE_PORT PULSE_GATEWAY_PORT

.PHONY: run test install install-dev services lint migrations-check deploy-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml sdk/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]" -e ./sdk
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py seed_costs_demo
	$(BIN)/python manage.py seed_benchmark_demo
	$(BIN)/python manage.py seed_alerts_demo
	$(BIN)/python manage.py seed_gateway_demo
	@echo "Pulse is starting on http://127.0.0.1:$(PULSE_PORT)/ (web, worker, beat, simulator; Ctrl-C stops all)"
	@echo "The gateway (OpenAI-compatible, base_url) is http://127.0.0.1:$(PULSE_GATEWAY_PORT)/v1"
	$(BIN)/honcho start -f Procfile.dev

services:
	@.ci/ensure-services

test: install-dev services
	PULSE_ENV=test $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .

migrations-check: install-dev
	PULSE_ENV=development $(BIN)/python manage.py makemigrations --check --dry-run

# `check --deploy` with production-like settings must report nothing.
deploy-check: install-dev
	PULSE_ENV=production DEBUG=false SECRET_KEY="$$(openssl rand -hex 40)" \
	CREDENTIALS_ENCRYPTION_KEY="$$($(BIN)/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
	ALLOWED_HOSTS=pulse.example.com DATABASE_URL=postgres://pulse@db.invalid/pulse REDIS_URL=redis://redis.invalid:6379/0 \
	$(BIN)/python manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) var staticfiles
