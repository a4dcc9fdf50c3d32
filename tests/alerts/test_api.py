"""The alerts API (/api/v1/budgets, alert-rules, webhooks, alerts), read as a specification.

With the personas of tests/conftest.py (owner, admin, member, viewer of Acme; an outsider who owns
Bravo): everyone in Acme reads Acme's budgets, rules, webhooks and alerts; members and up (and
tokens with the write scope) change budgets, rules and webhooks; a viewer's or a read-only
token's write is 403 and changes nothing; the outsider gets 404 for every Acme object, exactly
as for one that does not exist. A project-bound token sees its own project's budgets only. Bad
input is a 400 on the offending field, with the models' own rules (`full_clean()`). A webhook's
URL is never read back (only masked) and its secret is shown on creation and rotation only.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Project, Role
from alerts.models import Alert, AlertRule, Budget, Delivery, Webhook
from benchmarks.models import Model, Provider, ProviderKind, Target
from costs.ingestion import ingest
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

API = "/api/v1"
MEMBERS = ["owner", "admin", "member"]
HOOK_URL = "https://hooks.slack.com/services/T000/B000/SECRETPATHxyz9"
OTHER_HOOK_URL = "https://hooks.bravo.example/incoming/very-secret-path"


def call(client: APIClient, method: str, url: str, body: object = None):
    data = "" if body is None else json.dumps(body)
    return client.generic(method, f"{API}{url}", data=data, content_type="application/json")


# ---------------------------------------------------------------------------------------------
# The world every test addresses
# ---------------------------------------------------------------------------------------------
@dataclass
class World:
    personas: Personas
    staging: Project  # Acme's second project
    webhook: Webhook
    budget: Budget  # Acme / Production
    staging_budget: Budget  # Acme / Staging
    rule: AlertRule
    alert: Alert
    target: Target
    catalog_model: Model
    other_webhook: Webhook
    other_budget: Budget
    other_rule: AlertRule
    other_alert: Alert

    def ids(self) -> dict[str, str]:
        return {
            "org": str(self.personas.org.uuid), "project": str(self.personas.project.uuid),
            "staging": str(self.staging.uuid), "webhook": str(self.webhook.uuid), "budget": str(self.budget.uuid),
            "staging_budget": str(self.staging_budget.uuid), "rule": str(self.rule.uuid), "alert": str(self.alert.uuid),
            "target": str(self.target.uuid), "catalog_model": str(self.catalog_model.uuid),
            "other_webhook": str(self.other_webhook.uuid), "other_budget": str(self.other_budget.uuid),
            "other_rule": str(self.other_rule.uuid), "other_alert": str(self.other_alert.uuid),
        }

    def fill(self, value: object, **more_ids: str) -> object:
        """The body or URL with "{budget}" and the like replaced by the objects' uuids."""
        if isinstance(value, str):
            return value.format(**self.ids(), **more_ids)
        if isinstance(value, dict):
            return {k: self.fill(v, **more_ids) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v, **more_ids) for v in value]
        return value


def make_webhook(organization, name: str, url: str) -> Webhook:
    webhook = Webhook(organization=organization, name=name, url=url)
    webhook.rotate_secret()
    webhook.save()
    return webhook


def make_alert(organization, budget: Budget | None = None, webhook: Webhook | None = None, **extra: object) -> Alert:
    alert = Alert.objects.create(
        organization=organization, kind=extra.pop("kind", Alert.Kind.BUDGET_THRESHOLD), budget=budget,
        period_start=timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        threshold=extra.pop("threshold", 80), title=extra.pop("title", "80 % used"), message="Spent a lot.",
        link=f"/orgs/{organization.uuid}/alerts/", **extra,
    )
    Delivery.objects.create(alert=alert, channel=Delivery.Channel.EMAIL, address="ops@a.example")
    if webhook is not None:
        Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook)
    return alert


@pytest.fixture
def world(personas: Personas) -> World:
    staging = Project.objects.create(organization=personas.org, name="Staging")
    webhook = make_webhook(personas.org, "Ops channel", HOOK_URL)
    other_webhook = make_webhook(personas.other_org, "Bravo hook", OTHER_HOOK_URL)
    budget = Budget.objects.create(organization=personas.org, project=personas.project, name="Prod", amount=Decimal("100"))
    budget.notify_members.add(personas.member)
    budget.webhooks.add(webhook)
    staging_budget = Budget.objects.create(organization=personas.org, project=staging, name="Staging", amount=Decimal("5"))
    other_budget = Budget.objects.create(organization=personas.other_org, name="Bravo", amount=Decimal("50"))
    target = Target.objects.create(
        organization=personas.org, name="Acme endpoint", kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url="https://llm.acme.example/v1", model_names=["m1"],
    )
    other_target = Target.objects.create(
        organization=personas.other_org, name="Bravo endpoint", kind=ProviderKind.ANTHROPIC,
        base_url="https://llm.bravo.example", model_names=["m2"],
    )
    provider = Provider.objects.create(name="OpenAI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://api.openai.com/v1")
    catalog_model = Model.objects.create(provider=provider, name="gpt-4o-mini", is_active=True)
    rule = AlertRule.objects.create(
        organization=personas.org, name="Slow TTFT", target=target, metric=AlertRule.Metric.TTFT_P95,
        threshold=800, window_results=10,
    )
    other_rule = AlertRule.objects.create(
        organization=personas.other_org, name="Bravo rule", target=other_target, metric=AlertRule.Metric.TTFT_P95,
        threshold=800, window_results=10,
    )
    return World(
        personas=personas, staging=staging, webhook=webhook, budget=budget, staging_budget=staging_budget, rule=rule,
        alert=make_alert(personas.org, budget, webhook), target=target, catalog_model=catalog_model,
        other_webhook=other_webhook, other_budget=other_budget, other_rule=other_rule,
        other_alert=make_alert(personas.other_org, other_budget, other_webhook),
    )


def budget_body(**overrides: object) -> dict:
    return {
        "organization": "{org}", "name": "Monthly", "project": "{project}", "amount": "500.00", "currency": "USD",
        "period": "month", "thresholds": [100, 50, 80], "enforcement": "soft", "notify_members": ["member@a.example"],
        "extra_emails": ["finance@a.example"], "webhooks": ["{webhook}"],
    } | overrides


def rule_body(**overrides: object) -> dict:
    return {
        "organization": "{org}", "name": "Slow", "target": "{target}", "metric": "ttft_p95_ms", "threshold": 900,
        "window_minutes": 60, "min_results": 3,
    } | overrides


def webhook_body(**overrides: object) -> dict:
    return {"organization": "{org}", "name": "Pager", "url": "https://pager.acme.example/hooks/abc123", "format": "json"} | overrides


READS = [
    "/budgets", "/budgets/{budget}", "/budgets/{budget}/status", "/alert-rules", "/alert-rules/{rule}",
    "/webhooks", "/webhooks/{webhook}", "/webhooks/{webhook}/deliveries", "/alerts", "/alerts/{alert}",
]
# (method, url, body, the status when allowed, the model whose rows must not change when refused)
WRITES = {
    "create budget": ("POST", "/budgets", budget_body(), 201, Budget),
    "patch budget": ("PATCH", "/budgets/{budget}", {"amount": "250"}, 200, Budget),
    "put budget": ("PUT", "/budgets/{budget}", budget_body(name="Replaced"), 200, Budget),
    "delete budget": ("DELETE", "/budgets/{budget}", None, 204, Budget),
    "create rule": ("POST", "/alert-rules", rule_body(), 201, AlertRule),
    "patch rule": ("PATCH", "/alert-rules/{rule}", {"threshold": 1200}, 200, AlertRule),
    "put rule": ("PUT", "/alert-rules/{rule}", rule_body(name="Replaced", window_results=None), 200, AlertRule),
    "delete rule": ("DELETE", "/alert-rules/{rule}", None, 204, AlertRule),
    "create webhook": ("POST", "/webhooks", webhook_body(), 201, Webhook),
    "patch webhook": ("PATCH", "/webhooks/{webhook}", {"name": "Renamed"}, 200, Webhook),
    "put webhook": ("PUT", "/webhooks/{webhook}", webhook_body(name="Replaced"), 200, Webhook),
    "delete webhook": ("DELETE", "/webhooks/{webhook}", None, 204, Webhook),
    "rotate secret": ("POST", "/webhooks/{webhook}/rotate-secret", None, 200, Webhook),
    "test webhook": ("POST", "/webhooks/{webhook}/test", None, 202, Alert),
}
# Every detail endpoint and action, for the outsider's 404.
DETAILS = [
    ("GET", "/budgets/{budget}"), ("GET", "/budgets/{budget}/status"), ("PATCH", "/budgets/{budget}"),
    ("PUT", "/budgets/{budget}"), ("DELETE", "/budgets/{budget}"),
    ("GET", "/alert-rules/{rule}"), ("PATCH", "/alert-rules/{rule}"), ("PUT", "/alert-rules/{rule}"),
    ("DELETE", "/alert-rules/{rule}"),
    ("GET", "/webhooks/{webhook}"), ("PATCH", "/webhooks/{webhook}"), ("PUT", "/webhooks/{webhook}"),
    ("DELETE", "/webhooks/{webhook}"), ("POST", "/webhooks/{webhook}/rotate-secret"),
    ("POST", "/webhooks/{webhook}/test"), ("GET", "/webhooks/{webhook}/deliveries"),
    ("GET", "/alerts/{alert}"),
]


def snapshot(model: type) -> list:
    return sorted(model.objects.values_list("id", flat=True)) + sorted(
        json.dumps(row, sort_keys=True, default=str) for row in model.objects.values()
    )


# ---------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", [*MEMBERS, "viewer"])
@pytest.mark.parametrize("url", READS)
def test_everyone_in_acme_reads_everything(world, api_as, persona, url):
    response = call(api_as(persona), "GET", world.fill(url))

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("url", READS)
def test_a_read_token_reads_everything(world, token_client, url):
    client, _token = token_client(["read"])

    assert call(client, "GET", world.fill(url)).status_code == 200


@pytest.mark.parametrize(
    ("url", "mine", "theirs"),
    [
        ("/budgets", {"budget", "staging_budget"}, {"other_budget"}),
        ("/alert-rules", {"rule"}, {"other_rule"}),
        ("/webhooks", {"webhook"}, {"other_webhook"}),
        ("/alerts", {"alert"}, {"other_alert"}),
    ],
)
def test_lists_show_only_the_callers_organization(world, api_as, url, mine, theirs):
    ids = world.ids()
    acme = {row["uuid"] for row in call(api_as("viewer"), "GET", url).json()["results"]}
    bravo = {row["uuid"] for row in call(api_as("outsider"), "GET", url).json()["results"]}

    assert acme == {ids[name] for name in mine}
    assert bravo == {ids[name] for name in theirs}


@pytest.mark.parametrize(("method", "url"), DETAILS)
def test_the_outsider_gets_404_for_every_acme_object_as_for_nothing(world, api_as, method, url):
    before = [snapshot(model) for model in (Budget, AlertRule, Webhook, Alert)]
    acme = call(api_as("outsider"), method, world.fill(url), {"name": "Mine now"})
    nothing = call(api_as("outsider"), method, url.format(**dict.fromkeys(world.ids(), str(uuid.uuid4()))), {"name": "x"})

    assert acme.status_code == nothing.status_code == 404
    assert acme.json() == nothing.json()
    assert [snapshot(model) for model in (Budget, AlertRule, Webhook, Alert)] == before


@pytest.mark.parametrize("persona", MEMBERS)
@pytest.mark.parametrize("write", list(WRITES))
def test_members_and_up_may_write(world, api_as, persona, write):
    method, url, body, status, _model = WRITES[write]

    response = call(api_as(persona), method, world.fill(url), world.fill(body))

    assert response.status_code == status, response.content


@pytest.mark.parametrize("write", list(WRITES))
def test_a_write_token_may_write(world, token_client, write):
    method, url, body, status, _model = WRITES[write]
    client, _token = token_client(["read", "write"])  # bound to Production, like every token people issue

    response = call(client, method, world.fill(url), world.fill(body))

    assert response.status_code == status, response.content


@pytest.mark.parametrize("write", list(WRITES))
def test_a_viewer_gets_403_on_every_write_and_nothing_changes(world, api_as, write):
    method, url, body, _status, model = WRITES[write]
    before = snapshot(model)

    response = call(api_as("viewer"), method, world.fill(url), world.fill(body))

    assert response.status_code == 403, response.content
    assert "member role" in response.json()["detail"]
    assert snapshot(model) == before


@pytest.mark.parametrize(
    ("url", "body"),
    [("/budgets", {"organization": "{org}", "amount": "-1", "thresholds": "x"}),
     ("/alert-rules", {"organization": "{org}"}),
     ("/webhooks", {"organization": "{org}", "url": "ftp://x"})],
)
def test_a_viewers_create_is_refused_whatever_the_body(world, api_as, url, body):
    response = call(api_as("viewer"), "POST", url, world.fill(body))

    assert response.status_code == 403


@pytest.mark.parametrize("scopes", [["read"], ["read", "ingest"]])
@pytest.mark.parametrize("write", list(WRITES))
def test_a_token_without_the_write_scope_gets_403_on_every_write(world, token_client, scopes, write):
    method, url, body, _status, model = WRITES[write]
    client, _token = token_client(scopes)
    before = snapshot(model)

    response = call(client, method, world.fill(url), world.fill(body))

    assert response.status_code == 403
    assert response.json()["detail"] == "This API token lacks the 'write' scope."
    assert snapshot(model) == before


def test_a_gateway_token_reads_a_budgets_status(world, token_client):
    """The gateway checks `blocked` before forwarding a request, with its gateway-only token."""
    client, _token = token_client(["gateway"])

    response = call(client, "GET", world.fill("/budgets/{budget}/status"))

    assert response.status_code == 200, response.content
    assert response.json()["blocked"] is False


@pytest.mark.parametrize("url", [url for url in READS if url != "/budgets/{budget}/status"])
def test_a_gateway_token_reads_nothing_else(world, token_client, url):
    client, _token = token_client(["gateway"])

    response = call(client, "GET", world.fill(url))

    assert response.status_code == 403, response.content
    assert response.json()["detail"] == "This API token lacks the 'read' scope."


@pytest.mark.parametrize("write", list(WRITES))
def test_a_gateway_token_writes_nothing(world, token_client, write):
    method, url, body, _status, model = WRITES[write]
    client, _token = token_client(["gateway"])
    before = snapshot(model)

    response = call(client, method, world.fill(url), world.fill(body))

    assert response.status_code == 403
    assert snapshot(model) == before


@pytest.mark.parametrize("budget", ["staging_budget", "other_budget"])
def test_a_gateway_token_gets_404_for_the_status_of_a_budget_it_cannot_see(world, token_client, budget):
    client, _token = token_client(["gateway"])  # bound to Acme / Production

    response = call(client, "GET", world.fill(f"/budgets/{{{budget}}}/status"))

    assert response.status_code == 404


def test_an_ingest_token_cannot_read_a_budgets_status(world, token_client):
    client, _token = token_client(["ingest"])

    assert call(client, "GET", world.fill("/budgets/{budget}/status")).status_code == 403


@pytest.mark.parametrize("url", ["/budgets", "/alert-rules", "/webhooks", "/alerts", "/budgets/{budget}/status"])
def test_an_anonymous_caller_gets_401(world, api_client, url):
    assert call(api_client, "GET", world.fill(url)).status_code == 401


def test_alerts_are_read_only(world, api_as):
    assert call(api_as("owner"), "POST", "/alerts", {"title": "x"}).status_code == 405
    assert call(api_as("owner"), "DELETE", world.fill("/alerts/{alert}")).status_code == 405


def test_a_malformed_uuid_is_404(world, api_as):
    for url in ["/budgets/nope", "/budgets/nope/status", "/alert-rules/nope", "/webhooks/nope/test", "/alerts/nope"]:
        method = "POST" if url.endswith("/test") else "GET"
        assert call(api_as("owner"), method, url).status_code == 404, url


# ---------------------------------------------------------------------------------------------
# Project-bound tokens
# ---------------------------------------------------------------------------------------------
def test_a_project_bound_token_sees_only_its_projects_budgets(world, token_client):
    client, _token = token_client(["read", "write"], world.personas.project)

    listing = call(client, "GET", "/budgets").json()["results"]

    assert [b["uuid"] for b in listing] == [str(world.budget.uuid)]
    assert call(client, "GET", world.fill("/budgets/{staging_budget}")).status_code == 404
    assert call(client, "GET", world.fill("/budgets/{staging_budget}/status")).status_code == 404
    assert call(client, "PATCH", world.fill("/budgets/{staging_budget}"), {"amount": "1"}).status_code == 404
    assert call(client, "GET", world.fill("/budgets/{budget}/status")).status_code == 200


def test_a_project_bound_token_reads_but_cannot_change_the_budgets_covering_its_project(world, token_client):
    organization_wide = Budget.objects.create(organization=world.personas.org, name="All", amount=Decimal("1000"))
    client, _token = token_client(["read", "write"], world.personas.project)

    listing = {b["uuid"] for b in call(client, "GET", "/budgets").json()["results"]}
    status_ = call(client, "GET", f"/budgets/{organization_wide.uuid}/status")
    patched = call(client, "PATCH", f"/budgets/{organization_wide.uuid}", {"amount": "1"})
    deleted = call(client, "DELETE", f"/budgets/{organization_wide.uuid}")

    assert listing == {str(world.budget.uuid), str(organization_wide.uuid)}
    assert status_.status_code == 200 and status_.json()["blocked"] is False
    assert patched.status_code == deleted.status_code == 403
    assert "bound to one project" in patched.json()["detail"]
    organization_wide.refresh_from_db()
    assert organization_wide.amount == Decimal("1000")


def test_a_project_bound_token_creates_budgets_only_for_its_project(world, token_client):
    client, _token = token_client(["read", "write"], world.personas.project)

    staging = call(client, "POST", "/budgets", world.fill(budget_body(project="{staging}")))
    organization_wide = call(client, "POST", "/budgets", world.fill(budget_body(project=None)))
    moved = call(client, "PATCH", world.fill("/budgets/{budget}"), world.fill({"project": None}))
    own = call(client, "POST", "/budgets", world.fill(budget_body()))

    assert staging.status_code == organization_wide.status_code == moved.status_code == 400
    assert list(staging.json()) == list(organization_wide.json()) == list(moved.json()) == ["project"]
    assert "bound to project Production" in organization_wide.json()["project"][0]
    assert own.status_code == 201 and own.json()["project"] == str(world.personas.project.uuid)


def test_a_project_bound_token_does_not_see_another_projects_budget_alerts(world, token_client):
    staging_alert = make_alert(world.personas.org, world.staging_budget, threshold=50)
    test_alert = make_alert(world.personas.org, None, kind=Alert.Kind.TEST, threshold=None)
    bound, _ = token_client(["read"], world.personas.project)
    unbound, token = token_client(["read"])
    ApiToken.objects.filter(pk=token.pk).update(project=None)  # an organization-wide token

    seen_bound = {a["uuid"] for a in call(bound, "GET", "/alerts").json()["results"]}
    seen_unbound = {a["uuid"] for a in call(unbound, "GET", "/alerts").json()["results"]}

    assert seen_bound == {str(world.alert.uuid), str(test_alert.uuid)}
    assert seen_unbound == {str(world.alert.uuid), str(test_alert.uuid), str(staging_alert.uuid)}
    assert call(bound, "GET", f"/alerts/{staging_alert.uuid}").status_code == 404


def test_the_budget_list_filters_by_project(world, api_as):
    client = api_as("viewer")

    staging = call(client, "GET", f"/budgets?project={world.staging.uuid}").json()["results"]
    bad = call(client, "GET", "/budgets?project=nope")

    assert [b["uuid"] for b in staging] == [str(world.staging_budget.uuid)]
    assert bad.status_code == 400 and list(bad.json()) == ["project"]


# ---------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------
def test_a_new_budget_is_saved_with_its_recipients_and_sorted_thresholds(world, api_as):
    response = call(api_as("member"), "POST", "/budgets", world.fill(budget_body(tag_key="team", tag_value="search")))

    assert response.status_code == 201, response.content
    data = response.json()
    budget = Budget.objects.get(uuid=data["uuid"])
    assert budget.created_by == world.personas.member and budget.organization == world.personas.org
    assert budget.thresholds == [50, 80, 100] and data["thresholds"] == [50, 80, 100]
    assert list(budget.notify_members.all()) == [world.personas.member]
    assert list(budget.webhooks.all()) == [world.webhook]
    assert data["notify_members"] == ["member@a.example"] and data["webhooks"] == [str(world.webhook.uuid)]
    assert data["extra_emails"] == ["finance@a.example"]
    assert (data["scope"], data["amount"], data["organization"]) == ("project", "500.00", str(world.personas.org.uuid))
    assert {"created_at", "updated_at", "forecast_alerts", "is_enabled", "api_token", "model"} <= set(data)


def test_a_budget_can_cover_one_api_token_or_the_organization(world, api_as, token_client):
    _client, token = token_client(["read"])
    by_token = call(api_as("member"), "POST", "/budgets", world.fill(budget_body(project=None, api_token=str(token.uuid))))
    whole = call(api_as("member"), "POST", "/budgets", world.fill(budget_body(project=None, notify_members=[])))

    assert by_token.status_code == 201 and by_token.json()["scope"] == "token"
    assert by_token.json()["api_token"] == str(token.uuid)
    assert whole.status_code == 201 and whole.json()["scope"] == "organization"


def test_notify_members_accepts_emails_in_any_case(world, api_as):
    response = call(api_as("member"), "PATCH", world.fill("/budgets/{budget}"), {"notify_members": ["VIEWER@A.example"]})

    assert response.status_code == 200, response.content
    assert response.json()["notify_members"] == ["viewer@a.example"]
    assert list(world.budget.notify_members.all()) == [world.personas.viewer]


def test_a_patch_changes_only_what_is_sent_and_never_the_organization(world, api_as):
    response = call(
        api_as("member"), "PATCH", world.fill("/budgets/{budget}"),
        {"amount": "250", "organization": str(world.personas.other_org.uuid), "scope": "organization"},
    )

    assert response.status_code == 200
    world.budget.refresh_from_db()
    assert world.budget.amount == Decimal("250") and world.budget.organization == world.personas.org
    assert world.budget.project == world.personas.project
    assert list(world.budget.notify_members.all()) == [world.personas.member]  # untouched


def test_a_budget_moves_only_to_a_project_of_its_own_organization(world, api_as, personas):
    personas.other_org.add_member(personas.member, Role.MEMBER)  # now sees Bravo's project too

    response = call(api_as("member"), "PATCH", world.fill("/budgets/{budget}"), {"project": str(personas.other_project.uuid)})

    assert response.status_code == 400
    assert response.json() == {"project": ["That project belongs to another organization."]}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"thresholds": "x"}, "thresholds"),
        ({"thresholds": [0]}, "thresholds"),
        ({"thresholds": [50, 50]}, "thresholds"),
        ({"thresholds": []}, "thresholds"),
        ({"thresholds": [50, "80"]}, "thresholds"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"currency": "JPY"}, "currency"),
        ({"period": "year"}, "period"),
        ({"enforcement": "strict"}, "enforcement"),
        ({"extra_emails": ["nope"]}, "extra_emails"),
        ({"extra_emails": "ops@a.example"}, "extra_emails"),
        ({"notify_members": ["outsider@b.example"]}, "notify_members"),
        ({"notify_members": ["nobody@nowhere.example"]}, "notify_members"),
        ({"notify_members": ["not an email"]}, "notify_members"),
        ({"webhooks": ["{other_webhook}"]}, "webhooks"),
        ({"webhooks": ["nope"]}, "webhooks"),
        ({"project": "{other_project}"}, "project"),
        ({"project": "nope"}, "project"),
        ({"api_token": "{token}"}, "project"),  # a project and a token: one or the other
        ({"tag_key": "customer", "tag_value": "x"}, "tag_key"),  # not a rolled-up key
        ({"tag_key": "team"}, "tag_value"),
        ({"tag_value": "search"}, "tag_key"),
        ({"name": ""}, "name"),
        ({"organization": "nope"}, "organization"),
        ({"organization": "{other_org}"}, "organization"),
    ],
)
def test_bad_budget_input_is_a_400_on_the_field(world, api_as, token_client, overrides, field):
    _client, token = token_client(["read"])
    body = world.fill(
        budget_body(**overrides), other_project=str(world.personas.other_project.uuid), token=str(token.uuid),
        other_org=str(world.personas.other_org.uuid),
    )
    before = snapshot(Budget)

    response = call(api_as("member"), "POST", "/budgets", body)

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field], response.json()
    assert all(isinstance(m, str) and m for m in response.json()[field])
    assert snapshot(Budget) == before


def test_a_non_member_and_an_unknown_address_get_the_same_answer(world, api_as):
    stranger = call(api_as("member"), "POST", "/budgets", world.fill(budget_body(notify_members=["outsider@b.example"])))
    nobody = call(api_as("member"), "POST", "/budgets", world.fill(budget_body(notify_members=["nobody@b.example"])))

    assert stranger.json() == {"notify_members": ["Not members of Acme: outsider@b.example."]}
    assert nobody.json() == {"notify_members": ["Not members of Acme: nobody@b.example."]}


def test_the_outsider_cannot_name_acme_in_a_body(world, api_as):
    acme = call(api_as("outsider"), "POST", "/budgets", world.fill(budget_body()))

    assert acme.status_code == 400
    assert set(acme.json()) <= {"organization", "project", "webhooks"}
    assert "organization" in acme.json()
    assert not Budget.objects.filter(name="Monthly").exists()


# The status: spend this period against the amount ---------------------------------------------
def spend(project: Project, usd: str) -> None:
    result = ingest(project, [{"provider": "openai", "model": "m", "input_tokens": 1, "output_tokens": 1,
                               "cost_usd": usd, "timestamp": timezone.now().isoformat()}])
    assert not result.errors, result.errors


def test_the_status_of_a_soft_budget_at_80_percent(world, api_as):
    budget = Budget.objects.create(
        organization=world.personas.org, project=world.personas.project, name="Ten", amount=Decimal("10"),
    )
    spend(world.personas.project, "8")

    response = call(api_as("viewer"), "GET", f"/budgets/{budget.uuid}/status")

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["budget"] == str(budget.uuid)
    assert (data["amount"], data["spent"], data["percent"], data["remaining"]) == ("10.00", "8.00", "80.0", "2.00")
    assert data["spent_usd"] == "8.000000" and data["currency"] == "USD" and data["time_zone"] == "UTC"
    assert data["thresholds_crossed"] == [50, 80]
    assert data["exceeded"] is False and data["blocked"] is False and data["enforcement"] == "soft"
    assert set(data) == {
        "budget", "period_start", "period_end", "time_zone", "currency", "amount", "spent", "spent_usd", "percent",
        "remaining", "days_left", "forecast", "forecast_percent", "forecast_exceeds_at", "exceeded", "blocked",
        "enforcement", "thresholds_crossed", "exchange_rate_date",
    }
    assert all(isinstance(data[k], str) for k in ["days_left", "forecast", "forecast_percent"])


@pytest.mark.parametrize(("enforcement", "usd", "blocked"), [("hard", "10", True), ("hard", "12.5", True),
                                                              ("hard", "9.99", False), ("soft", "12.5", False)])
def test_a_hard_budget_that_is_spent_is_blocked(world, token_client, enforcement, usd, blocked):
    budget = Budget.objects.create(
        organization=world.personas.org, project=world.personas.project, name="Ten", amount=Decimal("10"),
        enforcement=enforcement,
    )
    spend(world.personas.project, usd)
    client, _token = token_client(["read"])  # the gateway's read token

    data = call(client, "GET", f"/budgets/{budget.uuid}/status").json()

    assert data["blocked"] is blocked
    assert data["exceeded"] is (Decimal(usd) >= 10)
    assert data["remaining"] == str(max(Decimal("10") - Decimal(usd), Decimal(0)).quantize(Decimal("0.01")))


# ---------------------------------------------------------------------------------------------
# Alert rules
# ---------------------------------------------------------------------------------------------
def test_a_new_rule_reads_back_with_its_condition_and_state(world, api_as):
    response = call(api_as("member"), "POST", "/alert-rules", world.fill(rule_body(notify_members=["viewer@a.example"])))

    assert response.status_code == 201, response.content
    data = response.json()
    rule = AlertRule.objects.get(uuid=data["uuid"])
    assert rule.created_by == world.personas.member and list(rule.notify_members.all()) == [world.personas.viewer]
    assert data["condition"] == "p95 time to first token (ms) above 900 over the last 60 minutes"
    assert (data["state"], data["incident_count"], data["last_value"]) == ("no_data", 0, None)
    assert data["target"] == str(world.target.uuid) and data["catalog_model"] is None


def test_a_rule_on_a_public_catalog_model(world, api_as):
    response = call(api_as("member"), "POST", "/alert-rules",
                    world.fill(rule_body(target=None, catalog_model="{catalog_model}", window_minutes=None, window_results=20)))

    assert response.status_code == 201, response.content
    assert response.json()["catalog_model"] == str(world.catalog_model.uuid)


def test_the_read_only_fields_of_a_rule_are_ignored(world, api_as):
    response = call(api_as("member"), "PATCH", world.fill("/alert-rules/{rule}"),
                    {"state": "firing", "incident_count": 7, "last_value": 1.0})

    assert response.status_code == 200
    world.rule.refresh_from_db()
    assert (world.rule.state, world.rule.incident_count, world.rule.last_value) == ("no_data", 0, None)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"catalog_model": "{catalog_model}"}, "target"),  # both
        ({"target": None}, "target"),  # neither
        ({"target": "{other_target}"}, "target"),
        ({"catalog_model": "nope", "target": None}, "catalog_model"),
        ({"window_minutes": None}, "window_results"),  # no window
        ({"window_results": 10}, "window_results"),  # both windows
        ({"window_minutes": 1}, "window_minutes"),
        ({"metric": "error_rate_pct", "threshold": 150}, "threshold"),
        ({"threshold": -1}, "threshold"),
        ({"metric": "vibes"}, "metric"),
        ({"model_name": "not-benchmarked"}, "model_name"),
        ({"window_minutes": None, "window_results": 2, "min_results": 5}, "min_results"),
        ({"extra_emails": ["nope"]}, "extra_emails"),
        ({"notify_members": ["outsider@b.example"]}, "notify_members"),
    ],
)
def test_bad_rule_input_is_a_400_on_the_field(world, api_as, overrides, field):
    other_target = Target.objects.get(organization=world.personas.other_org)
    body = world.fill(rule_body(**overrides), other_target=str(other_target.uuid))
    before = snapshot(AlertRule)

    response = call(api_as("member"), "POST", "/alert-rules", body)

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field], response.json()
    assert snapshot(AlertRule) == before


# ---------------------------------------------------------------------------------------------
# Webhooks: the URL is never read back; the secret is shown once
# ---------------------------------------------------------------------------------------------
def test_a_new_webhook_returns_its_secret_once_and_never_its_url(world, api_as):
    client = api_as("member")
    url = "https://hooks.slack.com/services/T1/B2/NEWSECRETPATH4567"

    created = call(client, "POST", "/webhooks", world.fill(webhook_body(url=url, format="slack")))

    assert created.status_code == 201, created.content
    data = created.json()
    webhook = Webhook.objects.get(uuid=data["uuid"])
    assert data["secret"].startswith("whsec_") and webhook.secret.reveal() == data["secret"]
    assert webhook.url.reveal() == url and webhook.created_by == world.personas.member
    assert "url" not in data and url.encode() not in created.content
    assert data["url_masked"] == "https://hooks.slack.com/…4567"
    for response in [call(client, "GET", f"/webhooks/{webhook.uuid}"), call(client, "GET", "/webhooks"),
                     call(client, "PATCH", f"/webhooks/{webhook.uuid}", {"name": "Renamed"})]:
        assert response.status_code == 200
        assert b"secret" not in response.content and data["secret"].encode() not in response.content
        assert url.encode() not in response.content and b"NEWSECRETPATH" not in response.content


def test_rotating_the_secret_returns_the_new_one_once(world, api_as):
    old = world.webhook.secret.reveal()

    response = call(api_as("member"), "POST", world.fill("/webhooks/{webhook}/rotate-secret"))

    assert response.status_code == 200
    new = response.json()["secret"]
    world.webhook.refresh_from_db()
    assert new != old and new.startswith("whsec_") and world.webhook.secret.reveal() == new
    assert list(response.json()) == ["secret"]


def test_a_webhook_url_can_change_and_is_still_not_read_back(world, api_as):
    url = "https://pager.acme.example/hooks/changed-path-0001"

    response = call(api_as("member"), "PATCH", world.fill("/webhooks/{webhook}"), {"url": url})

    assert response.status_code == 200
    world.webhook.refresh_from_db()
    assert world.webhook.url.reveal() == url and url.encode() not in response.content
    assert response.json()["url_masked"] == "https://pager.acme.example/…0001"


def test_no_response_ever_shows_a_webhook_url(world, api_as):
    Delivery.objects.filter(webhook=world.webhook).update(
        status=Delivery.Status.FAILED, attempts=8, last_status_code=None,
        last_error=f"ConnectError: could not reach {HOOK_URL}",
    )
    client = api_as("owner")
    responses = [call(client, "GET", world.fill(url)) for url in READS]
    responses.append(call(client, "POST", world.fill("/webhooks/{webhook}/test")))
    responses.append(call(client, "PATCH", world.fill("/budgets/{budget}"), {"name": "Renamed"}))

    for response in responses:
        assert response.status_code in (200, 202)
        assert HOOK_URL.encode() not in response.content and b"SECRETPATH" not in response.content
    log = call(client, "GET", world.fill("/webhooks/{webhook}/deliveries")).json()
    assert "ConnectError: could not reach https://hooks.slack.com/…xyz9" in [d["last_error"] for d in log]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": "ftp://files.acme.example/hook"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": ""}, "url"),
        ({"format": "xml"}, "format"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_webhook_input_is_a_400_on_the_field(world, api_as, overrides, field):
    before = snapshot(Webhook)

    response = call(api_as("member"), "POST", "/webhooks", world.fill(webhook_body(**overrides)))

    assert response.status_code == 400
    assert list(response.json()) == [field], response.json()
    assert snapshot(Webhook) == before


def test_a_webhook_url_is_required_on_creation_only(world, api_as):
    missing = call(api_as("member"), "POST", "/webhooks", world.fill({"organization": "{org}", "name": "No URL"}))
    put = call(api_as("member"), "PUT", world.fill("/webhooks/{webhook}"), world.fill({"organization": "{org}", "name": "Same URL"}))

    assert missing.status_code == 400 and list(missing.json()) == ["url"]
    assert put.status_code == 200
    world.webhook.refresh_from_db()
    assert world.webhook.url.reveal() == HOOK_URL and world.webhook.name == "Same URL"


def test_testing_a_webhook_raises_a_test_alert_delivered_to_it(world, api_as, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = call(api_as("member"), "POST", world.fill("/webhooks/{webhook}/test"))

    assert response.status_code == 202, response.content
    alert = Alert.objects.get(uuid=response.json()["alert"])
    assert alert.kind == Alert.Kind.TEST and alert.organization == world.personas.org
    assert "member@a.example" in alert.message
    delivery = alert.deliveries.get()
    assert (delivery.webhook, str(delivery.uuid), delivery.status) == (world.webhook, response.json()["delivery"], "pending")
    assert len(callbacks) == 1  # queued once the request commits


def test_a_disabled_webhook_cannot_be_tested(world, api_as):
    Webhook.objects.filter(pk=world.webhook.pk).update(is_enabled=False)

    response = call(api_as("member"), "POST", world.fill("/webhooks/{webhook}/test"))

    assert response.status_code == 409
    assert not Alert.objects.filter(kind=Alert.Kind.TEST).exists()


def test_a_webhooks_delivery_log_is_its_own_newest_first(world, api_as):
    newer = make_alert(world.personas.org, None, world.webhook, kind=Alert.Kind.TEST, threshold=None, title="Test")
    make_alert(world.personas.org, None, make_webhook(world.personas.org, "Other", "https://x.acme.example/h"),
               kind=Alert.Kind.TEST, threshold=None)

    log = call(api_as("viewer"), "GET", world.fill("/webhooks/{webhook}/deliveries")).json()

    assert [d["alert"] for d in log] == [str(newer.uuid), str(world.alert.uuid)]
    assert log[0]["recipient"] == "Ops channel" and log[0]["channel"] == "webhook"
    assert (log[0]["alert_kind"], log[0]["alert_title"]) == ("test", "Test")
    assert {"status", "attempts", "last_status_code", "last_error", "sent_at"} <= set(log[0])


def test_the_delivery_log_shows_the_last_100(world, api_as):
    alerts = Alert.objects.bulk_create(
        Alert(organization=world.personas.org, kind=Alert.Kind.TEST, title=f"t{i}", message="m") for i in range(105)
    )
    Delivery.objects.bulk_create(Delivery(alert=a, channel=Delivery.Channel.WEBHOOK, webhook=world.webhook) for a in alerts)

    assert len(call(api_as("viewer"), "GET", world.fill("/webhooks/{webhook}/deliveries")).json()) == 100


def test_deleting_a_webhook_keeps_the_history(world, api_as):
    response = call(api_as("member"), "DELETE", world.fill("/webhooks/{webhook}"))

    assert response.status_code == 204
    detail = call(api_as("member"), "GET", world.fill("/alerts/{alert}")).json()
    assert sorted(d["recipient"] for d in detail["deliveries"]) == ["(deleted webhook)", "ops@a.example"]


# ---------------------------------------------------------------------------------------------
# The alert history
# ---------------------------------------------------------------------------------------------
def test_an_alert_reads_with_an_absolute_link_and_its_deliveries(world, api_as):
    data = call(api_as("viewer"), "GET", world.fill("/alerts/{alert}")).json()

    assert data["link"] == f"{settings.SITE_URL}/orgs/{world.personas.org.uuid}/alerts/"
    assert (data["budget"], data["rule"], data["threshold"], data["kind"]) == (
        str(world.budget.uuid), None, 80, "budget.threshold",
    )
    assert [(d["channel"], d["recipient"], d["status"]) for d in data["deliveries"]] == [
        ("email", "ops@a.example", "pending"), ("webhook", "Ops channel", "pending"),
    ]
    assert {"uuid", "attempts", "last_status_code", "last_error", "sent_at"} <= set(data["deliveries"][0])


def test_the_alert_history_filters(world, api_as):
    old = make_alert(world.personas.org, None, kind=Alert.Kind.RULE_FIRING, threshold=None, rule=world.rule,
                     severity="critical", incident=1)
    Alert.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    client = api_as("viewer")

    def uuids(query: str) -> list[str]:
        response = call(client, "GET", f"/alerts?{query}")
        assert response.status_code == 200, response.content
        return [a["uuid"] for a in response.json()["results"]]

    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert uuids("") == [str(world.alert.uuid), str(old.uuid)]
    assert uuids("kind=rule.firing") == [str(old.uuid)]
    assert uuids("severity=critical") == [str(old.uuid)]
    assert uuids(f"budget={world.budget.uuid}") == [str(world.alert.uuid)]
    assert uuids(f"rule={world.rule.uuid}") == [str(old.uuid)]
    assert uuids(f"since={since}") == [str(world.alert.uuid)]
    assert uuids(f"until={since}") == [str(old.uuid)]
    assert uuids(f"budget={world.other_budget.uuid}") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("kind=nope", "kind"), ("severity=loud", "severity"), ("budget=nope", "budget"), ("rule=1", "rule"),
     ("since=yesterday", "since"), ("until=2026-13-45", "until"),
     ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until")],
)
def test_bad_alert_filters_are_a_400_on_the_field(world, api_as, query, field):
    response = call(api_as("viewer"), "GET", f"/alerts?{query}")

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_the_alert_history_is_paginated(world, api_as):
    Alert.objects.bulk_create(
        Alert(organization=world.personas.org, kind=Alert.Kind.TEST, title=f"t{i}", message="m") for i in range(60)
    )

    first = call(api_as("viewer"), "GET", "/alerts").json()

    assert first["count"] == 61 and len(first["results"]) == 50 and first["next"]


def test_the_alert_history_takes_a_fixed_number_of_queries(world, api_as, django_assert_max_num_queries):
    client = api_as("viewer")
    call(client, "GET", "/alerts")  # warm up (session, content types)
    with django_assert_max_num_queries(8) as few:
        call(client, "GET", "/alerts")
    for i in range(20):
        make_alert(world.personas.org, world.budget, world.webhook, threshold=i + 1, rule=world.rule)

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = call(client, "GET", "/alerts")

    assert len(response.json()["results"]) == 21


@pytest.mark.parametrize("url", ["/budgets", "/alert-rules", "/webhooks"])
def test_lists_take_a_fixed_number_of_queries(world, api_as, django_assert_max_num_queries, url):
    client = api_as("viewer")
    with django_assert_max_num_queries(10) as few:
        call(client, "GET", url)
    for i in range(10):
        budget = Budget.objects.create(organization=world.personas.org, name=f"b{i}", amount=Decimal("1"))
        budget.notify_members.add(world.personas.member)
        budget.webhooks.add(world.webhook)
        make_webhook(world.personas.org, f"w{i}", f"https://h{i}.acme.example/x")
        rule = AlertRule.objects.create(organization=world.personas.org, name=f"r{i}", target=world.target,
                                        metric=AlertRule.Metric.TTFT_P95, threshold=1, window_results=5)
        rule.notify_members.add(world.personas.member)

    with django_assert_max_num_queries(len(few.captured_queries)):
        assert call(client, "GET", url).status_code == 200


# ---------------------------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------------------------
def test_the_schema_documents_the_alerts_api(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    for path, methods in {
        "/api/v1/budgets": {"get", "post"},
        "/api/v1/budgets/{uuid}": {"get", "put", "patch", "delete"},
        "/api/v1/budgets/{uuid}/status": {"get"},
        "/api/v1/alert-rules": {"get", "post"},
        "/api/v1/alert-rules/{uuid}": {"get", "put", "patch", "delete"},
        "/api/v1/webhooks": {"get", "post"},
        "/api/v1/webhooks/{uuid}": {"get", "put", "patch", "delete"},
        "/api/v1/webhooks/{uuid}/rotate-secret": {"post"},
        "/api/v1/webhooks/{uuid}/test": {"post"},
        "/api/v1/webhooks/{uuid}/deliveries": {"get"},
        "/api/v1/alerts": {"get"},
        "/api/v1/alerts/{uuid}": {"get"},
    }.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), path
    components = schema["components"]["schemas"]
    assert "url" not in components["Webhook"]["properties"] and "url_masked" in components["Webhook"]["properties"]
    assert "secret" in components["NewWebhook"]["properties"] and "secret" not in components["Webhook"]["properties"]
    assert components["BudgetStatus"]["properties"]["blocked"]["type"] == "boolean"


