"""`manage.py seed_gateway_demo`: the demo project's gateway points at the simulated provider
(which answers every upstream it names), with an alias over two upstreams, an Anthropic route,
the cache on and a fresh gateway-scoped token printed; running it again changes nothing else."""

from __future__ import annotations

import re
from io import StringIO

import httpx
import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiToken, Project
from benchmarks.models import Price, ProviderKind
from benchmarks.simulator import SimulatedProvider
from gateway.models import Connection, GatewaySettings, RateLimit, Route, RouteUpstream

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def simulator():
    with SimulatedProvider() as provider:
        yield provider


def seed(port: int) -> str:
    out = StringIO()
    call_command("seed_gateway_demo", "--port", str(port), stdout=out)
    return out.getvalue()


def printed_token(output: str) -> str:
    return re.search(r"Token:\s+(pk_live_\S+)", output).group(1)


def test_it_needs_the_demo_account():
    with pytest.raises(CommandError, match="seed_demo"):
        seed(8765)


def test_the_demo_gateway_points_at_the_simulator_with_a_printed_token(simulator):
    port = int(simulator.base_url.rsplit(":", 1)[1])
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_benchmark_demo", "--no-runs", "--port", str(port), stdout=StringIO())

    output = seed(port)

    project = Project.objects.get(organization__name="Demo Inc.", name="Production")
    raw = printed_token(output)
    token = ApiToken.authenticate(raw)
    assert token.project == project and token.scopes == ["gateway"] and token.name == "Gateway demo token"
    assert "http://127.0.0.1:8001/v1" in output and f"Bearer {raw}" in output
    assert project.organization.allows_private_egress  # the simulator is on a loopback address

    fast_chat = Route.objects.get(project=project, name="fast-chat")
    assert fast_chat.strategy == Route.Strategy.FASTEST
    assert [u.label for u in fast_chat.upstreams.order_by("position")] == ["Simulator/sim-fast", "Simulator/sim-medium"]
    anthropic = Route.objects.get(project=project, name="sim-slow").upstreams.get().connection
    assert anthropic.kind == ProviderKind.ANTHROPIC and anthropic.base_url == simulator.base_url_for("anthropic")
    settings = GatewaySettings.objects.get(project=project)
    assert settings.cache_enabled and settings.store_bodies
    assert RateLimit.objects.get(project=project, api_token=None).requests_per_minute == 600

    # Calls are priced under the catalog the benchmark demo registered.
    for model in ("sim-fast", "sim-medium"):
        assert Price.objects.filter(model__name=model, model__provider__name__iexact="Simulated OpenAI-compatible").exists()
    for connection in Connection.objects.filter(organization=project.organization):
        assert connection.api_key.reveal() == "sk-simulated-demo" and connection.api_key != "sk-simulated-demo"
        connection.full_clean()  # the same rules the pages and the API apply

    # Every chat upstream the demo names answers at the simulator, with the stored key.
    for upstream in RouteUpstream.objects.filter(route__project=project).exclude(model="sim-embed").select_related("connection"):
        connection, key = upstream.connection, upstream.connection.api_key.reveal()
        if connection.kind == ProviderKind.ANTHROPIC:
            response = httpx.post(
                f"{connection.base_url}/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                json={"model": upstream.model, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]},
                timeout=30,
            )
        else:
            response = httpx.post(
                f"{connection.base_url}/chat/completions", headers={"Authorization": f"Bearer {key}"},
                json={"model": upstream.model, "messages": [{"role": "user", "content": "Hi"}]}, timeout=30,
            )
        assert response.status_code == 200, (upstream.label, response.text[:200])


def test_running_it_again_changes_nothing_but_the_token(simulator):
    port = int(simulator.base_url.rsplit(":", 1)[1])
    call_command("seed_demo", stdout=StringIO())
    first = printed_token(seed(port))
    counts = [model.objects.count() for model in (Connection, Route, RouteUpstream, GatewaySettings, RateLimit)]
    upstream_ids = sorted(RouteUpstream.objects.values_list("id", flat=True))

    second = printed_token(seed(port))

    assert [model.objects.count() for model in (Connection, Route, RouteUpstream, GatewaySettings, RateLimit)] == counts
    assert sorted(RouteUpstream.objects.values_list("id", flat=True)) == upstream_ids  # not even rewritten
    assert first != second
    assert ApiToken.authenticate(first) is None or not ApiToken.authenticate(first).is_active
    assert ApiToken.authenticate(second).is_active
