"""Shared fixtures. The personas follow healthchecks' habit: every feature is checked for an
owner, an admin, a member, a viewer of organization A, and an outsider who owns organization B."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import ApiToken, Organization, Project, Role, User

PASSWORD = "correct horse battery staple"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """allauth's rate limits and DRF's throttles live in Redis; every test starts from zero."""
    assert settings.REDIS_URL, "the tests run against a real Redis"
    # Only this checkout's keys: cache.clear() would FLUSHDB, wiping other runs' keys and the
    # Celery queues that share the Redis database.
    client = cache._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{settings.CACHES['default']['KEY_PREFIX']}:*", count=1000))
    if keys:
        client.delete(*keys)


def make_user(email: str, *, verified: bool = True, **extra: object) -> User:
    user = User.objects.create_user(email=email, password=PASSWORD, **extra)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


def client_as(user: User | None = None) -> Client:
    """A page client signed in as `user` (or anonymous)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@dataclass
class Personas:
    owner: User
    admin: User
    member: User
    viewer: User
    outsider: User
    org: Organization
    project: Project
    other_org: Organization
    other_project: Project

    def user(self, name: str) -> User:
        return getattr(self, name)


@pytest.fixture
def personas(db: None) -> Personas:
    owner = make_user("owner@a.example")
    org = Organization.create_for_owner(owner, name="Acme", project_name="Production")
    admin = make_user("admin@a.example")
    member = make_user("member@a.example")
    viewer = make_user("viewer@a.example")
    org.add_member(admin, Role.ADMIN)
    org.add_member(member, Role.MEMBER)
    org.add_member(viewer, Role.VIEWER)
    outsider = make_user("outsider@b.example")
    other_org = Organization.create_for_owner(outsider, name="Bravo", project_name="Bravo prod")
    return Personas(
        owner=owner, admin=admin, member=member, viewer=viewer, outsider=outsider,
        org=org, project=org.projects.get(), other_org=other_org, other_project=other_org.projects.get(),
    )


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def api_as(personas: Personas):
    """api_as("viewer") -> an APIClient signed in (session) as that persona."""

    def _client(name: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(personas.user(name))
        return client

    return _client


@pytest.fixture
def token_client(personas: Personas):
    """token_client(["read"]) -> (APIClient with a Bearer token for Acme/Production, ApiToken)."""

    def _client(scopes: list[str], project: Project | None = None) -> tuple[APIClient, ApiToken]:
        project = project or personas.project
        owner = project.organization.memberships.filter(role=Role.OWNER).first().user
        token, raw = ApiToken.issue(project=project, name="test token", scopes=scopes, by=owner)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client, token

    return _client


def database_url_of_test_database() -> str:
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """A real `celery worker` process (solo pool) on one queue, against the test database."""

    def __init__(self, queue: str, extra_env: dict[str, str] | None = None) -> None:
        from django.conf import settings as django_settings

        env = {
            **os.environ,
            "PULSE_ENV": "test",
            "DATABASE_URL": database_url_of_test_database(),
            "REDIS_URL": django_settings.REDIS_URL,
            **(extra_env or {}),
        }
        self.queue = queue
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--queues", queue,
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO"],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, the task in hand is neither finished nor acknowledged."""
        self.process.kill()
        self.process.wait(timeout=20)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output or ""


@pytest.fixture
def start_worker():
    """start_worker(queue, extra_env) -> Worker; every worker started is stopped afterwards."""
    started: list[Worker] = []

    def _start(queue: str | None = None, extra_env: dict[str, str] | None = None) -> Worker:
        started.append(Worker(queue or f"test-{uuid.uuid4().hex[:8]}", extra_env))
        return started[-1]

    yield _start
    for process in started:
        print(process.stop()[-4000:])  # shown by pytest only when the test fails


@pytest.fixture
def worker(start_worker) -> str:
    """A worker listening on a queue of its own, so no other worker can take our task."""
    return start_worker().queue


@pytest.fixture
def private_refused():
    """Private, loopback and link-local addresses refused, as in production (lib/egress.py);
    development and the tests allow them by default."""
    with override_settings(TENANT_EGRESS_ALLOW_PRIVATE=False):
        yield
