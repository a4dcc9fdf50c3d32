"""Fixtures for the gateway's tests: the simulated provider, a live gateway process serving the test
database, a ready-made world (organization, project, gateway token, connections to the simulator,
routes, prices) and the official OpenAI and Anthropic clients pointed at the gateway.

    def test_chat(gateway_world, openai_client):
        answer = openai_client.chat.completions.create(model="gpt-4o-mini", messages=[...])

The gateway runs as a real uvicorn process (`config.asgi:application`, the same entry point as in
production) against the test database and the test Redis, so tests that use it need committed
data: `gateway_world` asks for `transactional_db`. The process is shared by the session; it
reads its configuration through Redis with no in-process copy (GATEWAY_STATE_LOCAL_TTL_S=0), so
a change a test makes (a revoked token, a new route) is seen by the very next request.
`start_gateway(**settings)` starts another one with other settings (a short breaker cool-down,
a small retry budget…). Every key under GATEWAY_KEY_PREFIX is deleted before each test by
`_fresh_cache` in tests/conftest.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import ApiToken, Organization, Project, Role
from benchmarks.models import Model, Price, Provider
from benchmarks.simulator import DEFAULT_PROFILES, SimulatedProvider
from gateway.models import Connection, GatewaySettings, Route, RouteUpstream
from tests.conftest import PROJECT_ROOT, Personas, database_url_of_test_database

SIM_KEY = "sk-sim"  # any key but the simulator's "bad-key" is accepted
SIM_PROVIDER = "pulse-sim"  # what calls through the simulator are priced and recorded under
# USD per million tokens (input, output), so budgets and the cheapest strategy have prices.
SIM_PRICES: dict[str, tuple[str, str]] = {
    "sim-fast": ("1.00", "2.00"),
    "sim-medium": ("0.50", "1.50"),
    "sim-slow": ("0.10", "0.40"),
    "sim-embed": ("0.02", "0"),
}
READY_TIMEOUT_S = 60.0


# -- the simulated provider ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as sim:
        yield sim


@pytest.fixture
def simulator(simulator_server: SimulatedProvider) -> Iterator[SimulatedProvider]:
    """The session's simulator with its default profiles, empty request log and fresh fault
    counters; profiles a test sets with `set_profile` are undone afterwards."""
    simulator_server.reset(DEFAULT_PROFILES)
    yield simulator_server
    simulator_server.reset(DEFAULT_PROFILES)


# -- the live gateway ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """`uvicorn config.asgi:application` in a subprocess, against the test database and Redis.
    Its output goes to a file (a pipe nobody reads would block it once full) shown on failure."""

    def __init__(self, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PULSE_ENV": "test",
            "DATABASE_URL": database_url_of_test_database(),
            "REDIS_URL": settings.REDIS_URL,
            "GATEWAY_REDIS_URL": settings.GATEWAY_REDIS_URL,
            "GATEWAY_KEY_PREFIX": settings.GATEWAY_KEY_PREFIX,
            "GATEWAY_CALL_STREAM": settings.GATEWAY_CALL_STREAM,
            "GATEWAY_STATE_LOCAL_TTL_S": "0",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> GatewayProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
             "--port", str(self.port), "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
             "--no-access-log", "--log-level", "warning"],
            cwd=PROJECT_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The gateway exited with {self.process.returncode}:\n{self.output()}")
            try:
                httpx.get(f"{self.base_url}/v1/", timeout=1.0)  # any answer: it serves
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"The gateway did not answer within {READY_TIMEOUT_S:g} s:\n{self.output()}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no lifespan shutdown, nothing flushed."""
        if self.alive:
            self.process.kill()
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self._log.close()


@pytest.fixture(scope="session")
def gateway_server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    server = GatewayProcess(tmp_path_factory.mktemp("gateway") / "gateway.log").start()
    yield server
    server.stop()


@pytest.fixture
def gateway(gateway_server: GatewayProcess) -> GatewayProcess:
    """The session's gateway process (restarted if an earlier test killed it)."""
    if not gateway_server.alive:
        gateway_server.stop()
        gateway_server.start()
    return gateway_server


@pytest.fixture
def start_gateway(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory):
    """start_gateway(GATEWAY_BREAKER_COOLDOWN_S="0.5", …) -> another GatewayProcess with those
    settings (environment variables); stopped after the test, its log printed on failure."""
    started: list[GatewayProcess] = []

    def _start(**env: str) -> GatewayProcess:
        log = tmp_path_factory.mktemp("gateway") / "gateway.log"
        started.append(GatewayProcess(log, {name: str(value) for name, value in env.items()}).start())
        return started[-1]

    yield _start
    for server in started:
        server.stop()
        print(server.output())  # shown by pytest only when the test fails


# -- a world to call ----------------------------------------------------------------------------


def sim_catalog_prices() -> None:
    """Catalog prices for the simulator's models under SIM_PROVIDER (what the gateway prices
    calls with, and what `cheapest` and hard budgets use)."""
    provider, _ = Provider.objects.get_or_create(
        name=SIM_PROVIDER, defaults={"kind": "openai_compatible", "base_url": "http://127.0.0.1/", "genai_prices_id": SIM_PROVIDER},
    )
    start = timezone.now() - timedelta(days=30)
    for name, (input_mtok, output_mtok) in SIM_PRICES.items():
        model, _ = Model.objects.get_or_create(provider=provider, name=name)
        Price.objects.get_or_create(
            model=model, source=Price.Source.ADMIN, valid_from=start,
            defaults={"input_mtok": Decimal(input_mtok), "output_mtok": Decimal(output_mtok)},
        )


@dataclass
class GatewayWorld:
    """Acme/Production set up for the gateway: a `gateway` token (raw value in `raw_token`), an
    OpenAI-compatible and an Anthropic connection to the simulator, and three routes:

        gpt-4o-mini             -> openai/sim-fast
        text-embedding-3-small  -> openai/sim-embed
        claude-3-5-haiku        -> anthropic/sim-fast    (also serves /v1/messages)
    """

    personas: Personas
    simulator: SimulatedProvider
    gateway: GatewayProcess
    token: ApiToken
    raw_token: str
    openai_connection: Connection
    anthropic_connection: Connection
    routes: dict[str, Route] = field(default_factory=dict)

    @property
    def org(self) -> Organization:
        return self.personas.org

    @property
    def project(self) -> Project:
        return self.personas.project

    @property
    def base_url(self) -> str:
        """What the OpenAI SDK's base_url is set to."""
        return f"{self.gateway.base_url}/v1"

    def connection(self, name: str, kind: str = "openai_compatible", *, organization: Organization | None = None,
                   api_key: str = SIM_KEY, base_url: str | None = None, provider: str = SIM_PROVIDER) -> Connection:
        organization = organization or self.org
        return Connection.objects.create(
            organization=organization, name=name, kind=kind, provider=provider,
            base_url=base_url or self.simulator.base_url_for(kind), api_key=api_key,
        )

    def route(self, name: str, upstreams: Sequence[tuple[Connection, str] | tuple[Connection, str, int]], *,
              strategy: str = Route.Strategy.ORDERED, project: Project | None = None) -> Route:
        """Create (or replace) the route `name`: upstreams as (connection, model[, weight]), in order."""
        project = project or self.project
        Route.objects.filter(project=project, name=name).delete()
        route = Route.objects.create(project=project, name=name, strategy=strategy)
        for position, upstream in enumerate(upstreams):
            connection, model, *weight = upstream
            RouteUpstream.objects.create(route=route, connection=connection, model=model,
                                         weight=weight[0] if weight else 1, position=position)
        if project == self.project:
            self.routes[name] = route
        return route

    def settings(self, **values: object) -> GatewaySettings:
        """Change the project's gateway settings (cache_enabled=True, store_bodies=True…)."""
        gateway_settings = GatewaySettings.of(self.project)
        for name, value in values.items():
            setattr(gateway_settings, name, value)
        gateway_settings.save()
        return gateway_settings

    def issue_token(self, scopes: Sequence[str] = ("gateway",), project: Project | None = None) -> tuple[ApiToken, str]:
        project = project or self.project
        owner = project.organization.memberships.filter(role=Role.OWNER).first().user
        return ApiToken.issue(project=project, name="gateway test", scopes=list(scopes), by=owner)

    def openai(self, api_key: str | None = None, **options: object) -> openai.OpenAI:
        """The official client, no retries of its own (a test sees what the gateway answered)."""
        options = {"max_retries": 0, "timeout": 60.0, **options}
        return openai.OpenAI(base_url=self.base_url, api_key=api_key or self.raw_token, **options)

    def anthropic(self, api_key: str | None = None, **options: object) -> anthropic.Anthropic:
        options = {"max_retries": 0, "timeout": 60.0, **options}
        return anthropic.Anthropic(base_url=self.gateway.base_url, api_key=api_key or self.raw_token, **options)

    def http(self, api_key: str | None = None) -> httpx.Client:
        """A plain HTTP client on the gateway's root, with the token (for what SDKs cannot send)."""
        headers = {"Authorization": f"Bearer {api_key or self.raw_token}"}
        return httpx.Client(base_url=self.gateway.base_url, headers=headers, timeout=60.0)


@pytest.fixture
def gateway_world(transactional_db: None, personas: Personas, simulator: SimulatedProvider,
                  gateway: GatewayProcess) -> GatewayWorld:
    sim_catalog_prices()
    owner = personas.owner
    token, raw = ApiToken.issue(project=personas.project, name="gateway", scopes=["gateway"], by=owner)
    world = GatewayWorld(
        personas=personas, simulator=simulator, gateway=gateway, token=token, raw_token=raw,
        openai_connection=None, anthropic_connection=None,  # type: ignore[arg-type]
    )
    world.openai_connection = world.connection("sim-openai", "openai_compatible")
    world.anthropic_connection = world.connection("sim-anthropic", "anthropic")
    world.route("gpt-4o-mini", [(world.openai_connection, "sim-fast")])
    world.route("text-embedding-3-small", [(world.openai_connection, "sim-embed")])
    world.route("claude-3-5-haiku", [(world.anthropic_connection, "sim-fast")])
    return world


@pytest.fixture
def openai_client(gateway_world: GatewayWorld) -> Iterator[openai.OpenAI]:
    """openai.OpenAI(base_url=<gateway>/v1, api_key=<the world's gateway token>), no retries."""
    with gateway_world.openai() as client:
        yield client


@pytest.fixture
def anthropic_client(gateway_world: GatewayWorld) -> Iterator[anthropic.Anthropic]:
    """anthropic.Anthropic(base_url=<gateway>, api_key=<the world's gateway token>), no retries."""
    with gateway_world.anthropic() as client:
        yield client


# -- what the gateway recorded ------------------------------------------------------------------


@pytest.fixture
def recorded_calls():
    """recorded_calls(count) -> the CallRecords the gateway handed to the call stream, oldest
    first. The gateway records a call before its response ends, so they are there once the
    client has its answer; for a caller that left mid-stream the record follows a moment later,
    so this waits (up to a deadline, never asserting on time) until `count` are there."""
    from gateway import recorder
    from gateway.redis import sync_client

    def _read(count: int = 1, *, deadline_s: float = 15.0) -> list[recorder.CallRecord]:
        client = sync_client()
        deadline = time.monotonic() + deadline_s
        while True:
            entries = client.xrange(settings.GATEWAY_CALL_STREAM)
            if len(entries) >= count or time.monotonic() > deadline:
                return [recorder.decode(fields) for _, fields in entries]
            time.sleep(0.02)

    return _read
