"""Deployment: docker-compose.yml, the Dockerfile, .dockerignore, Procfile.dev, production settings
that refuse to start, and the README's configuration table.

Docker cannot run here, so the files are checked by reading them (PyYAML for compose) and by
running, outside Docker, the same commands and settings they use.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from celery.utils.imports import symbol_by_name
from cryptography.fernet import Fernet
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SETTINGS_FILE = ROOT / "config" / "settings.py"
README = ROOT / "README.md"
PROCFILE = ROOT / "Procfile.dev"

APP_SERVICES = ("migrate", "web", "worker", "beat", "gateway", "gateway-consumer")
LONG_RUNNING_APP_SERVICES = ("web", "worker", "beat", "gateway", "gateway-consumer")
# What a production process needs from its environment: the two secrets (settings refuse to
# start without them), hosts and origins, the shared database and Redis (without them each
# container would get its own SQLite file and a filesystem broker), and a way to send email.
REQUIRED_IN_PRODUCTION = {
    "PULSE_ENV",
    "SECRET_KEY",
    "CREDENTIALS_ENCRYPTION_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SITE_URL",
    "DATABASE_URL",
    "REDIS_URL",
}
SECRETS = ("SECRET_KEY", "CREDENTIALS_ENCRYPTION_KEY")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict:
    return compose()["services"]


def settings_env_vars() -> set[str]:
    """Every variable config/settings.py reads through django-environ (env.str("X"), env.db_url("X")…)."""
    source = SETTINGS_FILE.read_text()
    names = set(re.findall(r"\benv(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", source))
    assert {"SECRET_KEY", "DATABASE_URL", "PULSE_ENV"} <= names, "the settings parser found too little"
    return names


class MissingVariable(Exception):
    pass


_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: object, host: dict[str, str]) -> str:
    """Compose's variable substitution (${X}, ${X:-default}, ${X-default}, ${X:?error}, ${X?error}, $$)."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        unset_or_empty = not host.get(name)
        if op == ":-":
            return arg if unset_or_empty else host[name]
        if op == "-":
            return host.get(name, arg)
        if op == ":?" and unset_or_empty or op == "?" and name not in host:
            raise MissingVariable(f"{name}: {arg}")
        return host.get(name, "")

    return _INTERPOLATION.sub(substitute, str(value))


def service_env(name: str, host: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(value, host) for key, value in services()[name]["environment"].items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def command_words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def fernet_key() -> str:
    return Fernet.generate_key().decode()


def clean_env(**overrides: str | None) -> dict[str, str]:
    """The current environment minus everything Pulse's settings read, plus `overrides`.

    An override of None means "not provided": the variable is removed, or set empty when a local
    .env file exists (settings read it for variables missing from the environment, and treat an
    empty value as not provided).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANYMAIL_")}
    for name in settings_env_vars() | {"DJANGO_SETTINGS_MODULE"}:
        env.pop(name, None)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    for name, value in overrides.items():
        if value is not None:
            env[name] = value
        elif (ROOT / ".env").exists():
            env[name] = ""
    return env


def production_env(**overrides: str | None) -> dict[str, str]:
    values = {
        "PULSE_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CREDENTIALS_ENCRYPTION_KEY": fernet_key(),
        "ALLOWED_HOSTS": "pulse.example.com",
        # A Redis URL keeps the local filesystem broker (and its folders) out of these runs;
        # nothing here connects to it.
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        # Production requires a real database URL; nothing in these runs connects to it.
        "DATABASE_URL": "postgres://pulse@db.invalid:5432/pulse",
    }
    values.update(overrides)
    return clean_env(**values)


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def django_setup(env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_python("import django; django.setup()", env)


# ---------------------------------------------------------------------------------------------
# docker-compose.yml
# ---------------------------------------------------------------------------------------------
def test_compose_has_web_worker_beat_gateway_postgres_redis_and_a_mail_catcher():
    found = services()
    assert set(found) == {
        "migrate", "web", "worker", "beat", "gateway", "gateway-lb", "gateway-consumer", "postgres", "redis", "mailpit",
    }
    assert found["postgres"]["image"].startswith("postgres:16")
    assert found["redis"]["image"].startswith("redis:7")
    assert found["mailpit"]["image"].startswith("axllent/mailpit")
    assert any(str(port).endswith(":8025") for port in found["mailpit"]["ports"]), "the Mailpit UI is published"
    for name in APP_SERVICES:
        assert found[name]["build"] == ".", name
        assert found[name]["image"] == found["web"]["image"], "all Pulse processes run one image"
    # The web server is the only app service with a host port: workers, gateways and consumers
    # scale freely (the gateway's port is published by its load balancer).
    assert "ports" in found["web"]
    assert all(
        "ports" not in found[name] and "container_name" not in found[name]
        for name in ("worker", "beat", "gateway", "gateway-consumer")
    )


def test_postgres_and_redis_keep_their_data_in_named_volumes():
    spec = compose()
    declared = set(spec["volumes"])
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        mounts = dict(volume.split(":", 1) for volume in spec["services"][name]["volumes"])
        source = next(source for source, target in mounts.items() if target == path)
        assert source in declared, f"{name} data should live in a named volume"


def test_healthchecks():
    found = services()
    assert "pg_isready" in " ".join(command_words(found["postgres"]["healthcheck"]["test"]))
    assert command_words(found["redis"]["healthcheck"]["test"])[-2:] == ["redis-cli", "ping"]
    web_check = " ".join(command_words(found["web"]["healthcheck"]["test"]))
    assert "/health" in web_check
    worker_check = " ".join(command_words(found["worker"]["healthcheck"]["test"]))
    assert "-A config inspect ping" in worker_check and "$$HOSTNAME" in worker_check
    # The image's HEALTHCHECK probes HTTP; beat, migrate and the consumer have no server.
    for name in ("beat", "migrate", "gateway-consumer"):
        assert found[name]["healthcheck"] == {"disable": True}, name


def test_app_services_wait_for_healthy_dependencies_and_for_migrations():
    found = services()
    for name in LONG_RUNNING_APP_SERVICES:
        depends = found[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form with conditions"
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
    assert found["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name, service in found.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in found, f"{name} depends on unknown service {dependency}"
            assert rule["condition"] in {"service_healthy", "service_started", "service_completed_successfully"}
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in found[dependency], f"{dependency} needs a healthcheck"


def test_every_app_service_gets_everything_production_requires():
    found = services()
    for name in APP_SERVICES:
        environment = found[name]["environment"]
        missing = REQUIRED_IN_PRODUCTION - set(environment)
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert "EMAIL_URL" in environment or "ANYMAIL_ESP" in environment, f"{name} has no way to send email"
        assert environment["PULSE_ENV"] == "production"
        assert str(environment.get("DEBUG", "false")).lower() in {"false", "0", "off", "no"}
        assert set(environment) <= settings_env_vars() | {"WEB_CONCURRENCY"}, "an unknown variable name"
        # The secrets come from the host; compose stops with a message when one is missing.
        for secret in SECRETS:
            assert str(environment[secret]).startswith(f"${{{secret}:?"), f"{name}: {secret} must use ${{{secret}:?…}}"


def test_urls_point_at_the_bundled_services():
    spec = services()
    postgres = spec["postgres"]["environment"]
    env = service_env("web", {"SECRET_KEY": "s", "CREDENTIALS_ENCRYPTION_KEY": "k"})
    assert env["DATABASE_URL"] == (
        f"postgres://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["EMAIL_URL"] == "smtp://mailpit:1025"
    assert env["SECURE_SSL_REDIRECT"] == "false", "local compose runs over plain http"


def test_compose_refuses_to_start_without_the_secrets():
    with_secrets = {"SECRET_KEY": "s", "CREDENTIALS_ENCRYPTION_KEY": "k"}
    for name in APP_SERVICES:
        assert service_env(name, with_secrets)["SECRET_KEY"] == "s"
        for secret in SECRETS:
            host = {key: value for key, value in with_secrets.items() if key != secret}
            with pytest.raises(MissingVariable, match=secret):
                service_env(name, host)


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_cli_validates_the_file_when_installed(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose CLI on this machine")
    base = {key: value for key, value in os.environ.items() if key not in SECRETS}
    command = [*cli, "-f", str(COMPOSE_FILE), "config", "--quiet"]
    refused = subprocess.run(command, cwd=tmp_path, env=base, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "SECRET_KEY" in refused.stdout + refused.stderr
    accepted = subprocess.run(
        command, cwd=tmp_path, env={**base, "SECRET_KEY": "s", "CREDENTIALS_ENCRYPTION_KEY": fernet_key()},
        capture_output=True, text=True, timeout=60,
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_compose_environment_configures_django_for_the_bundled_services():
    """Settings built from the web service's environment use PostgreSQL, Redis and Mailpit."""
    env = service_env("web", {"SECRET_KEY": secrets.token_urlsafe(50), "CREDENTIALS_ENCRYPTION_KEY": fernet_key()})
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "db = s.DATABASES['default']; "
        "print(json.dumps({'engine': db['ENGINE'], 'host': db['HOST'], 'name': db['NAME'], "
        "'cache': s.CACHES['default']['BACKEND'], 'broker': s.CELERY_BROKER_URL, "
        "'email': [s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT], 'debug': s.DEBUG, "
        "'hosts': s.ALLOWED_HOSTS, 'ssl_redirect': s.SECURE_SSL_REDIRECT, "
        "'scheduler': s.CELERY_BEAT_SCHEDULER, 'compress_offline': s.COMPRESS_OFFLINE}))"
    )
    result = run_python(code, clean_env(**env))
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout.strip().splitlines()[-1])
    assert resolved == {
        "engine": "django.db.backends.postgresql",
        "host": "postgres",
        "name": "pulse",
        "cache": "django.core.cache.backends.redis.RedisCache",
        "broker": "redis://redis:6379/0",
        "email": ["django.core.mail.backends.smtp.EmailBackend", "mailpit", 1025],
        "debug": False,
        "hosts": ["localhost", "127.0.0.1"],
        "ssl_redirect": False,
        "scheduler": "django_celery_beat.schedulers:DatabaseScheduler",
        "compress_offline": True,
    }


def test_commands_reference_modules_that_import():
    found = services()

    web = command_words(found["web"]["command"])
    assert web[0] == "gunicorn"
    module_name, _, attribute = next(word for word in web[1:] if not word.startswith("-")).partition(":")
    assert module_name == "config.wsgi"
    assert callable(getattr(importlib.import_module(module_name), attribute or "application"))

    for name, subcommand in (("worker", "worker"), ("beat", "beat")):
        words = command_words(found[name]["command"])
        assert words[:4] == ["celery", "-A", "config", subcommand], name
    app = find_app("config")  # what `celery -A config` loads
    assert isinstance(app, Celery)
    assert app.main == "pulse"
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    symbol_by_name(app.conf.beat_scheduler)  # the scheduler class imports

    migrate = command_words(found["migrate"]["command"])
    assert migrate[:3] == ["python", "manage.py", "migrate"]
    assert "migrate" in get_commands()

    gateway = command_words(found["gateway"]["command"])
    assert gateway[:3] == ["python", "manage.py", "run_gateway"]
    assert "run_gateway" in get_commands()
    assert callable(importlib.import_module("config.asgi").application)
    workers = gateway[gateway.index("--workers") + 1]
    assert interpolate(workers, {}) == "2" and interpolate(workers, {"GATEWAY_CONCURRENCY": "4"}) == "4"

    consumer = command_words(found["gateway-consumer"]["command"])
    assert consumer[:3] == ["python", "manage.py", "gateway_consumer"]
    assert "gateway_consumer" in get_commands()


def _gateway_port() -> str:
    words = command_words(services()["gateway"]["command"])
    return words[words.index("--port") + 1]


def test_the_gateway_scales_behind_one_load_balanced_port():
    """`docker compose up --scale gateway=3`: replicas have no host port; gateway-lb (HAProxy)
    publishes one and finds every replica through Docker's DNS, streaming unbuffered."""
    spec = compose()
    lb = spec["services"]["gateway-lb"]
    assert lb["image"].startswith("haproxy:")
    (published,) = lb["ports"]
    assert interpolate(published, {}) == "8001:8001"
    assert interpolate(published, {"PULSE_GATEWAY_PORT": "9001"}) == "9001:8001"
    assert lb["depends_on"]["gateway"] == {"condition": "service_healthy"}

    (config,) = lb["configs"]
    assert config["target"] == "/usr/local/etc/haproxy/haproxy.cfg"
    haproxy = spec["configs"][config["source"]]["content"]
    assert re.search(r"^\s*bind :8001$", haproxy, flags=re.MULTILINE)
    template = re.search(r"server-template (\S+) (\d+) gateway:(\d+) (.*)$", haproxy, flags=re.MULTILINE)
    assert template, "the backend finds every replica of the gateway service"
    assert template.group(3) == _gateway_port()
    assert int(template.group(2)) >= 10 and "resolvers docker" in template.group(4)
    assert "nameserver dns 127.0.0.11:53" in haproxy, "Docker's embedded DNS"
    assert "mode http" in haproxy
    assert "option http-no-delay" in haproxy, "SSE chunks must not wait to be bunched"
    # A stream may stay silent as long as the gateway allows before HAProxy cuts it.
    from django.conf import settings

    for name in ("client", "server"):
        seconds = int(re.search(rf"timeout {name} (\d+)s", haproxy).group(1))
        assert seconds > settings.GATEWAY_READ_TIMEOUT_S, name


def test_the_load_balancer_config_is_valid_haproxy_when_installed(tmp_path):
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("no haproxy on this machine")
    config = tmp_path / "haproxy.cfg"
    config.write_text(compose()["configs"]["gateway-haproxy"]["content"])
    result = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_redis_keeps_the_call_stream_across_restarts():
    command = command_words(services()["redis"]["command"])
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_procfile_starts_the_gateway_and_its_consumer():
    processes = dict(
        line.split(":", 1) for line in PROCFILE.read_text().splitlines() if line and not line.startswith("#")
    )
    gateway = shlex.split(processes["gateway"])
    assert gateway[:3] == [".venv/bin/python", "manage.py", "run_gateway"]
    assert gateway[gateway.index("--port") + 1] == "${PULSE_GATEWAY_PORT:-8001}"
    # Without REDIS_URL the gateway's shared state lives in its one process.
    assert not any(word.startswith("--workers") for word in gateway)
    assert shlex.split(processes["gateway-consumer"])[1:] == ["manage.py", "gateway_consumer"]


@pytest.mark.django_db(transaction=True)
def test_the_web_healthcheck_passes_on_a_healthy_server_and_fails_otherwise(live_server):
    compose_probe = command_words(services()["web"]["healthcheck"]["test"])
    assert compose_probe[:3] == ["CMD", "python", "-c"]
    probe = compose_probe[3]
    healthcheck = next(arguments for keyword, arguments in dockerfile_instructions() if keyword == "HEALTHCHECK")
    assert probe in healthcheck, "the Dockerfile and compose should probe /health the same way"

    assert "http://127.0.0.1:8000/health" in probe
    env = clean_env(ALLOWED_HOSTS="pulse.example.com,localhost")
    healthy = run_python(probe.replace("http://127.0.0.1:8000", live_server.url), env)
    assert healthy.returncode == 0, healthy.stderr
    broken = run_python(probe.replace("http://127.0.0.1:8000/health", f"{live_server.url}/no-such-page"), env)
    assert broken.returncode != 0

    # The gateway's container probes the same /health on its own port (config.asgi serves Django too).
    gateway_probe = command_words(services()["gateway"]["healthcheck"]["test"])
    assert gateway_probe[:3] == ["CMD", "python", "-c"]
    assert gateway_probe[3] == probe.replace("127.0.0.1:8000", f"127.0.0.1:{_gateway_port()}")


# ---------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# ---------------------------------------------------------------------------------------------
def test_dockerfile_builds_a_non_root_image_with_a_healthcheck():
    assert DOCKERFILE.exists()
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    bases = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)

    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the image must switch to a non-root user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    last_user = max(index for index, keyword in enumerate(keywords) if keyword == "USER")
    assert last_user < keywords.index("CMD"), "the server must run as the non-root user"

    healthcheck = next(arguments for keyword, arguments in instructions if keyword == "HEALTHCHECK")
    assert "/health" in healthcheck

    cmd = json.loads(next(arguments for keyword, arguments in instructions if keyword == "CMD"))
    assert cmd[:2] == ["gunicorn", "config.wsgi"]
    assert not any(word.startswith(("--workers", "-w")) for word in cmd), "workers come from WEB_CONCURRENCY"


def test_dockerfile_installs_the_project_and_builds_static_files_without_baking_in_secrets():
    instructions = dockerfile_instructions()
    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", run) for run in runs), "pip install ."
    static = next(run for run in runs if "collectstatic" in run)
    assert "manage.py collectstatic --noinput" in static and "manage.py compress --force" in static
    assert "PULSE_ENV=production" in static
    for secret in SECRETS:
        assert f"{secret}=" in static, f"a build-only {secret} is given to the static build step"
    for keyword, arguments in instructions:
        if keyword in {"ENV", "ARG"}:
            assert not any(secret in arguments for secret in SECRETS), "secrets must not be baked into the image"


def test_dockerignore_keeps_local_state_out_and_the_build_inputs_in():
    patterns = {
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "var"} <= patterns
    # pyproject.toml names README.md as the readme: `pip install .` needs both.
    for needed in ("README.md", "pyproject.toml", "manage.py", "templates", "static", "config", "*.md"):
        assert needed not in patterns, needed


def test_static_files_collect_and_compress_offline_as_in_the_docker_build(tmp_path):
    """The Dockerfile's build step: with COMPRESS_OFFLINE on in production, every {% compress %}
    block must be written to CACHE/manifest.json at build time or pages fail at run time."""
    env = production_env(DEBUG="false", STATIC_ROOT=str(tmp_path / "static"))
    for command in (["collectstatic", "--noinput"], ["compress", "--force"]):
        result = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"manage.py {' '.join(command)} failed:\n{result.stderr[-3000:]}"
    manifest = json.loads((tmp_path / "static" / "CACHE" / "manifest.json").read_text())
    assert manifest, "compress wrote no blocks"
    for html in manifest.values():
        for url in re.findall(r"__compressor_url_placeholder__/(CACHE/[^\"]+)", html):
            assert (tmp_path / "static" / url).exists(), url


# ---------------------------------------------------------------------------------------------
# Production settings refuse to start
# ---------------------------------------------------------------------------------------------
def test_production_starts_with_everything_set():
    result = django_setup(production_env())
    assert result.returncode == 0, result.stderr


def test_production_refuses_to_start_without_secret_key():
    result = django_setup(production_env(SECRET_KEY=None))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr


def test_production_refuses_to_start_with_debug_on():
    result = django_setup(production_env(DEBUG="true"))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "DEBUG" in result.stderr


def test_production_refuses_to_start_without_a_credentials_key():
    result = django_setup(production_env(CREDENTIALS_ENCRYPTION_KEY=None))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "CREDENTIALS_ENCRYPTION_KEY is required" in result.stderr


@pytest.mark.parametrize("variable", ["DATABASE_URL", "REDIS_URL"])
def test_production_refuses_to_fall_back_to_local_sqlite_or_the_filesystem_broker(variable):
    result = django_setup(production_env(**{variable: None}))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and f"{variable} is required" in result.stderr


def test_production_refuses_a_credentials_key_that_is_not_a_fernet_key():
    result = django_setup(production_env(CREDENTIALS_ENCRYPTION_KEY="not-a-fernet-key"))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "Fernet" in result.stderr


def test_production_settings_pass_check_deploy(tmp_path):
    env = production_env(DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------
def test_readme_documents_every_environment_variable():
    readme = README.read_text()
    documented = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)", readme, flags=re.MULTILINE))
    missing = (settings_env_vars() | {"PULSE_PORT"}) - documented
    assert not missing, f"README.md's configuration table lacks {sorted(missing)}"
