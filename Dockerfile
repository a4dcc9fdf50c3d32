# syntax=docker/dockerfile:1
# Pulse production image: web (gunicorn), Celery worker and beat, the gateway (uvicorn) and its
# call-stream consumer all run from it.
#
#   docker build -t pulse .
#   docker run --env-file prod.env -p 8000:8000 pulse                    # web
#   docker run --env-file prod.env pulse celery -A config worker         # worker
#   docker run --env-file prod.env pulse celery -A config beat           # beat (exactly one)
#   docker run --env-file prod.env -p 8001:8001 pulse \
#       python manage.py run_gateway --host 0.0.0.0 --port 8001 --workers 2      # gateway
#   docker run --env-file prod.env pulse python manage.py gateway_consumer        # its consumer
#
# Runtime configuration is environment only (see README.md, "Configuration"). The image holds no
# secret: the keys used while collecting static files are throwaway values made inside one RUN.

# ---------------------------------------------------------------------------------------------
# Build stage: a virtual environment with Pulse and its pinned dependencies.
# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler, only in this stage, for any dependency without a wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first (read from pyproject.toml) so code changes do not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --upgrade pip \
    && pip install -r /tmp/requirements.txt

# Then the project itself.
COPY . .
RUN pip install --no-deps .

# ---------------------------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PULSE_ENV=production \
    WEB_CONCURRENCY=3

RUN groupadd --system --gid 10001 pulse \
    && useradd --system --uid 10001 --gid pulse --home-dir /app --no-create-home --shell /usr/sbin/nologin pulse

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code and static files stay owned by root (read-only to the app); only var/ is writable.
COPY . .
RUN mkdir -p /app/var && chown pulse:pulse /app/var

# Static files are collected and compressed at build time. COMPRESS_OFFLINE is on in
# production, so every {% compress %} block must be in CACHE/manifest.json now; django-compressor
# can report "Compressed 0 block(s)" and exit 0 when rendering fails in its worker threads, so
# the last line refuses an empty manifest. The keys and URLs below exist only for these commands
# (nothing connects to them).
RUN export PULSE_ENV=production DEBUG=false \
        DATABASE_URL=postgres://build@db.invalid/build REDIS_URL=redis://redis.invalid:6379/0 \
        SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
        CREDENTIALS_ENCRYPTION_KEY="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    && python manage.py collectstatic --noinput \
    && python manage.py compress --force \
    && python -c "import json, sys; m = json.load(open('staticfiles/CACHE/manifest.json')); sys.exit(0 if m else 'compress wrote no blocks')"

USER pulse:pulse
# 8000: web (gunicorn); 8001: the gateway (uvicorn, when the command runs it).
EXPOSE 8000 8001

# /health checks the database, Redis and the broker. Host is the first ALLOWED_HOSTS entry so
# Django accepts the request; X-Forwarded-Proto keeps SECURE_SSL_REDIRECT from redirecting it.
# worker and beat containers override or disable this (see docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; h = (os.environ.get('ALLOWED_HOSTS') or 'localhost').split(',')[0].strip().lstrip('.'); h = 'localhost' if h in ('', '*') else h; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/health', headers={'Host': h, 'X-Forwarded-Proto': 'https'}), timeout=8)"

# Workers: WEB_CONCURRENCY (gunicorn reads it); extra flags: GUNICORN_CMD_ARGS.
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "--worker-tmp-dir", "/dev/shm"]
