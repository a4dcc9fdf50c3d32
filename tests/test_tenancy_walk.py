"""Every URL pattern, walked: nobody outside an organization reaches its data, and a viewer
changes nothing.

The walk reads the URL patterns from `django.urls.get_resolver()` (the API router and the pages
alike), fills each pattern's arguments with the objects of a victim organization (Acme, from the
personas of tests/conftest.py, plus one object of every kind below), and sends GET, POST, PUT,
PATCH and DELETE as:

- the outsider (who owns Bravo), signed in (pages and API) and with an API token of Bravo with
  every scope (API): 404 exactly as for objects that do not exist, or 405 when the method is not
  served at all, also with Acme's object put under Bravo's own organization or project in the
  URL; nothing of Acme changes;
- a viewer of Acme (signed in, and a read-only Acme token on the API): 403 on every write, and
  nothing changes;
- an anonymous caller: the API answers 401; pages redirect to the login page (`login_required`
  runs before anything is looked up, so the redirect says nothing about what exists).

Patterns without arguments are collections (a list, a create, a summary): each is listed in
COLLECTIONS with how it names the victim (`?project=` or a body field), and the outsider's
answer must be the answer for an object that does not exist, with none of Acme's data in it.
Public patterns (leaderboard, health, schema, sign-in pages, the links in emails…), the
caller's own pages and the operators' admin are listed explicitly as such.

A pattern the walk does not know how to fill fails with a message saying what to add, so an
endpoint added later is checked by this file without anyone remembering to.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Invitation, Membership, Organization, Project, Role
from alerts.models import Alert, AlertRule, Budget, Delivery, Webhook
from benchmarks.models import BenchmarkResult, ProviderKind, Run, Target
from costs.ingestion import ingest
from costs.models import CostEvent
from gateway.models import Connection, GatewaySettings, RateLimit, RouteUpstream, UpstreamSpec
from gateway.models import Route as GatewayRoute
from tests.conftest import Personas, client_as

pytestmark = pytest.mark.django_db

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
WRITES = ["POST", "PUT", "PATCH", "DELETE"]


# ---------------------------------------------------------------------------------------------
# The patterns
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    route: str  # e.g. "api/v1/^budgets/(?P<uuid>[^/.]+)$"
    pattern: URLPattern
    prefix: str  # the part contributed by include()s, e.g. "api/v1/"

    @property
    def name(self) -> str:
        return self.pattern.name or self.route

    @property
    def kwargs(self) -> list[str]:
        return list(self.pattern.pattern.regex.groupindex)

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")

    @property
    def view_class(self) -> type | None:
        return getattr(self.pattern.callback, "cls", None)

    def served_methods(self) -> set[str] | None:
        """The methods an API view serves (None for pages: they say so with a 405 themselves)."""
        actions = getattr(self.pattern.callback, "actions", None)
        if actions:
            return {method.upper() for method in actions}
        if self.view_class is not None:
            return {m.upper() for m in METHODS if hasattr(self.view_class, m.lower())}
        return None

    def __str__(self) -> str:
        return self.name


def walk(resolver: URLResolver, prefix: str = "") -> list[Route]:
    routes: list[Route] = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            routes += walk(entry, prefix + str(entry.pattern))
        else:
            routes.append(Route(prefix + str(entry.pattern), entry, prefix))
    return routes


ROUTES = walk(get_resolver())

# Open to anyone (no tenant data), or addressed by an unguessable emailed token that is checked
# on its own (tests/accounts/test_invitations.py, test_signup_and_login.py, tests/alerts/…).
PUBLIC = {
    "health": "liveness probe",
    "api-schema": "the OpenAPI document",
    "api-docs": "Swagger UI for the schema",
    "leaderboard": "the public benchmarks",
    "home": "landing page, or a redirect to the caller's own project",
    "benchmark-provider-list": "the public catalog", "benchmark-provider-detail": "the public catalog",
    "benchmark-model-list": "the public catalog", "benchmark-model-detail": "the public catalog",
    "benchmark-model-prices": "the public catalog",
    "magic_link": "emailed one-click sign-in token", "invitation_accept": "emailed invitation token",
    "alert_unsubscribe": "emailed unsubscribe token",
    **dict.fromkeys(
        [
            "account_login", "account_logout", "account_inactive", "account_signup", "account_reauthenticate",
            "account_email", "account_email_verification_sent", "account_change_password",
            "account_set_password", "account_reset_password", "account_confirm_login_code",
            "account_confirm_email", "account_reset_password_from_key_done",
            "account_reset_password_from_key", "account_reset_password_done", "account_request_login_code",
        ],
        "allauth's sign-in pages (the caller's own account)",
    ),
}
# Only ever about the caller: their settings, their organizations, their alerts inbox.
OWN = {
    "account_settings": "the signed-in person's settings",
    "organization_create": "creates an organization owned by the caller",
    "alerts": "redirects to the caller's own organization's alerts",
    "api-me": "the caller",
    "benchmark-stats": "statistics over the caller's own results (or the public ones)",
}


@dataclass(frozen=True)
class Aim:
    """How a collection endpoint is pointed at the victim: a query string and/or a body, with
    "{org}", "{project}" and "{target}" standing for the victim's objects."""

    query: str = ""
    body: dict | None = None  # the body of a POST into the victim (None: the POST is not aimed)


COLLECTIONS = {
    "organization-list": Aim(),  # a POST creates the caller's own organization
    "project-list": Aim(body={"organization": "{org}", "name": "Hijacked"}),
    "benchmark-target-list": Aim(body={
        "organization": "{org}", "name": "Hijacked", "kind": "openai_compatible",
        "base_url": "https://llm.example/v1", "model_names": ["m"],
    }),
    "benchmark-run-list": Aim(body={"target": "{target}"}),
    "benchmark-result-list": Aim(query="target={target}"),
    "cost-event-list": Aim(query="project={project}", body={"provider": "openai", "model": "m", "input_tokens": 1}),
    "cost-event-batch": Aim(query="project={project}", body={"events": [{"provider": "openai", "model": "m"}]}),
    "cost-recommendation-list": Aim(query="project={project}"),
    "cost-summary-summary": Aim(query="project={project}"),
    "cost-summary-tokens": Aim(query="project={project}"),
    "budget-list": Aim(query="project={project}", body={"organization": "{org}", "name": "Hijacked", "amount": "1"}),
    "alert-rule-list": Aim(body={"organization": "{org}", "name": "Hijacked", "target": "{target}", "metric": "ttft_p95_ms", "threshold": 1}),
    "webhook-list": Aim(body={"organization": "{org}", "name": "Hijacked", "url": "https://hooks.example/x"}),
    "alert-list": Aim(),
    "gateway-connection-list": Aim(body={
        "organization": "{org}", "name": "Hijacked", "kind": "openai_compatible", "provider": "openai",
        "base_url": "https://llm.example/v1",
    }),
    "gateway-route-list": Aim(query="project={project}", body={
        "project": "{project}", "name": "hijacked", "upstreams": [{"connection": "{connection}", "model": "m"}],
    }),
    "gateway-limit-list": Aim(query="project={project}", body={"project": "{project}", "requests_per_minute": 5}),
    "gateway-models": Aim(query="project={project}"),
}

# Page arguments name their kind; the API router's `uuid` is the object of the viewset's model.
KWARG_KINDS: dict[str, type[models.Model]] = {
    "organization_uuid": Organization, "project_uuid": Project, "token_uuid": ApiToken,
    "membership_uuid": Membership, "invitation_uuid": Invitation, "alert_uuid": Alert,
    "budget_uuid": Budget, "rule_uuid": AlertRule, "webhook_uuid": Webhook, "target_uuid": Target,
    "run_uuid": Run, "event_uuid": CostEvent, "connection_uuid": Connection, "route_uuid": GatewayRoute,
    "limit_uuid": RateLimit,
}


def kind_of(route: Route, kwarg: str) -> type[models.Model]:
    if kwarg in KWARG_KINDS:
        return KWARG_KINDS[kwarg]
    queryset = getattr(route.view_class, "queryset", None)
    if kwarg == "uuid" and queryset is not None:
        return queryset.model
    pytest.fail(
        f"The tenancy walk does not know what {route.route!r} ({route.name}) takes as {kwarg!r}. Add the "
        "argument's model to KWARG_KINDS in tests/test_tenancy_walk.py (and an object of that kind to the "
        "victim world), or list the pattern in PUBLIC/OWN if it holds no tenant's data."
    )


def classify(route: Route) -> str:
    if route.route.startswith("admin/"):
        return "admin"
    if route.name in PUBLIC:
        return "public"
    if route.name in OWN:
        return "own"
    if route.kwargs:
        return "tenant"
    if route.name in COLLECTIONS:
        return "collection"
    pytest.fail(
        f"The tenancy walk does not know the URL pattern {route.route!r} ({route.name}). Tell it in "
        "tests/test_tenancy_walk.py: add it to COLLECTIONS with how it names an organization's data "
        "(?project=, a body field), or to PUBLIC/OWN with the reason it shows no tenant's data."
    )


# ---------------------------------------------------------------------------------------------
# The victim: Acme with one object of every kind
# ---------------------------------------------------------------------------------------------
@dataclass
class Victim:
    personas: Personas
    objects: dict[type[models.Model], models.Model]
    markers: list[str] = field(default_factory=list)

    def fill(self, route: Route, *, missing: bool = False, parents: dict | None = None) -> str:
        """The route with the victim's objects (or random uuids); `parents` swaps in others'
        organization/project while the object itself stays the victim's."""
        kwargs = {
            name: str(uuid.uuid4()) if missing else str(self.object_for(route, name).uuid) for name in route.kwargs
        }
        for name in route.kwargs[:-1]:
            kind = kind_of(route, name)
            if parents and kind in parents:
                kwargs[name] = str(parents[kind].uuid)
        return reverse_route(route, kwargs)

    def object_for(self, route: Route, kwarg: str) -> models.Model:
        kind = kind_of(route, kwarg)
        if kind not in self.objects:
            pytest.fail(
                f"The tenancy walk has no victim {kind.__name__} for {route.route!r}: create one in "
                "victim() in tests/test_tenancy_walk.py."
            )
        return self.objects[kind]

    def ids(self, missing: bool = False) -> dict[str, str]:
        if missing:
            return {
                "org": str(uuid.uuid4()), "project": str(uuid.uuid4()), "target": str(uuid.uuid4()),
                "connection": str(uuid.uuid4()),
            }
        return {
            "org": str(self.objects[Organization].uuid), "project": str(self.objects[Project].uuid),
            "target": str(self.objects[Target].uuid), "connection": str(self.objects[Connection].uuid),
        }


def reverse_route(route: Route, kwargs: dict[str, str]) -> str:
    return reverse(route.pattern.name, kwargs=kwargs)


def fill_placeholders(value: object, ids: dict[str, str]) -> object:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill_placeholders(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_placeholders(v, ids) for v in value]
    return value


@pytest.fixture
def victim(personas: Personas) -> Victim:
    org, project, owner = personas.org, personas.project, personas.owner
    token, _raw = ApiToken.issue(project=project, name="Zyx token", scopes=["read", "write"], by=owner)
    invitation, _raw = Invitation.issue(org, "invitee@a.example", Role.MEMBER, by=owner)
    target = Target.objects.create(
        organization=org, name="Zyx target", kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url="https://llm.acme.example/v1", model_names=["zyx-model"],
    )
    run = Run.objects.create(name="Zyx run", triggered_by=Run.Trigger.MANUAL, organization=org, target=target)
    result = BenchmarkResult.objects.create(
        run=run, organization=org, target=target, provider_name="Zyx target", model_name="zyx-model", success=True,
    )
    accepted = ingest(project, [{
        "provider": "openai", "model": "zyx-model", "input_tokens": 10, "output_tokens": 10, "cost_usd": "0.5",
        "timestamp": timezone.now().isoformat(),
    }], token=token)
    event = CostEvent.objects.get(uuid=accepted.accepted[0].event_uuid)
    budget = Budget.objects.create(organization=org, project=project, name="Zyx budget", amount=Decimal("100"))
    rule = AlertRule.objects.create(
        organization=org, name="Zyx rule", target=target, metric=AlertRule.Metric.TTFT_P95, threshold=800,
        window_results=10,
    )
    webhook = Webhook(organization=org, name="Zyx hook", url="https://hooks.acme.example/zyx")
    webhook.rotate_secret()
    webhook.save()
    alert = Alert.objects.create(
        organization=org, kind=Alert.Kind.BUDGET_THRESHOLD, budget=budget, threshold=80, title="Zyx alert",
        message="Spent a lot.", link=f"/orgs/{org.uuid}/alerts/",
        period_start=timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(days=0),
    )
    delivery = Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook)
    connection = Connection(
        organization=org, name="Zyx connection", kind=ProviderKind.OPENAI_COMPATIBLE, provider="openai",
        base_url="https://llm.acme.example/v1",
    )
    connection.api_key = "sk-zyx-secret"
    connection.save()
    gateway_route = GatewayRoute.objects.create(project=project, name="zyx-route")
    gateway_route.replace_upstreams([UpstreamSpec(connection, "zyx-model")])
    limit = RateLimit.objects.create(project=project, requests_per_minute=60)
    gateway_settings = GatewaySettings.of(project)
    # Someone else's membership: a viewer may leave, but not remove or promote others.
    membership = Membership.objects.get(organization=org, user=personas.member)
    objects = {
        Organization: org, Project: project, Membership: membership, Invitation: invitation, ApiToken: token,
        Target: target, Run: run, BenchmarkResult: result, CostEvent: event, Budget: budget, AlertRule: rule,
        Webhook: webhook, Alert: alert, Delivery: delivery, Connection: connection, GatewayRoute: gateway_route,
        RouteUpstream: gateway_route.upstreams.get(), RateLimit: limit, GatewaySettings: gateway_settings,
    }
    markers = ["Acme", "Zyx", "zyx", "@a.example", *(str(obj.uuid) for obj in objects.values() if hasattr(obj, "uuid"))]
    return Victim(personas=personas, objects=objects, markers=markers)


def snapshot(victim: Victim) -> list:
    """Every row of Acme's data of every kind (a token's last use aside: reading with it moves it)."""
    rows = []
    for kind in victim.objects:
        values = kind.objects.visible_to(victim.personas.owner).order_by("pk").values()
        rows.append([{k: v for k, v in row.items() if k != "last_used_at"} for row in values])
    return json.loads(json.dumps(rows, default=str))


# ---------------------------------------------------------------------------------------------
# Callers
# ---------------------------------------------------------------------------------------------
PAGE_FORM = {"action": "delete", "name": "Hijacked", "role": "owner", "email": "evil@b.example", "enabled": "0"}
API_BODY = {"name": "Hijacked", "role": "owner", "email": "evil@b.example", "scopes": ["write"]}


def send(client, route: Route, method: str, url: str, body: object = None):
    if route.is_api:
        data = json.dumps(API_BODY if body is None else body) if method != "GET" else None
        return client.generic(method, url, data=data or "", content_type="application/json")
    if method == "GET":
        return client.get(url)
    if method == "POST":
        return client.post(url, PAGE_FORM if body is None else body)
    return client.generic(method, url)


def api_token_client(project: Project, scopes: list[str]) -> APIClient:
    owner = project.organization.memberships.filter(role=Role.OWNER).first().user
    _token, raw = ApiToken.issue(project=project, name="walker", scopes=scopes, by=owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def outsiders(route: Route, personas: Personas) -> dict[str, object]:
    callers = {"outsider (session)": (APIClient if route.is_api else type(client_as()))()}
    callers["outsider (session)"].force_login(personas.outsider)
    if route.is_api:
        callers["outsider (token)"] = api_token_client(personas.other_project, ["read", "write", "ingest", "gateway"])
    return callers


def viewers(route: Route, personas: Personas) -> dict[str, object]:
    callers = {"viewer (session)": (APIClient if route.is_api else type(client_as()))()}
    callers["viewer (session)"].force_login(personas.viewer)
    if route.is_api:
        callers["viewer (read-only token)"] = api_token_client(personas.project, ["read"])
    return callers


def leaked(response, markers: list[str]) -> list[str]:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    text = content.decode(errors="replace")
    return [marker for marker in markers if marker in text]


# ---------------------------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------------------------
def test_the_walk_knows_every_pattern():
    """Every pattern is public, the caller's own, the operators', a tenant object (its arguments
    filled) or a collection that says how it names a tenant: nothing is skipped silently."""
    for route in ROUTES:
        if classify(route) == "tenant":
            for kwarg in route.kwargs:
                kind_of(route, kwarg)
    known = {route.name for route in ROUTES}
    stale = (set(PUBLIC) | set(OWN) | set(COLLECTIONS)) - known
    assert not stale, f"Listed in the walk but no longer a URL pattern: {sorted(stale)}"


TENANT_ROUTES = [r for r in ROUTES if not r.route.startswith("admin/") and r.kwargs and r.name not in PUBLIC | OWN]
COLLECTION_ROUTES = [r for r in ROUTES if r.name in COLLECTIONS]
OWN_ROUTES = [r for r in ROUTES if r.name in OWN]


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=str)
def test_an_outsider_gets_404_and_a_viewer_403_on_every_method(victim, route):
    personas = victim.personas
    url, missing_url = victim.fill(route), victim.fill(route, missing=True)
    served = route.served_methods()
    problems: list[str] = []
    outsider_clients, viewer_clients = outsiders(route, personas), viewers(route, personas)
    before = snapshot(victim)

    # Also under the outsider's own organization/project: a view that checks the parent but not
    # that the object belongs to it would answer there.
    own_parents = {Organization: personas.other_org, Project: personas.other_project}
    under_own = victim.fill(route, parents=own_parents) if len(route.kwargs) > 1 else None
    for who, client in outsider_clients.items():
        for method in METHODS:
            nothing = send(client, route, method, missing_url)
            for target in filter(None, [url, under_own]):
                got = send(client, route, method, target)
                if got.status_code not in (404, 405) or got.status_code != nothing.status_code:
                    problems.append(
                        f"{who} {method} {target}: {got.status_code} (for a missing object: {nothing.status_code})"
                    )
    if snapshot(victim) != before:
        problems.append(f"the outsider changed Acme's data through {route.route}")

    reached = False
    for who, client in viewer_clients.items():
        for method in WRITES:
            got = send(client, route, method, url)
            # A method the view does not serve is a 405, or a 403 when the token's scope is
            # checked first; pages say themselves which methods they serve.
            expected = {403} if served is not None and method in served else {403, 405}
            if got.status_code not in expected:
                problems.append(f"{who} {method} {url}: {got.status_code}, expected {sorted(expected)}")
            reached |= got.status_code == 403
    if snapshot(victim) != before:
        problems.append(f"a viewer changed Acme's data through {route.route}")

    # The fill must reach the victim's object, or every 404 above would prove nothing.
    owner = APIClient() if route.is_api else type(client_as())()
    owner.force_login(personas.owner)
    if served is None or "GET" in served:
        reached |= send(owner, route, "GET", url).status_code not in (404, 405)
    assert reached, f"Neither Acme's owner nor its viewer reached {url}: the walk's fill is wrong"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("route", [*TENANT_ROUTES, *COLLECTION_ROUTES, *OWN_ROUTES], ids=str)
def test_an_anonymous_caller_is_refused_before_anything_is_looked_up(victim, route):
    """Pages do not take API tokens: even Acme's own token is anonymous there."""
    _token, raw = ApiToken.issue(project=victim.personas.project, name="walker", scopes=["read", "write"],
                                 by=victim.personas.owner)
    for method in METHODS:
        client = APIClient() if route.is_api else type(client_as())(HTTP_AUTHORIZATION=f"Bearer {raw}")
        response = send(client, route, method, victim.fill(route))
        if route.is_api:
            assert response.status_code == 401, (method, response.status_code)
        else:
            assert response.status_code == 302, (method, response.status_code)
            assert response.url.startswith(reverse("account_login")), response.url


@pytest.mark.parametrize("route", COLLECTION_ROUTES, ids=str)
def test_a_collection_named_at_another_organization_is_as_if_it_did_not_exist(victim, route):
    aim, personas = COLLECTIONS[route.name], victim.personas
    served = route.served_methods()
    base = reverse_route(route, {})
    problems: list[str] = []
    outsider_clients, viewer_clients = outsiders(route, personas), viewers(route, personas)
    before = snapshot(victim)

    for who, client in outsider_clients.items():
        for method in sorted(served & {"GET", "POST"}):
            responses = []
            for ids in (victim.ids(), victim.ids(missing=True)):
                query = aim.query.format(**ids)
                body = fill_placeholders(aim.body, ids) if method == "POST" and aim.body else None
                if method == "POST" and aim.body is None:
                    continue  # not aimed at anyone else: the caller's own create
                response = send(client, route, method, f"{base}?{query}" if query else base, body)
                # A 400 may echo the uuid it was given; compare with it taken out.
                text = response.content.decode(errors="replace")
                for value in ids.values():
                    text = text.replace(value, "<uuid>")
                responses.append((response, text))
            if not responses:
                continue
            (got, got_text), (nothing, nothing_text) = responses
            if got.status_code >= 500 or got.status_code != nothing.status_code or got_text != nothing_text:
                problems.append(f"{who} {method} {route.name}: {got.status_code} {got_text[:200]} "
                                f"vs for nothing {nothing.status_code} {nothing_text[:200]}")
            if leaks := leaked(got, [m for m in victim.markers if m not in victim.ids().values()]):
                problems.append(f"{who} {method} {route.name} shows Acme's {leaks}")
    if snapshot(victim) != before:
        problems.append(f"the outsider changed Acme's data through {route.route}")

    if aim.body is not None and "POST" in served:
        for who, client in viewer_clients.items():
            query = aim.query.format(**victim.ids())
            response = send(client, route, "POST", f"{base}?{query}" if query else base,
                            fill_placeholders(aim.body, victim.ids()))
            if response.status_code != 403:
                problems.append(f"{who} POST {route.name}: {response.status_code} {response.content[:200]!r}")
        if snapshot(victim) != before:
            problems.append(f"a viewer changed Acme's data through {route.route}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.name in PUBLIC | OWN and not r.kwargs], ids=str)
def test_public_and_own_pages_show_an_outsider_nothing_of_another_organization(victim, route):
    client = APIClient() if route.is_api else type(client_as())()
    client.force_login(victim.personas.outsider)
    response = send(client, route, "GET", reverse_route(route, {}))

    assert response.status_code < 500
    assert not leaked(response, victim.markers)


def test_the_admin_is_for_operators_only(victim):
    """Every admin page sends an organization's owner (not staff) to the admin's sign-in."""
    owner = type(client_as())()
    owner.force_login(victim.personas.owner)
    pk = str(victim.objects[Organization].pk)
    for route in (r for r in ROUTES if r.route.startswith("admin/") and r.name not in ("login", "logout")):
        parts = ["accounts" if "(?P<app_label>" in part else pk if part.startswith(("<", "(?P")) else part
                 for part in route.route.replace("^", "").replace("$", "").split("/")]
        response = owner.get("/" + "/".join(parts))

        assert response.status_code == 302, (route.route, response.status_code)
        assert response.url.startswith("/admin/login/"), (route.route, response.url)


def test_a_pattern_the_walk_cannot_fill_fails_with_what_to_add():
    """The walk's own test: a new endpoint is never skipped silently."""
    from django.urls import path

    def view(request):  # pragma: no cover - never called
        raise AssertionError

    new_list = Route("api/v1/gadgets", path("gadgets", view, name="gadget-list"), "api/v1/")
    new_detail = Route("api/v1/gadgets/<uuid:gadget_uuid>", path("gadgets/<uuid:gadget_uuid>", view, name="gadget"), "api/v1/")

    with pytest.raises(pytest.fail.Exception, match="add it to COLLECTIONS"):
        classify(new_list)
    with pytest.raises(pytest.fail.Exception, match="Add the argument's model to KWARG_KINDS"):
        kind_of(new_detail, "gadget_uuid")


# What a token with only the `gateway` scope reads: a budget's status (a gateway checks `blocked`
# before forwarding), who it is, and what everyone signed in may read.
GATEWAY_READABLE = {"budget-budget-status", "api-me"}


API_READS = [r for r in ROUTES if r.is_api and r.name not in PUBLIC and "GET" in (r.served_methods() or {"GET"})]


@pytest.mark.parametrize("route", API_READS, ids=str)
def test_a_gateway_only_token_reads_a_budgets_status_and_nothing_else(victim, route):
    client = api_token_client(victim.personas.project, ["gateway"])
    url = victim.fill(route)
    if route.name in COLLECTIONS and COLLECTIONS[route.name].query:
        url += "?" + COLLECTIONS[route.name].query.format(**victim.ids())

    response = client.get(url)

    if route.name in GATEWAY_READABLE:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 403, (url, response.status_code)
        assert response.json()["detail"] == "This API token lacks the 'read' scope."
