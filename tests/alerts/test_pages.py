"""The alerts pages: history, budgets, performance rules, channels, the unsubscribe link, the
settings switch, the bell's badge and the dashboard's budgets card, for every persona.

Everyone in the organization reads; members and up write (MANAGE_ROLE, as in the API); viewers
get 403 on every write; the outsider 404 on every URL of the organization and on every object of
another one. Webhook URLs are credentials: no page shows one, only its masked form."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken, Role
from alerts.models import MANAGE_ROLE, Alert, AlertRule, Budget, Delivery, EmailOptOut, Webhook
from alerts.notify import unsubscribe_token
from benchmarks.models import Model as CatalogModel
from benchmarks.models import Provider, ProviderKind, Target
from costs.ingestion import ingest
from tests.conftest import client_as, make_user

pytestmark = pytest.mark.django_db

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXXtail"
NEW_URL = "https://hooks.example.com/pulse/another-secret-path-9f3e"
MANAGERS = ["owner", "admin", "member"]


# ---------------------------------------------------------------------------------------------
# Fixtures: one of everything in Acme, and in Bravo (the outsider's organization)
# ---------------------------------------------------------------------------------------------
def make_webhook(organization, name="Ops Slack", url=SLACK_URL) -> Webhook:
    webhook = Webhook(organization=organization, name=name, url=url, format=Webhook.Format.SLACK)
    webhook.rotate_secret()
    webhook.save()
    return webhook


def make_target(organization, name="Our vLLM") -> Target:
    return Target.objects.create(organization=organization, name=name, kind=ProviderKind.OPENAI_COMPATIBLE,
                                 base_url="https://vllm.example/v1", model_names=["llama-3-8b", "qwen-2-7b"])


def make_alert(organization, budget=None, **fields) -> Alert:
    defaults = {"kind": Alert.Kind.BUDGET_THRESHOLD, "severity": "warning", "threshold": 80,
                "title": f"Project Production: 80 % of the $10 monthly budget used ({organization.name})",
                "message": "Budget “Prod” has used 85.0 %.", "period_start": timezone.now().replace(day=1)}
    return Alert.objects.create(organization=organization, budget=budget, **(defaults | fields))


@pytest.fixture
def acme(personas):
    org = personas.org
    webhook = make_webhook(org)
    budget = Budget.objects.create(organization=org, project=personas.project, name="Production monthly",
                                   amount=Decimal("10"), thresholds=[50, 80, 100])
    budget.notify_members.add(personas.owner)
    budget.webhooks.add(webhook)
    target = make_target(org)
    rule = AlertRule.objects.create(organization=org, name="Slow first token", target=target,
                                    metric=AlertRule.Metric.TTFT_P95, threshold=800, window_results=20)
    alert = make_alert(org, budget)
    Delivery.objects.create(alert=alert, channel=Delivery.Channel.EMAIL, address="owner@a.example",
                            status=Delivery.Status.SENT, attempts=1, sent_at=timezone.now())
    Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook,
                            status=Delivery.Status.FAILED, attempts=8, last_status_code=500, last_error="HTTP 500: boom")
    return {"budget": budget, "rule": rule, "webhook": webhook, "alert": alert, "target": target}


@pytest.fixture
def bravo(personas):
    org = personas.other_org
    webhook = make_webhook(org, "Bravo hook", "https://hooks.slack.com/services/BRAVO/secret/zzzz")
    budget = Budget.objects.create(organization=org, name="Bravo budget", amount=Decimal("5"))
    rule = AlertRule.objects.create(organization=org, name="Bravo rule", target=make_target(org, "Bravo target"),
                                    metric=AlertRule.Metric.ERROR_RATE, threshold=5, window_minutes=60)
    token, _ = ApiToken.issue(project=personas.other_project, name="bravo token", scopes=["read"], by=personas.outsider)
    return {"budget": budget, "rule": rule, "webhook": webhook, "alert": make_alert(org, budget), "token": token}


def read_urls(org, objects) -> list[str]:
    return [
        reverse("alert_history", args=[org.uuid]),
        reverse("alert_detail", args=[org.uuid, objects["alert"].uuid]),
        reverse("budget_list", args=[org.uuid]),
        reverse("budget_detail", args=[org.uuid, objects["budget"].uuid]),
        reverse("alert_rule_list", args=[org.uuid]),
        reverse("alert_channels", args=[org.uuid]),
    ]


def form_urls(org, objects) -> list[str]:
    """Pages that show a form (GET) and change something (POST)."""
    return [
        reverse("budget_create", args=[org.uuid]),
        reverse("budget_edit", args=[org.uuid, objects["budget"].uuid]),
        reverse("budget_delete", args=[org.uuid, objects["budget"].uuid]),
        reverse("alert_rule_create", args=[org.uuid]),
        reverse("alert_rule_edit", args=[org.uuid, objects["rule"].uuid]),
        reverse("alert_rule_delete", args=[org.uuid, objects["rule"].uuid]),
        reverse("webhook_create", args=[org.uuid]),
        reverse("webhook_edit", args=[org.uuid, objects["webhook"].uuid]),
        reverse("webhook_delete", args=[org.uuid, objects["webhook"].uuid]),
    ]


def action_urls(org, objects) -> list[str]:
    """POST-only buttons."""
    return [
        reverse("alert_email_test", args=[org.uuid]),
        reverse("webhook_test", args=[org.uuid, objects["webhook"].uuid]),
        reverse("webhook_rotate_secret", args=[org.uuid, objects["webhook"].uuid]),
    ]


def nothing_changed(acme) -> bool:
    webhook = Webhook.objects.get(pk=acme["webhook"].pk)
    return (
        Budget.objects.filter(pk=acme["budget"].pk, name="Production monthly").exists()
        and AlertRule.objects.filter(pk=acme["rule"].pk, name="Slow first token").exists()
        and webhook.name == "Ops Slack" and webhook.secret == acme["webhook"].secret
        and not Alert.objects.filter(kind=Alert.Kind.TEST).exists()
    )


def test_pages_need_the_same_role_as_the_api():
    assert MANAGE_ROLE == Role.MEMBER


# ---------------------------------------------------------------------------------------------
# Who sees what
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", ["owner", "admin", "member", "viewer"])
def test_everyone_in_the_organization_reads_every_page(personas, acme, persona):
    client = client_as(personas.user(persona))
    for url in read_urls(personas.org, acme):
        response = client.get(url)
        assert response.status_code == 200, url


def test_managers_get_every_form(personas, acme):
    client = client_as(personas.member)
    for url in form_urls(personas.org, acme):
        assert client.get(url).status_code == 200, url


def test_viewers_get_403_on_every_form_and_every_write(personas, acme):
    client = client_as(personas.viewer)
    for url in form_urls(personas.org, acme):
        assert client.get(url).status_code == 403, url
        assert client.post(url, {"name": "Hacked"}).status_code == 403, url
    for url in action_urls(personas.org, acme):
        assert client.post(url).status_code == 403, url
    assert nothing_changed(acme)


def test_viewers_see_no_management_controls(personas, acme):
    client = client_as(personas.viewer)
    pages = "".join(client.get(url).content.decode() for url in read_urls(personas.org, acme))
    for url in form_urls(personas.org, acme) + action_urls(personas.org, acme):
        assert url not in pages, url
    assert ">Send test<" not in pages and ">Rotate secret<" not in pages and "Send a test to me" not in pages


def test_the_outsider_gets_404_on_every_url_of_the_organization(personas, acme):
    client = client_as(personas.outsider)
    for url in read_urls(personas.org, acme):
        assert client.get(url).status_code == 404, url
    for url in form_urls(personas.org, acme):
        assert client.get(url).status_code == 404, url
        assert client.post(url, {"name": "Hacked"}).status_code == 404, url
    for url in action_urls(personas.org, acme):
        assert client.post(url).status_code == 404, url
    assert nothing_changed(acme)


def test_objects_of_another_organization_are_404_under_ones_own(personas, acme, bravo):
    """Acme's owner names Bravo's objects under Acme's URLs: none of them exists there."""
    client = client_as(personas.owner)
    org = personas.org
    mixed = {"alert": bravo["alert"], "budget": bravo["budget"], "rule": bravo["rule"], "webhook": bravo["webhook"]}
    reads = [u for u in read_urls(org, mixed) if any(str(o.uuid) in u for o in mixed.values())]
    forms = [u for u in form_urls(org, mixed) if any(str(o.uuid) in u for o in mixed.values())]
    assert (len(reads), len(forms)) == (2, 6)
    for url in reads + forms:
        assert client.get(url).status_code == 404, url
    for url in forms:
        assert client.post(url, {"name": "Hacked"}).status_code == 404, url
    for url in action_urls(org, mixed)[1:]:
        assert client.post(url).status_code == 404, url
    assert Budget.objects.get(pk=bravo["budget"].pk).name == "Bravo budget"
    assert Webhook.objects.get(pk=bravo["webhook"].pk).secret == bravo["webhook"].secret


def test_anonymous_visitors_are_sent_to_sign_in(personas, acme):
    client = client_as(None)
    for url in read_urls(personas.org, acme) + form_urls(personas.org, acme) + [reverse("alerts")]:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


# ---------------------------------------------------------------------------------------------
# The bell's page
# ---------------------------------------------------------------------------------------------
def test_alerts_goes_to_the_current_organizations_history(personas):
    response = client_as(personas.viewer).get(reverse("alerts"))
    assert response.status_code == 302 and response["Location"] == reverse("alert_history", args=[personas.org.uuid])


def test_alerts_without_an_organization_is_a_friendly_page():
    loner = make_user("loner@c.example")
    response = client_as(loner).get(reverse("alerts"))
    assert response.status_code == 200
    assert "No alerts yet" in response.content.decode() and reverse("organization_create") in response.content.decode()


# ---------------------------------------------------------------------------------------------
# History and detail
# ---------------------------------------------------------------------------------------------
def test_history_lists_alerts_with_their_deliveries(personas, acme, bravo):
    html = client_as(personas.viewer).get(reverse("alert_history", args=[personas.org.uuid])).content.decode()
    assert html.count('data-testid="alert-row"') == 1
    assert acme["alert"].title in html and bravo["alert"].title not in html
    assert "1 sent · 1 failed" in html and '<span class="badge warn">Warning</span>' in html
    assert reverse("alert_detail", args=[personas.org.uuid, acme["alert"].uuid]) in html


def test_history_filters_and_pages(personas, acme):
    org = personas.org
    other_budget = Budget.objects.create(organization=org, name="Other", amount=Decimal(1))
    for i in range(55):
        Alert.objects.create(organization=org, kind=Alert.Kind.TEST, severity="info", title=f"Test {i}", message="m")
    make_alert(org, other_budget, threshold=50, severity="critical", title="Other budget alert")
    url = reverse("alert_history", args=[org.uuid])
    client = client_as(personas.owner)

    first = client.get(url)
    assert first.context["page"].paginator.count == 57 and len(first.context["page"].object_list) == 50
    assert "Older →" in first.content.decode()
    assert len(client.get(url, {"page": 2}).context["page"].object_list) == 7

    def titles(**params) -> list[str]:
        return [a.title for a in client.get(url, params).context["page"].object_list]

    def count(**params) -> int:
        return client.get(url, params).context["page"].paginator.count

    assert titles(kind="budget.threshold") == ["Other budget alert", acme["alert"].title]
    assert titles(severity="critical") == ["Other budget alert"]
    assert titles(budget=str(acme["budget"].uuid)) == [acme["alert"].title]
    assert titles(rule=str(acme["rule"].uuid)) == []
    today = timezone.now().date()
    assert count(start=str(today), end=str(today)) == 57
    assert titles(start=str(today + timedelta(days=1))) == []
    assert titles(end=str(today - timedelta(days=1))) == []


def test_bad_filters_are_reported_and_ignored_never_a_500(personas, acme, bravo):
    url = reverse("alert_history", args=[personas.org.uuid])
    response = client_as(personas.owner).get(url, {
        "kind": "nonsense", "budget": str(bravo["budget"].uuid), "start": "yesterday", "rule": "not-a-uuid",
    })
    assert response.status_code == 200
    errors = response.context["filter_errors"]
    assert {e.split(":")[0] for e in errors} == {"Kind", "Budget", "From", "Performance rule"}
    assert len(response.context["page"].object_list) == 1  # nothing filtered out
    swapped = client_as(personas.owner).get(url, {"start": "2026-11-20", "end": "2026-11-01"})
    assert swapped.context["filter_errors"] == ["To: The end date is before the start date. This filter was ignored."]


def test_alert_detail_shows_the_message_the_budget_and_the_delivery_log(personas, acme):
    org = personas.org
    html = client_as(personas.viewer).get(reverse("alert_detail", args=[org.uuid, acme["alert"].uuid])).content.decode()
    assert "Budget “Prod” has used 85.0 %." in html
    assert reverse("budget_detail", args=[org.uuid, acme["budget"].uuid]) in html
    assert html.count('data-testid="delivery-row"') == 2
    assert "owner@a.example" in html and "Ops Slack" in html and "HTTP 500: boom" in html and ">500<" in html
    assert SLACK_URL not in html


def test_a_rule_alert_links_to_its_rule_as_far_as_the_role_allows(personas, acme):
    org, rule = personas.org, acme["rule"]
    alert = Alert.objects.create(organization=org, kind=Alert.Kind.RULE_FIRING, rule=rule, incident=1,
                                 severity="critical", title="Our vLLM: Slow first token is firing", message="m")
    url = reverse("alert_detail", args=[org.uuid, alert.uuid])
    edit = reverse("alert_rule_edit", args=[org.uuid, rule.uuid])
    viewer = client_as(personas.viewer).get(url).content.decode()
    assert edit not in viewer and reverse("alert_rule_list", args=[org.uuid]) in viewer
    assert rule.condition_label() in viewer and '<span class="badge bad">Critical</span>' in viewer
    assert edit in client_as(personas.member).get(url).content.decode()


def test_an_alert_outlives_its_budget(personas, acme):
    org = personas.org
    acme["alert"].data = {"budget_name": "Production monthly"}
    acme["alert"].save()
    client_as(personas.owner).post(reverse("budget_delete", args=[org.uuid, acme["budget"].uuid]))
    html = client_as(personas.owner).get(reverse("alert_detail", args=[org.uuid, acme["alert"].uuid])).content.decode()
    assert "Production monthly (deleted)" in html


# ---------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------
def budget_data(personas, **overrides) -> dict:
    return {
        "name": "Team budget", "scope": f"project:{personas.project.uuid}", "model": "", "tag_key": "",
        "tag_value": "", "amount": "10", "currency": "USD", "period": "month", "thresholds": "50, 80, 100",
        "enforcement": "soft", "forecast_alerts": "on", "notify_members": [str(personas.owner.pk)],
        "extra_emails": "ops@a.example\nfinance@a.example, cto@a.example", "is_enabled": "on",
    } | overrides


def spend(personas, usd: str, project=None) -> None:
    result = ingest(project or personas.project, [{
        "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 10,
        "cost_usd": usd, "timestamp": timezone.now().isoformat(),
    }])
    assert not result.errors


def test_the_budget_form_offers_this_organizations_scopes_and_members_and_the_creator_by_default(personas, acme, bravo):
    ApiToken.issue(project=personas.project, name="backend", scopes=["ingest"], by=personas.owner)
    response = client_as(personas.member).get(reverse("budget_create", args=[personas.org.uuid]))
    html = response.content.decode()
    assert f'value="project:{personas.project.uuid}"' in html and "backend (pk_live_" in html
    assert str(bravo["token"].uuid) not in html and "Bravo prod" not in html
    members = response.context["form"].fields["notify_members"]
    assert {u.email for u in members.queryset} == {"owner@a.example", "admin@a.example", "member@a.example", "viewer@a.example"}
    assert response.context["form"].initial["notify_members"] == [personas.member.pk]
    assert f'value="{personas.member.pk}" id="id_notify_members_1" checked>member@a.example' in html
    assert "Ops Slack" in html and SLACK_URL not in html


@pytest.mark.parametrize("persona", MANAGERS)
def test_managers_create_a_budget(personas, acme, persona):
    client = client_as(personas.user(persona))
    response = client.post(reverse("budget_create", args=[personas.org.uuid]),
                           budget_data(personas, webhooks=[str(acme["webhook"].pk)]), follow=True)
    assert response.redirect_chain == [(reverse("budget_list", args=[personas.org.uuid]), 302)]
    budget = Budget.objects.get(name="Team budget")
    assert (budget.organization, budget.project, budget.api_token, budget.amount, budget.period) == (
        personas.org, personas.project, None, Decimal("10.00"), "month")
    assert budget.thresholds == [50, 80, 100] and budget.created_by == personas.user(persona)
    assert budget.extra_emails == ["ops@a.example", "finance@a.example", "cto@a.example"]
    assert list(budget.notify_members.all()) == [personas.owner] and list(budget.webhooks.all()) == [acme["webhook"]]
    assert "Budget “Team budget” created." in response.content.decode()


def test_a_budget_on_a_token_the_organization_and_a_tag(personas):
    token, _ = ApiToken.issue(project=personas.project, name="backend", scopes=["ingest"], by=personas.owner)
    client = client_as(personas.owner)
    url = reverse("budget_create", args=[personas.org.uuid])
    assert client.post(url, budget_data(personas, name="T", scope=f"token:{token.uuid}", currency="GBP")).status_code == 302
    assert client.post(url, budget_data(personas, name="O", scope="organization", tag_key="feature",
                                        tag_value="chat", model="gpt-4o", thresholds="100 120, 90%")).status_code == 302
    by_token, org_wide = Budget.objects.get(name="T"), Budget.objects.get(name="O")
    assert (by_token.api_token, by_token.project, by_token.currency) == (token, None, "GBP")
    assert (org_wide.project, org_wide.api_token, org_wide.tag_key, org_wide.tag_value) == (None, None, "feature", "chat")
    assert org_wide.thresholds == [90, 100, 120] and org_wide.model == "gpt-4o"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"thresholds": "50, abc"}, "thresholds", "Not a whole percentage: abc."),
        ({"thresholds": ""}, "thresholds", "This field is required."),
        ({"thresholds": "0, 50"}, "thresholds", "Each threshold is a whole percentage from 1 to 1000."),
        ({"thresholds": "50, 50"}, "thresholds", "Each threshold once."),
        ({"extra_emails": "ops@a.example, nope"}, "extra_emails", "'nope' is not an email address."),
        ({"amount": "0"}, "amount", "greater than or equal to 0.01"),
        ({"amount": "lots"}, "amount", "Enter a number."),
        ({"currency": "JPY"}, "currency", "Select a valid choice."),
        ({"period": "year"}, "period", "Select a valid choice."),
        ({"scope": "project:00000000-0000-0000-0000-000000000000"}, "scope", "Select a valid choice."),
        ({"tag_key": "feature"}, "tag_value", "A tag filter needs both a key and a value."),
        ({"tag_value": "chat"}, "tag_key", "A tag filter needs both a key and a value."),
        ({"tag_key": "customer", "tag_value": "x"}, "tag_key", "Select a valid choice."),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_bad_budget_input_comes_back_on_its_field(personas, overrides, field, message):
    response = client_as(personas.member).post(reverse("budget_create", args=[personas.org.uuid]),
                                               budget_data(personas, **overrides))
    assert response.status_code == 400
    form = response.context["form"]
    assert list(form.errors) == [field], form.errors
    assert message in " ".join(form.errors[field])
    assert not Budget.objects.exists()


def test_a_project_token_or_member_of_another_organization_is_refused(personas, bravo):
    url = reverse("budget_create", args=[personas.org.uuid])
    client = client_as(personas.owner)
    token = client.post(url, budget_data(personas, scope=f"token:{bravo['token'].uuid}"))
    assert token.status_code == 400 and list(token.context["form"].errors) == ["scope"]
    project = client.post(url, budget_data(personas, scope=f"project:{personas.other_project.uuid}"))
    assert project.status_code == 400 and list(project.context["form"].errors) == ["scope"]
    stranger = client.post(url, budget_data(personas, notify_members=[str(personas.outsider.pk)]))
    assert stranger.status_code == 400 and list(stranger.context["form"].errors) == ["notify_members"]
    hook = client.post(url, budget_data(personas, webhooks=[str(bravo["webhook"].pk)]))
    assert hook.status_code == 400 and list(hook.context["form"].errors) == ["webhooks"]
    assert not Budget.objects.filter(organization=personas.org).exists()


def test_editing_a_budget(personas, acme):
    budget = acme["budget"]
    url = reverse("budget_edit", args=[personas.org.uuid, budget.uuid])
    client = client_as(personas.member)
    form_html = client.get(url).content.decode()
    assert 'value="Production monthly"' in form_html and 'value="50, 80, 100"' in form_html
    assert f'value="project:{personas.project.uuid}" selected' in form_html
    response = client.post(url, budget_data(personas, name="Renamed", amount="25.50", thresholds="75, 100",
                                            scope="organization", enforcement="hard", extra_emails=""))
    assert response.status_code == 302 and response["Location"] == reverse("budget_detail", args=[personas.org.uuid, budget.uuid])
    budget.refresh_from_db()
    assert (budget.name, budget.amount, budget.thresholds, budget.project, budget.enforcement) == (
        "Renamed", Decimal("25.50"), [75, 100], None, "hard")
    assert budget.extra_emails == [] and list(budget.webhooks.all()) == []


def test_deleting_a_budget_asks_first_and_keeps_its_alerts(personas, acme):
    url = reverse("budget_delete", args=[personas.org.uuid, acme["budget"].uuid])
    client = client_as(personas.member)
    confirm = client.get(url).content.decode()
    assert "Delete Production monthly?" in confirm and "Its 1 alert stay" in confirm
    assert Budget.objects.filter(pk=acme["budget"].pk).exists()
    assert client.post(url).status_code == 302
    assert not Budget.objects.filter(pk=acme["budget"].pk).exists()
    assert Alert.objects.filter(pk=acme["alert"].pk, budget=None).exists()


def test_the_budgets_page_shows_progress_forecast_and_badges(personas, acme):
    budget = acme["budget"]
    spend(personas, "6.50")
    Budget.objects.create(organization=personas.org, name="Hard cap", amount=Decimal("5"), enforcement="hard",
                          thresholds=[50, 150])
    response = client_as(personas.viewer).get(reverse("budget_list", args=[personas.org.uuid]))
    html = response.content.decode()
    meters = {m.budget.name: m for m in response.context["meters"]}
    prod, cap = meters[budget.name], meters["Hard cap"]
    assert prod.percent == Decimal("65.0") and prod.level == "warn" and prod.fill == Decimal("65.00")
    assert [(t.threshold, t.position, t.crossed) for t in prod.ticks] == [
        (50, Decimal("50.00"), True), (80, Decimal("80.00"), False), (100, Decimal("100.00"), False)]
    # The hard cap covers the whole organization: $6.50 of $5 is 130 %, drawn on a 150 % scale.
    assert cap.status.blocked and cap.level == "bad" and cap.fill == Decimal("86.67")
    assert 'data-testid="blocked"' in html and ">hard<" in html and ">soft<" in html
    assert 'data-percent="65.0"' in html and 'width="65.00%"' in html and "$6.50</strong> of $10" in html
    assert "Project Production · Monthly ·" in html and "Organization Acme · Monthly" in html
    assert 'style="' not in html  # CSP: no inline styles, the bar is an SVG with attributes


def test_the_budget_detail_shows_the_budgets_alerts_and_recipients(personas, acme):
    acme["budget"].extra_emails = ["ops@a.example"]
    acme["budget"].save()
    html = client_as(personas.viewer).get(reverse("budget_detail", args=[personas.org.uuid, acme["budget"].uuid])).content.decode()
    assert html.count('data-testid="alert-row"') == 1 and acme["alert"].title in html
    assert "owner@a.example, ops@a.example" in html and "Ops Slack" in html and SLACK_URL not in html
    assert 'data-testid="budget-bar"' in html


def test_a_gbp_budget_is_shown_in_pounds(personas):
    Budget.objects.create(organization=personas.org, name="Pounds", amount=Decimal("100"), currency="GBP")
    spend(personas, "10")
    html = client_as(personas.owner).get(reverse("budget_list", args=[personas.org.uuid])).content.decode()
    assert "£7.60</strong> of £100" in html  # the fallback rate, 0.76 GBP per USD
    assert "Spend converted to GBP at the rate of 2 Nov 2026." in html


# ---------------------------------------------------------------------------------------------
# Performance rules
# ---------------------------------------------------------------------------------------------
def rule_data(target, **overrides) -> dict:
    return {
        "name": "Slow first token", "subject": f"target:{target.uuid}:llama-3-8b", "metric": "ttft_p95_ms",
        "threshold": "900", "window_kind": "results", "window_size": "20", "min_results": "5",
        "notify_members": [], "extra_emails": "oncall@a.example", "is_enabled": "on",
    } | overrides


@pytest.mark.parametrize("persona", MANAGERS)
def test_managers_create_edit_and_delete_a_rule(personas, acme, persona):
    target = acme["target"]
    client = client_as(personas.user(persona))
    org = personas.org
    response = client.post(reverse("alert_rule_create", args=[org.uuid]), rule_data(target, name="New rule"))
    assert response.status_code == 302
    rule = AlertRule.objects.get(name="New rule")
    assert (rule.target, rule.model_name, rule.catalog_model, rule.window_results, rule.window_minutes) == (
        target, "llama-3-8b", None, 20, None)
    assert rule.extra_emails == ["oncall@a.example"] and rule.created_by == personas.user(persona)

    provider = Provider.objects.create(name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://a.example/v1")
    model = CatalogModel.objects.create(provider=provider, name="acme-large", is_active=True)
    edit = reverse("alert_rule_edit", args=[org.uuid, rule.uuid])
    assert f'value="target:{target.uuid}:llama-3-8b" selected' in client.get(edit).content.decode()
    response = client.post(edit, rule_data(target, name="New rule", subject=f"model:{model.uuid}", window_kind="minutes",
                                           window_size="60", metric="tps_median", threshold="20", min_results="3"))
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.target, rule.catalog_model, rule.model_name, rule.window_results, rule.window_minutes) == (
        None, model, "", None, 60)

    delete = reverse("alert_rule_delete", args=[org.uuid, rule.uuid])
    assert "Delete New rule?" in client.get(delete).content.decode()
    assert client.post(delete).status_code == 302 and not AlertRule.objects.filter(pk=rule.pk).exists()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"subject": ""}, "subject", "This field is required."),
        ({"subject": "target:00000000-0000-0000-0000-000000000000"}, "subject", "Select a valid choice."),
        ({"window_kind": "minutes", "window_size": "3"}, "window_size", "greater than or equal to 5"),
        ({"window_size": "5000"}, "window_size", "less than or equal to 1000"),
        ({"window_size": "many"}, "window_size", "Enter a whole number."),
        ({"min_results": "50"}, "min_results", "Cannot need more results than the window holds."),
        ({"metric": "error_rate_pct", "threshold": "150"}, "threshold", "An error rate is a percentage from 0 to 100."),
        ({"threshold": "-1"}, "threshold", "greater than or equal to 0"),
        ({"extra_emails": "nope"}, "extra_emails", "'nope' is not an email address."),
    ],
)
def test_bad_rule_input_comes_back_on_its_field(personas, acme, overrides, field, message):
    response = client_as(personas.member).post(reverse("alert_rule_create", args=[personas.org.uuid]),
                                               rule_data(acme["target"], name="Bad", **overrides))
    assert response.status_code == 400
    form = response.context["form"]
    assert list(form.errors) == [field], form.errors
    assert message in " ".join(form.errors[field])
    assert not AlertRule.objects.filter(name="Bad").exists()


def test_a_target_of_another_organization_cannot_be_watched(personas, bravo):
    target = bravo["rule"].target
    response = client_as(personas.owner).post(reverse("alert_rule_create", args=[personas.org.uuid]), rule_data(target))
    assert response.status_code == 400 and list(response.context["form"].errors) == ["subject"]
    assert "Bravo target" not in client_as(personas.owner).get(
        reverse("alert_rule_create", args=[personas.org.uuid])).content.decode()


def test_the_rules_page_shows_state_value_and_condition(personas, acme):
    rule = acme["rule"]
    rule.state, rule.last_value, rule.last_sample_size, rule.incident_count = "firing", 1234.4, 20, 3
    rule.last_evaluated_at = timezone.now()
    rule.save()
    html = client_as(personas.viewer).get(reverse("alert_rule_list", args=[personas.org.uuid])).content.decode()
    assert '<span class="badge bad">firing</span>' in html and "1,234 ms" in html and "20 results" in html
    assert "p95 time to first token (ms) above 800 over the last 20 results" in html
    assert "Our vLLM" in html and ">3<" in html


# ---------------------------------------------------------------------------------------------
# Channels: webhooks (URLs never shown, secrets shown once) and test sends
# ---------------------------------------------------------------------------------------------
def test_no_page_shows_a_webhook_url(personas, acme):
    org, webhook = personas.org, acme["webhook"]
    client = client_as(personas.owner)
    urls = read_urls(org, acme) + [u for u in form_urls(org, acme) if "/rules/" not in u or "/new/" in u]
    for url in urls:
        html = client.get(url).content.decode()
        assert SLACK_URL not in html and "XXXXsecretXXXX" not in html, url
    channels = client.get(reverse("alert_channels", args=[org.uuid])).content.decode()
    assert webhook.masked_url == "https://hooks.slack.com/…tail" and webhook.masked_url in channels
    # Nor a typed one, when the form comes back with errors.
    bad = client.post(reverse("webhook_create", args=[org.uuid]), {"name": "", "new_url": NEW_URL, "format": "json"})
    assert bad.status_code == 400 and NEW_URL not in bad.content.decode()


@pytest.mark.parametrize("persona", MANAGERS)
def test_managers_add_a_webhook_and_see_its_secret_once(personas, persona):
    client = client_as(personas.user(persona))
    org = personas.org
    response = client.post(reverse("webhook_create", args=[org.uuid]),
                           {"name": "Receiver", "new_url": NEW_URL, "format": "json", "is_enabled": "on"}, follow=True)
    # Shown in the response to the POST itself, like a new API token: never stored in clear.
    assert response.redirect_chain == [] and response.status_code == 200
    assert not any("secret" in str(value) for value in client.session.values())
    webhook = Webhook.objects.get(name="Receiver")
    assert webhook.url.reveal() == NEW_URL and webhook.created_by == personas.user(persona)
    secret = response.context["new_secret"]["secret"]
    html = response.content.decode()
    assert secret.startswith("whsec_") and webhook.secret.reveal() == secret and secret in html
    assert "Pulse-Signature: t=&lt;unix seconds&gt;,v1=&lt;hex&gt;" in html and "no-store" in response["Cache-Control"]
    assert NEW_URL not in html
    again = client.get(reverse("alert_channels", args=[org.uuid])).content.decode()
    assert secret not in again and 'data-testid="new-secret"' not in again


def test_a_url_is_required_and_checked(personas):
    url = reverse("webhook_create", args=[personas.org.uuid])
    client = client_as(personas.member)
    missing = client.post(url, {"name": "x", "new_url": "", "format": "json"})
    assert missing.status_code == 400 and missing.context["form"].errors == {"new_url": ["This field is required."]}
    ftp = client.post(url, {"name": "x", "new_url": "ftp://files.example/hook", "format": "json"})
    assert ftp.status_code == 400 and list(ftp.context["form"].errors) == ["new_url"]
    fmt = client.post(url, {"name": "x", "new_url": NEW_URL, "format": "xml"})
    assert fmt.status_code == 400 and list(fmt.context["form"].errors) == ["format"]
    assert not Webhook.objects.exists()


def test_editing_a_webhook_keeps_or_replaces_the_url(personas, acme):
    webhook = acme["webhook"]
    url = reverse("webhook_edit", args=[personas.org.uuid, webhook.uuid])
    client = client_as(personas.member)
    form = client.get(url).content.decode()
    assert 'value="Ops Slack"' in form and SLACK_URL not in form and webhook.masked_url in form
    assert client.post(url, {"name": "Renamed", "new_url": "", "format": "slack"}).status_code == 302
    webhook.refresh_from_db()
    assert (webhook.name, webhook.url.reveal(), webhook.is_enabled) == ("Renamed", SLACK_URL, False)
    assert client.post(url, {"name": "Renamed", "new_url": NEW_URL, "format": "json", "is_enabled": "on"}).status_code == 302
    webhook.refresh_from_db()
    assert (webhook.url.reveal(), webhook.format, webhook.is_enabled) == (NEW_URL, "json", True)


def test_rotating_a_secret_shows_the_new_one_once(personas, acme):
    webhook = acme["webhook"]
    old = webhook.secret.reveal()
    client = client_as(personas.member)
    response = client.post(reverse("webhook_rotate_secret", args=[personas.org.uuid, webhook.uuid]), follow=True)
    webhook.refresh_from_db()
    new = webhook.secret.reveal()
    assert new != old and new in response.content.decode() and old not in response.content.decode()
    assert "The old secret no longer verifies." in response.content.decode()
    assert new not in client.get(reverse("alert_channels", args=[personas.org.uuid])).content.decode()


def test_deleting_a_webhook(personas, acme):
    url = reverse("webhook_delete", args=[personas.org.uuid, acme["webhook"].uuid])
    client = client_as(personas.member)
    confirm = client.get(url).content.decode()
    assert "Delete Ops Slack?" in confirm and "1 budget or rule posts to it" in confirm and SLACK_URL not in confirm
    assert client.post(url).status_code == 302
    assert not Webhook.objects.filter(pk=acme["webhook"].pk).exists()
    assert list(acme["budget"].webhooks.all()) == []
    assert Delivery.objects.filter(channel="webhook", webhook=None).count() == 1  # the log stays


def test_send_test_to_a_webhook_and_to_oneself(personas, acme):
    org = personas.org
    client = client_as(personas.member)
    response = client.post(reverse("webhook_test", args=[org.uuid, acme["webhook"].uuid]), follow=True)
    assert "A test alert is on its way to “Ops Slack”" in response.content.decode()
    delivery = Delivery.objects.get(alert__kind=Alert.Kind.TEST, channel="webhook")
    assert delivery.webhook == acme["webhook"] and delivery.status == "pending"
    assert "member@a.example sent this test" in delivery.alert.message

    response = client.post(reverse("alert_email_test", args=[org.uuid]), follow=True)
    assert "A test alert is on its way to member@a.example" in response.content.decode()
    assert Delivery.objects.get(alert__kind=Alert.Kind.TEST, channel="email").address == "member@a.example"
    assert 'data-testid="email-delivery"' in response.content.decode()


def test_a_disabled_webhook_gets_no_test(personas, acme):
    acme["webhook"].is_enabled = False
    acme["webhook"].save()
    response = client_as(personas.owner).post(
        reverse("webhook_test", args=[personas.org.uuid, acme["webhook"].uuid]), follow=True)
    assert "is disabled; enable it" in response.content.decode()
    assert not Alert.objects.filter(kind=Alert.Kind.TEST).exists()


def test_testing_oneself_after_opting_out_says_it_will_be_skipped(personas, acme):
    EmailOptOut.set(personas.member.email, opted_out=True)
    response = client_as(personas.member).post(reverse("alert_email_test", args=[personas.org.uuid]), follow=True)
    assert "you turned alert emails off" in response.content.decode()


def test_writes_are_post_only(personas, acme):
    client = client_as(personas.owner)
    for url in action_urls(personas.org, acme):
        assert client.get(url).status_code == 405, url


# ---------------------------------------------------------------------------------------------
# Unsubscribe (no sign-in; the signed token is the permission)
# ---------------------------------------------------------------------------------------------
def test_unsubscribe_asks_on_get_and_acts_on_post_and_can_be_undone(personas):
    url = reverse("alert_unsubscribe", args=[unsubscribe_token("Ops@A.example")])
    client = Client(enforce_csrf_checks=True)
    ask = client.get(url)
    assert ask.status_code == 200 and "Stop alert emails?" in ask.content.decode()
    assert not EmailOptOut.objects.exists()  # a mail scanner following the link changes nothing

    done = client.post(url)
    assert done.status_code == 200
    assert "You will get no more alert emails at <strong>ops@a.example</strong>" in done.content.decode()
    assert EmailOptOut.opted_out(["ops@a.example"]) == {"ops@a.example"}
    assert "Already unsubscribed" in client.get(url).content.decode()

    back = client.post(url, {"resubscribe": "1"})
    assert "Alert emails will reach <strong>ops@a.example</strong> again." in back.content.decode()
    assert not EmailOptOut.objects.exists()


def test_one_click_unsubscribe_without_csrf_token(personas):
    """RFC 8058: the mail provider POSTs List-Unsubscribe=One-Click, with no cookie or token."""
    url = reverse("alert_unsubscribe", args=[unsubscribe_token("owner@a.example")])
    response = Client(enforce_csrf_checks=True).post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert EmailOptOut.opted_out(["owner@a.example"]) == {"owner@a.example"}


@pytest.mark.parametrize("token", ["nonsense", unsubscribe_token("x@a.example")[:-3] + "abc"])
def test_a_bad_unsubscribe_token_is_404(personas, token):
    client = Client(enforce_csrf_checks=True)
    url = reverse("alert_unsubscribe", args=[token])
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 404 and "not valid" in response.content.decode()
    assert not EmailOptOut.objects.exists()


def test_a_token_made_for_something_else_does_not_unsubscribe(personas):
    from django.core import signing

    forged = signing.dumps("owner@a.example", salt="another.purpose", compress=True)
    assert Client().post(reverse("alert_unsubscribe", args=[forged])).status_code == 404


# ---------------------------------------------------------------------------------------------
# Account settings: "Email me alerts"
# ---------------------------------------------------------------------------------------------
def test_the_settings_switch_reads_and_writes_the_opt_out(personas):
    client = client_as(personas.member)
    url = reverse("account_settings")
    assert 'id="id_email_alerts" checked' in client.get(url).content.decode()
    data = {"first_name": "Mia", "last_name": "Member", "display_currency": "USD"}
    assert client.post(url, data).status_code == 302
    assert EmailOptOut.opted_out(["member@a.example"]) == {"member@a.example"}
    assert 'id="id_email_alerts" checked' not in client.get(url).content.decode()
    assert client.post(url, data | {"email_alerts": "on"}).status_code == 302
    assert not EmailOptOut.objects.exists()


def test_unsubscribing_by_link_shows_in_the_settings(personas):
    Client().post(reverse("alert_unsubscribe", args=[unsubscribe_token("member@a.example")]))
    html = client_as(personas.member).get(reverse("account_settings")).content.decode()
    assert 'id="id_email_alerts"' in html and 'id="id_email_alerts" checked' not in html


# ---------------------------------------------------------------------------------------------
# The bell's badge
# ---------------------------------------------------------------------------------------------
def bell(client, url: str) -> str:
    html = client.get(url).content.decode()
    start = html.index('data-testid="bell"')
    return html[html.rindex("<a", 0, start):html.index("</a>", start)]


def test_the_bell_counts_unread_alerts_until_the_history_is_opened(personas, acme, bravo):
    client = client_as(personas.viewer)
    dashboard = reverse("project_dashboard", args=[personas.project.uuid])
    badge = bell(client, dashboard)
    assert 'aria-label="Alerts, 1 unread"' in badge and 'data-testid="bell-count">1<' in badge  # Bravo's not counted
    make_alert(personas.org, None, kind=Alert.Kind.TEST, threshold=None, period_start=None, title="t")
    assert 'aria-label="Alerts, 2 unread"' in bell(client, dashboard)

    history = bell(client, reverse("alert_history", args=[personas.org.uuid]))
    assert 'aria-label="Alerts"' in history and "bell-count" not in history
    personas.viewer.refresh_from_db()
    assert personas.viewer.alerts_seen_at is not None
    assert "bell-count" not in bell(client, dashboard)
    make_alert(personas.org, None, kind=Alert.Kind.TEST, threshold=None, period_start=None, title="new")
    assert 'aria-label="Alerts, 1 unread"' in bell(client, dashboard)
    # Opening the history is per person: the owner still has all three unread.
    assert 'aria-label="Alerts, 3 unread"' in bell(client_as(personas.owner), dashboard)


def test_the_badge_stops_at_99(personas):
    Alert.objects.bulk_create(
        Alert(organization=personas.org, kind=Alert.Kind.TEST, title=f"t{i}", message="m") for i in range(120)
    )
    badge = bell(client_as(personas.owner), reverse("account_settings"))
    assert 'aria-label="Alerts, 99+ unread"' in badge and ">99+<" in badge


def test_the_badge_is_one_query(personas, acme, django_assert_max_num_queries):
    from django.template import Context, Template
    from django.test import RequestFactory

    from alerts.context_processors import unread_alerts

    request = RequestFactory().get("/")
    request.user = personas.owner
    context = unread_alerts(request)
    with django_assert_max_num_queries(1):
        Template("{{ u.count }}{{ u.badge }}{{ u.label }}").render(Context({"u": context["unread_alerts"]}))


# ---------------------------------------------------------------------------------------------
# The dashboard's budgets card
# ---------------------------------------------------------------------------------------------
def test_the_dashboard_shows_the_budgets_covering_the_project(personas, acme, bravo):
    spend(personas, "8.50")
    Budget.objects.create(organization=personas.org, name="Whole org", amount=Decimal("100"))
    other_project = personas.org.projects.create(name="Staging")
    Budget.objects.create(organization=personas.org, project=other_project, name="Staging only", amount=Decimal("1"))
    response = client_as(personas.viewer).get(reverse("project_dashboard", args=[personas.project.uuid]))
    html = response.content.decode()
    card = html[html.index('data-testid="budgets"'):]
    assert [m.budget.name for m in response.context["budget_meters"]] == ["Production monthly", "Whole org"]
    assert "Production monthly" in card and "85.0 %" in card and "$8.50</strong> of $10" in card
    assert "Whole org" in card and "8.5 %" in card and "Staging only" not in card and "Bravo" not in card
    assert card.count('data-testid="budget-bar"') == 2


def test_the_dashboards_empty_budgets_card_links_to_a_new_budget(personas):
    url = reverse("project_dashboard", args=[personas.project.uuid])
    create = reverse("budget_create", args=[personas.org.uuid])
    member = client_as(personas.member).get(url).content.decode()
    assert "No budget covers Production yet" in member and f"{create}?scope=project:{personas.project.uuid}" in member
    assert create not in client_as(personas.viewer).get(url).content.decode()
    form = client_as(personas.member).get(create, {"scope": f"project:{personas.project.uuid}"}).content.decode()
    assert f'value="project:{personas.project.uuid}" selected' in form


def test_the_dashboard_reads_budgets_in_a_few_queries(personas, acme, django_assert_max_num_queries):
    """Each budget costs its two spend sums; the exchange rates are read once for the page."""
    client = client_as(personas.owner)
    url = reverse("project_dashboard", args=[personas.project.uuid])
    client.get(url)
    with django_assert_max_num_queries(60) as one:
        client.get(url)
    for i in range(5):
        Budget.objects.create(organization=personas.org, project=personas.project, name=f"b{i}", amount=Decimal(1))
    with django_assert_max_num_queries(len(one.captured_queries) + 5 * 2) as six:
        client.get(url)
    rates = [q for q in six.captured_queries if "costs_exchangerate" in q["sql"]]
    assert len(rates) == 1
