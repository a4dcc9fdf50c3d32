"""Budgets and alerts pages: the alert history, budgets, performance rules and channels
(webhooks, test sends), and the unsubscribe link of alert emails.

Tenant data goes through `organization_for()` and `visible_to()` (404 for outsiders, 403 for too
weak a role). Everyone in the organization reads; writing needs `MANAGE_ROLE`, the role the API
needs too."""

from __future__ import annotations

import json
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Organization
from accounts.tenancy import current_project, organization_for
from costs.display import MoneyDisplay

from .display import BudgetMeter, with_delivery_counts
from .forms import AlertFilterForm, AlertRuleForm, BudgetForm, WebhookForm
from .models import MANAGE_ROLE, Alert, AlertRule, Budget, Delivery, EmailOptOut, Webhook
from .notify import address_of_unsubscribe_token, send_test_alert

PAGE_SIZE = 50
RECENT_DELIVERIES = 20

def _context(request: HttpRequest, organization: Organization, tab: str, **extra: object) -> dict:
    return {"organization": organization, "tab": tab, "can_manage": request.role >= MANAGE_ROLE, **extra}


def _form_response(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    # A form with errors comes back as 400, so scripts and tests can tell it from a fresh form.
    form = context["form"]
    return render(request, template, context, status=400 if form.is_bound and form.errors else 200)


# ---------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET"])
def alerts_home(request: HttpRequest) -> HttpResponse:
    """The bell: the alert history of the organization the person is working in."""
    project = current_project(request)
    if project is None:
        return render(request, "alerts/no_organization.html")
    return redirect("alert_history", project.organization.uuid)


@login_required
@require_http_methods(["GET"])
def alert_history(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    form = AlertFilterForm(request.GET, organization=organization, user=request.user)
    alerts = form.apply(Alert.objects.visible_to(request.user).filter(organization=organization))
    alerts = with_delivery_counts(alerts.select_related("budget", "rule")).order_by("-created_at", "-id")
    page = Paginator(alerts, PAGE_SIZE).get_page(request.GET.get("page"))
    # Opening the history reads the alerts: the bell's badge starts counting again from now.
    request.user.alerts_seen_at = timezone.now()
    request.user.save(update_fields=["alerts_seen_at"])
    return render(request, "alerts/history.html", _context(
        request, organization, "history", form=form, filter_errors=form.error_messages(), page=page,
    ))


@login_required
@require_http_methods(["GET"])
def alert_detail(request: HttpRequest, organization_uuid: UUID, alert_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    alert = get_object_or_404(
        Alert.objects.visible_to(request.user).filter(organization=organization).select_related("budget", "rule"),
        uuid=alert_uuid,
    )
    deliveries = alert.deliveries.select_related("webhook").order_by("created_at", "id")
    return render(request, "alerts/alert_detail.html", _context(
        request, organization, "history", alert=alert, deliveries=deliveries,
        data_json=json.dumps(alert.data, indent=2, sort_keys=True, ensure_ascii=False),
    ))


# ---------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------
def _budgets(request: HttpRequest, organization: Organization):
    return Budget.objects.visible_to(request.user).filter(organization=organization).select_related(
        "organization", "project", "api_token"
    )


def _managed_budget(request: HttpRequest, organization_uuid: UUID, budget_uuid: UUID) -> Budget:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    return get_object_or_404(_budgets(request, organization), uuid=budget_uuid)


@login_required
@require_http_methods(["GET"])
def budget_list(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    meters = BudgetMeter.for_budgets(_budgets(request, organization), rates=MoneyDisplay.for_request(request).rates)
    return render(request, "alerts/budgets.html", _context(request, organization, "budgets", meters=meters))


@login_required
@require_http_methods(["GET"])
def budget_detail(request: HttpRequest, organization_uuid: UUID, budget_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    budget = get_object_or_404(
        _budgets(request, organization).prefetch_related("notify_members", "webhooks"), uuid=budget_uuid
    )
    [meter] = BudgetMeter.for_budgets([budget], rates=MoneyDisplay.for_request(request).rates)
    alerts = with_delivery_counts(budget.alerts.order_by("-created_at", "-id"))[:PAGE_SIZE]
    return render(request, "alerts/budget_detail.html", _context(
        request, organization, "budgets", budget=budget, meter=meter, alerts=alerts,
    ))


@login_required
@require_http_methods(["GET", "POST"])
def budget_create(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    # ?scope=project:<uuid> preselects the scope (the dashboard's "Set a budget" link).
    initial = {"scope": request.GET["scope"]} if "scope" in request.GET else None
    form = BudgetForm(request.POST or None, initial=initial, organization=organization, user=request.user)
    if request.method == "POST" and form.is_valid():
        # One transaction: the evaluation queued when the budget is saved (alerts/signals.py) runs
        # after commit, so it sees the recipients too.
        with transaction.atomic():
            budget = form.save(commit=False)
            budget.created_by = request.user
            budget.save()
            form.save_m2m()
        messages.success(request, f"Budget “{budget.name}” created.")
        return redirect("budget_list", organization.uuid)
    return _form_response(request, "alerts/budget_form.html", _context(request, organization, "budgets", form=form))


@login_required
@require_http_methods(["GET", "POST"])
def budget_edit(request: HttpRequest, organization_uuid: UUID, budget_uuid: UUID) -> HttpResponse:
    budget = _managed_budget(request, organization_uuid, budget_uuid)
    form = BudgetForm(request.POST or None, instance=budget, organization=budget.organization, user=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
        messages.success(request, f"Budget “{budget.name}” saved.")
        return redirect("budget_detail", budget.organization.uuid, budget.uuid)
    return _form_response(request, "alerts/budget_form.html", _context(
        request, budget.organization, "budgets", form=form, budget=budget,
    ))


@login_required
@require_http_methods(["GET", "POST"])
def budget_delete(request: HttpRequest, organization_uuid: UUID, budget_uuid: UUID) -> HttpResponse:
    budget = _managed_budget(request, organization_uuid, budget_uuid)
    organization = budget.organization
    if request.method == "POST":
        name = budget.name
        budget.delete()  # its alerts stay in the history (their budget becomes empty)
        messages.success(request, f"Budget “{name}” deleted. Its past alerts stay in the history.")
        return redirect("budget_list", organization.uuid)
    return render(request, "alerts/budget_delete.html", _context(
        request, organization, "budgets", budget=budget, alert_count=budget.alerts.count(),
    ))


# ---------------------------------------------------------------------------------------------
# Performance rules
# ---------------------------------------------------------------------------------------------
def _rules(request: HttpRequest, organization: Organization):
    return AlertRule.objects.visible_to(request.user).filter(organization=organization).select_related(
        "target", "catalog_model__provider"
    )


def _managed_rule(request: HttpRequest, organization_uuid: UUID, rule_uuid: UUID) -> AlertRule:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    return get_object_or_404(_rules(request, organization).select_related("organization"), uuid=rule_uuid)


@login_required
@require_http_methods(["GET"])
def alert_rule_list(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    return render(request, "alerts/rules.html", _context(
        request, organization, "rules", rules=list(_rules(request, organization)),
    ))


@login_required
@require_http_methods(["GET", "POST"])
def alert_rule_create(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    form = AlertRuleForm(request.POST or None, organization=organization, user=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            rule = form.save(commit=False)
            rule.created_by = request.user
            rule.save()
            form.save_m2m()
        messages.success(request, f"Rule “{rule.name}” created; it is checked after every benchmark run.")
        return redirect("alert_rule_list", organization.uuid)
    return _form_response(request, "alerts/rule_form.html", _context(request, organization, "rules", form=form))


@login_required
@require_http_methods(["GET", "POST"])
def alert_rule_edit(request: HttpRequest, organization_uuid: UUID, rule_uuid: UUID) -> HttpResponse:
    rule = _managed_rule(request, organization_uuid, rule_uuid)
    form = AlertRuleForm(request.POST or None, instance=rule, organization=rule.organization, user=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
        messages.success(request, f"Rule “{rule.name}” saved.")
        return redirect("alert_rule_list", rule.organization.uuid)
    return _form_response(request, "alerts/rule_form.html", _context(
        request, rule.organization, "rules", form=form, rule=rule,
    ))


@login_required
@require_http_methods(["GET", "POST"])
def alert_rule_delete(request: HttpRequest, organization_uuid: UUID, rule_uuid: UUID) -> HttpResponse:
    rule = _managed_rule(request, organization_uuid, rule_uuid)
    organization = rule.organization
    if request.method == "POST":
        name = rule.name
        rule.delete()  # its alerts stay in the history
        messages.success(request, f"Rule “{name}” deleted. Its past alerts stay in the history.")
        return redirect("alert_rule_list", organization.uuid)
    return render(request, "alerts/rule_delete.html", _context(
        request, organization, "rules", rule=rule, alert_count=rule.alerts.count(),
    ))


# ---------------------------------------------------------------------------------------------
# Channels: webhooks and email
# ---------------------------------------------------------------------------------------------
def _webhooks(request: HttpRequest, organization: Organization):
    return Webhook.objects.visible_to(request.user).filter(organization=organization)


def _managed_webhook(request: HttpRequest, organization_uuid: UUID, webhook_uuid: UUID) -> Webhook:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    return get_object_or_404(_webhooks(request, organization).select_related("organization"), uuid=webhook_uuid)


def _channels_page(request: HttpRequest, organization: Organization, new_secret: dict | None = None) -> HttpResponse:
    recent = Delivery.objects.select_related("alert").order_by("-created_at", "-id")
    webhooks = list(_webhooks(request, organization).prefetch_related(
        Prefetch("deliveries", queryset=recent[:RECENT_DELIVERIES], to_attr="recent_deliveries")
    ))
    emails = list(
        Delivery.objects.visible_to(request.user).filter(alert__organization=organization, channel=Delivery.Channel.EMAIL)
        .select_related("alert").order_by("-created_at", "-id")[:RECENT_DELIVERIES]
    )
    response = render(request, "alerts/channels.html", _context(
        request, organization, "channels", webhooks=webhooks, emails=emails, new_secret=new_secret,
        opted_out=bool(EmailOptOut.opted_out([request.user.email])),
    ))
    if new_secret:
        add_never_cache_headers(response)  # not from the browser's cache either
    return response


def _show_secret_once(request: HttpRequest, webhook: Webhook, raw: str, *, created: bool) -> HttpResponse:
    """The new secret is in this response only (like a new API token): never stored in clear, not
    even in the session, and gone on reload."""
    new_secret = {"webhook": str(webhook.uuid), "name": webhook.name, "secret": raw, "created": created}
    return _channels_page(request, webhook.organization, new_secret)


@login_required
@require_http_methods(["GET"])
def alert_channels(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    return _channels_page(request, organization_for(request, organization_uuid))


@login_required
@require_POST
def email_test(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    address = request.user.email
    send_test_alert(organization, by_name=request.user.display_name, address=address)
    if EmailOptOut.opted_out([address]):
        messages.warning(
            request, f"A test alert was queued for {address}, but you turned alert emails off, so it will be "
            "skipped. Turn them back on in your account settings.",
        )
    else:
        messages.success(request, f"A test alert is on its way to {address}; it shows under Recent emails below.")
    return redirect("alert_channels", organization.uuid)


@sensitive_post_parameters("new_url")  # error reports and logs never carry the URL
@login_required
@require_http_methods(["GET", "POST"])
def webhook_create(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    form = WebhookForm(request.POST or None, organization=organization)
    if request.method == "POST" and form.is_valid():
        webhook = form.save(commit=False)
        webhook.created_by = request.user
        raw = webhook.rotate_secret()
        webhook.save()
        messages.success(request, f"Webhook “{webhook.name}” added. Send it a test alert to check it works.")
        return _show_secret_once(request, webhook, raw, created=True)
    return _form_response(request, "alerts/webhook_form.html", _context(request, organization, "channels", form=form))


@sensitive_post_parameters("new_url")
@login_required
@require_http_methods(["GET", "POST"])
def webhook_edit(request: HttpRequest, organization_uuid: UUID, webhook_uuid: UUID) -> HttpResponse:
    webhook = _managed_webhook(request, organization_uuid, webhook_uuid)
    form = WebhookForm(request.POST or None, instance=webhook, organization=webhook.organization)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Webhook “{webhook.name}” saved.")
        return redirect("alert_channels", webhook.organization.uuid)
    return _form_response(request, "alerts/webhook_form.html", _context(
        request, webhook.organization, "channels", form=form, webhook=webhook,
    ))


@login_required
@require_http_methods(["GET", "POST"])
def webhook_delete(request: HttpRequest, organization_uuid: UUID, webhook_uuid: UUID) -> HttpResponse:
    webhook = _managed_webhook(request, organization_uuid, webhook_uuid)
    organization = webhook.organization
    if request.method == "POST":
        name = webhook.name
        webhook.delete()  # budgets and rules stop posting to it; its delivery log stays
        messages.success(request, f"Webhook “{name}” deleted.")
        return redirect("alert_channels", organization.uuid)
    users = (
        Budget.objects.visible_to(request.user).filter(webhooks=webhook).count()
        + AlertRule.objects.visible_to(request.user).filter(webhooks=webhook).count()
    )
    return render(request, "alerts/webhook_delete.html", _context(
        request, organization, "channels", webhook=webhook, used_by=users,
    ))


@login_required
@require_POST
def webhook_test(request: HttpRequest, organization_uuid: UUID, webhook_uuid: UUID) -> HttpResponse:
    webhook = _managed_webhook(request, organization_uuid, webhook_uuid)
    if not webhook.is_enabled:
        messages.error(request, f"“{webhook.name}” is disabled; enable it to send it a test alert.")
    else:
        send_test_alert(webhook.organization, by_name=request.user.display_name, webhook=webhook)
        messages.success(
            request, f"A test alert is on its way to “{webhook.name}”; its delivery shows in the log below.",
        )
    return redirect("alert_channels", webhook.organization.uuid)


@login_required
@require_POST
def webhook_rotate_secret(request: HttpRequest, organization_uuid: UUID, webhook_uuid: UUID) -> HttpResponse:
    webhook = _managed_webhook(request, organization_uuid, webhook_uuid)
    raw = webhook.rotate_secret()
    webhook.save(update_fields=["secret"])
    messages.success(request, f"“{webhook.name}” has a new signing secret; the old one no longer verifies.")
    return _show_secret_once(request, webhook, raw, created=False)


# ---------------------------------------------------------------------------------------------
# Unsubscribe (the link in every alert email; no sign-in: the signed token is the permission)
# ---------------------------------------------------------------------------------------------
@csrf_exempt  # RFC 8058 one-click: mail providers POST "List-Unsubscribe=One-Click", no CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    address = address_of_unsubscribe_token(token)
    if address is None:
        return render(request, "alerts/unsubscribe_invalid.html", status=404)
    if request.method == "POST":
        opted_out = request.POST.get("resubscribe") != "1"
        EmailOptOut.set(address, opted_out=opted_out)
        return render(request, "alerts/unsubscribe.html", {"address": address, "opted_out": opted_out, "changed": True})
    # GET only asks: mail scanners follow links, and must not unsubscribe anyone.
    opted_out = bool(EmailOptOut.opted_out([address]))
    return render(request, "alerts/unsubscribe.html", {"address": address, "opted_out": opted_out, "changed": False})
