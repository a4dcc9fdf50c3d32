"""The gateway's demo for `make run`, on top of `seed_demo` and `seed_benchmark_demo`: the
simulated provider as the demo organization's connections (OpenAI-compatible and Anthropic),
routes for a few simulated models (an alias `fast-chat` over two upstreams, fastest first; a
fallback route; an Anthropic route for /v1/messages), the cache and body logging on, a project
limit, and a gateway-scoped token whose raw value is printed. Idempotent: running it again
updates the same rows, and issues a fresh token (revoking the previous one), as seed_demo does:
raw tokens are never stored, so a new run cannot print the old one."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.management.commands.seed_demo import DEMO_EMAIL, DEMO_ORGANIZATION, DEMO_PROJECT
from accounts.models import ApiToken, Organization, Project, User
from benchmarks.models import ProviderKind
from benchmarks.simulator import base_url_for
from gateway.models import Connection, GatewaySettings, RateLimit, Route, UpstreamSpec

DEMO_TOKEN_NAME = "Gateway demo token"  # noqa: S105  (a label, not a secret)
SIMULATED_KEY = "sk-simulated-demo"  # the simulator takes any key but its one "bad-key"
# (name, kind, provider calls are priced under: seed_benchmark_demo's catalog providers)
CONNECTIONS = [
    ("Simulator", ProviderKind.OPENAI_COMPATIBLE, "Simulated OpenAI-compatible"),
    ("Simulator (Anthropic)", ProviderKind.ANTHROPIC, "Simulated Anthropic"),
]
# (route name, strategy, [(connection name, upstream model, weight)])
ROUTES = [
    ("fast-chat", Route.Strategy.FASTEST, [("Simulator", "sim-fast", 1), ("Simulator", "sim-medium", 1)]),
    ("sim-fast", Route.Strategy.ORDERED, [("Simulator", "sim-fast", 1)]),
    ("sim-medium", Route.Strategy.ORDERED, [("Simulator", "sim-medium", 1)]),
    # Every third call to sim-flaky fails with 503: the gateway falls back to sim-fast.
    ("sim-flaky", Route.Strategy.ORDERED, [("Simulator", "sim-flaky", 1), ("Simulator", "sim-fast", 1)]),
    ("sim-embed", Route.Strategy.ORDERED, [("Simulator", "sim-embed", 1)]),
    # For /v1/messages (the Anthropic SDK, Claude Code).
    ("sim-slow", Route.Strategy.ORDERED, [("Simulator (Anthropic)", "sim-slow", 1)]),
]
PROJECT_LIMITS = {"requests_per_minute": 600, "tokens_per_minute": 1_000_000}


class Command(BaseCommand):
    help = "Point the demo project's gateway at the simulated provider; prints a fresh gateway token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PULSE_SIMULATOR_PORT", "8765")),
                            help="The simulated provider's port (PULSE_SIMULATOR_PORT, default 8765).")
        parser.add_argument("--host", default="127.0.0.1", help="The simulated provider's host.")

    def handle(self, *args: object, port: int, host: str, **options: object) -> None:
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            raise CommandError("Run seed_demo first.")
        organization = Organization.objects.visible_to(user).get(name=DEMO_ORGANIZATION)
        project = Project.objects.get(organization=organization, name=DEMO_PROJECT)
        root = f"http://{host}:{port}"
        with transaction.atomic():
            self._allow_the_simulator(organization)
            connections = self._connections(organization, user, root)
            routes = self._routes(project, connections)
            self._settings_and_limits(project)
            raw = self._token(project, user)
        base = settings.GATEWAY_PUBLIC_URL
        self.stdout.write(self.style.SUCCESS("\n".join([
            "",
            f"Pulse gateway demo is ready (upstream: the simulated provider on {root}).",
            f"  Gateway:   {base}   (started by make run on port {settings.PULSE_GATEWAY_PORT})",
            f"  Routes:    {', '.join(route.name for route in routes)}",
            f"  Token:     {raw}   (gateway scope)",
            f"  Try:       curl {base}/chat/completions -H 'Authorization: Bearer {raw}' "
            "-H 'Content-Type: application/json' "
            "-d '{\"model\": \"fast-chat\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'",
            "",
        ])))

    def _allow_the_simulator(self, organization: Organization) -> None:
        # The simulator listens on a loopback (or, in containers, private) address, which
        # tenants' URLs may not reach unless an operator allows it for the organization: this
        # command is that operator for the demo organization.
        if not organization.allow_private_egress:
            organization.allow_private_egress = True
            organization.save(update_fields=["allow_private_egress"])

    def _connections(self, organization: Organization, user: User, root: str) -> dict[str, Connection]:
        connections = {}
        for name, kind, provider in CONNECTIONS:
            connection = Connection.objects.filter(organization=organization, name=name).first() or Connection(
                organization=organization, name=name, created_by=user,
            )
            connection.kind, connection.provider = kind, provider
            connection.base_url, connection.is_enabled = base_url_for(root, kind), True
            connection.api_key = SIMULATED_KEY  # the field encrypts it
            connection.full_clean()
            connection.save()
            connections[name] = connection
        return connections

    def _routes(self, project: Project, connections: dict[str, Connection]) -> list[Route]:
        routes = []
        for name, strategy, upstreams in ROUTES:
            route, _ = Route.objects.update_or_create(
                project=project, name=name, defaults={"strategy": strategy, "is_enabled": True},
            )
            specs = [UpstreamSpec(connections[connection], model, weight) for connection, model, weight in upstreams]
            route.check_upstreams(specs)
            current = [(u.connection_id, u.model, u.weight) for u in route.upstreams.order_by("position", "id")]
            if current != [(spec.connection.pk, spec.model, spec.weight) for spec in specs]:
                route.replace_upstreams(specs)
            routes.append(route)
        return routes

    def _settings_and_limits(self, project: Project) -> None:
        GatewaySettings.objects.update_or_create(
            project=project, defaults={"cache_enabled": True, "cache_ttl_seconds": 3600, "store_bodies": True},
        )
        RateLimit.objects.update_or_create(project=project, api_token=None, defaults=PROJECT_LIMITS)

    def _token(self, project: Project, user: User) -> str:
        # Raw tokens are never stored, so a fresh one is issued (and the old one revoked) each time.
        for old in ApiToken.objects.visible_to(user).active().filter(project=project, name=DEMO_TOKEN_NAME):
            old.revoke(by=user)
        _, raw = ApiToken.issue(project=project, name=DEMO_TOKEN_NAME, scopes=[ApiToken.Scope.GATEWAY], by=user)
        return raw
