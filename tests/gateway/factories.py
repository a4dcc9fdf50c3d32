"""Gateway configuration for the management tests (API, pages, admin, models): Acme's
connections and routes, Bravo's connection, a second Acme project. Functions, not a conftest,
so these files do not depend on the proxy tests' fixtures (tests/gateway/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import ApiToken, Organization, Project, Role
from benchmarks.models import ProviderKind
from gateway.models import Connection, RateLimit, Route, UpstreamSpec
from tests.conftest import Personas

SECRET = "sk-acme-live-7Qx9SECRETvalue"  # noqa: S105  (test data)
OTHER_SECRET = "sk-bravo-live-2Lm4OTHERvalue"  # noqa: S105


def make_connection(organization: Organization, name: str = "OpenAI", *, key: str = SECRET,
                    kind: str = ProviderKind.OPENAI_COMPATIBLE, base_url: str = "https://api.openai.com/v1",
                    provider: str = "openai", enabled: bool = True) -> Connection:
    connection = Connection(
        organization=organization, name=name, kind=kind, provider=provider, base_url=base_url, is_enabled=enabled,
    )
    connection.api_key = key
    connection.save()
    return connection


def make_route(project: Project, name: str, upstreams: list[tuple[Connection, str, int]],
               strategy: str = Route.Strategy.ORDERED, enabled: bool = True) -> Route:
    route = Route.objects.create(project=project, name=name, strategy=strategy, is_enabled=enabled)
    route.replace_upstreams([UpstreamSpec(connection, model, weight) for connection, model, weight in upstreams])
    return route


@dataclass
class GatewayWorld:
    personas: Personas
    staging: Project  # Acme's second project
    connection: Connection  # Acme's, with SECRET
    anthropic: Connection  # Acme's native Anthropic connection
    route: Route  # Acme / Production "fast-chat": connection/gpt-4o-mini, connection/gpt-4o
    limit: RateLimit  # Acme / Production, project-wide
    token: ApiToken  # an Acme / Production token (for per-token limits)
    other_connection: Connection  # Bravo's, with OTHER_SECRET
    other_route: Route  # Bravo's

    def ids(self) -> dict[str, str]:
        p = self.personas
        return {
            "org": str(p.org.uuid), "project": str(p.project.uuid), "staging": str(self.staging.uuid),
            "connection": str(self.connection.uuid), "anthropic": str(self.anthropic.uuid),
            "route": str(self.route.uuid), "limit": str(self.limit.uuid), "token": str(self.token.uuid),
            "other_org": str(p.other_org.uuid), "other_project": str(p.other_project.uuid),
            "other_connection": str(self.other_connection.uuid), "other_route": str(self.other_route.uuid),
        }

    def fill(self, value: object) -> object:
        """A body or URL with "{route}" and the like replaced by the objects' uuids."""
        if isinstance(value, str):
            return value.format(**self.ids())
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value


def build_world(personas: Personas) -> GatewayWorld:
    staging = Project.objects.create(organization=personas.org, name="Staging")
    connection = make_connection(personas.org)
    anthropic = make_connection(
        personas.org, "Anthropic", kind=ProviderKind.ANTHROPIC, base_url="https://api.anthropic.com",
        provider="anthropic",
    )
    route = make_route(personas.project, "fast-chat", [(connection, "gpt-4o-mini", 1), (connection, "gpt-4o", 3)],
                       strategy=Route.Strategy.FASTEST)
    limit = RateLimit.objects.create(project=personas.project, requests_per_minute=60)
    token, _raw = ApiToken.issue(project=personas.project, name="Backend", scopes=["read"], by=personas.owner)
    other_connection = make_connection(personas.other_org, "Bravo OpenAI", key=OTHER_SECRET)
    other_route = make_route(personas.other_project, "bravo-chat", [(other_connection, "gpt-4o-mini", 1)])
    return GatewayWorld(
        personas=personas, staging=staging, connection=connection, anthropic=anthropic, route=route, limit=limit,
        token=token, other_connection=other_connection, other_route=other_route,
    )


def leaks_a_key(text: str, *connections: Connection) -> list[str]:
    """The secrets (raw or as stored) of `connections` found in `text`."""
    found = []
    for connection in connections:
        stored = Connection.objects.get(pk=connection.pk).api_key
        for value in (stored.reveal(), str(stored)):
            if value and value in text:
                found.append(value[:12] + "…")
    return found


def member_of_both(personas: Personas):
    """Acme's member who is also a member of Bravo (to name Bravo's objects legitimately)."""
    personas.other_org.add_member(personas.member, Role.MEMBER)
    return personas.member
