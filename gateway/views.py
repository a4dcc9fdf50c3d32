"""The gateway's pages: a project's Gateway page (base URL, copy-paste snippets, routes, cache and
body-logging settings, limits, live numbers), the forms behind it, and the organization's
connections.

Every view goes through `project_for()` / `organization_for()` (404 for outsiders, 403 for too
weak a role): viewers read, members write (the same role the API's viewsets need). Writing views
check the role before they read the form, so a viewer's POST is a 403, never a form error.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import ApiTokenForm
from accounts.models import ApiToken, Organization, Project, Role
from accounts.tenancy import organization_for, project_for
from benchmarks.models import ProviderKind

from . import stats
from .forms import ConnectionForm, GatewaySettingsForm, RateLimitForm, RouteForm, upstream_formset
from .models import Connection, GatewaySettings, RateLimit, Route, RouteUpstream, save_or_explain

MANAGE_ROLE = Role.MEMBER  # Connection/Route/GatewaySettings/RateLimit.MANAGE_ROLE, as in the API
TOKEN_PLACEHOLDER = "pk_live_YOUR_GATEWAY_TOKEN"  # noqa: S105  (a placeholder shown in snippets)
EXAMPLE_MODEL = "gpt-4o-mini"


def _saved(form: object, instance: object) -> bool:
    """Save the form's instance; a name taken by a concurrent save since the form was checked
    comes back as the form's own error (the page answers 400), never a 500."""
    try:
        save_or_explain(instance)
    except ValidationError as error:
        for field, messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
        return False
    return True


def _form_response(request: HttpRequest, template: str, context: dict, *forms: object) -> HttpResponse:
    # A form with errors comes back as 400, so scripts and tests can tell it from a fresh one.
    invalid = any(form.is_bound and not form.is_valid() for form in forms)
    return render(request, template, context, status=400 if invalid else 200)


# ---------------------------------------------------------------------------------------------
# The Gateway page
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snippets:
    """What the copy-paste examples need: where to send calls, with which token and model."""

    base_url: str  # the OpenAI SDK's base_url (…/v1)
    anthropic_base_url: str  # the Anthropic SDK's and Claude Code's (it adds /v1/messages itself)
    token: str
    model: str
    messages_model: str
    token_is_real: bool

    @classmethod
    def for_project(cls, routes: list[Route], raw_token: str | None) -> Snippets:
        base_url = settings.GATEWAY_PUBLIC_URL
        callable_routes = [route for route in routes if route.is_callable]
        model = next((route.name for route in callable_routes), EXAMPLE_MODEL)
        # /v1/messages goes to Anthropic connections: prefer a route that has one.
        messages_model = next(
            (route.name for route in callable_routes if route.has_anthropic_upstream), "claude-3-5-haiku-latest"
        )
        return cls(
            base_url=base_url, anthropic_base_url=base_url.removesuffix("/v1"),
            token=raw_token or TOKEN_PLACEHOLDER, model=model, messages_model=messages_model,
            token_is_real=raw_token is not None,
        )


def _routes_of(project: Project, user: object) -> list[Route]:
    upstreams = RouteUpstream.objects.select_related("connection").order_by("position", "id")
    routes = list(
        Route.objects.visible_to(user).filter(project=project)
        .prefetch_related(Prefetch("upstreams", queryset=upstreams)).order_by("name")
    )
    for route in routes:
        enabled = [upstream for upstream in route.upstreams.all() if upstream.connection.is_enabled]
        route.is_callable = route.is_enabled and bool(enabled)
        route.has_anthropic_upstream = any(upstream.connection.kind == ProviderKind.ANTHROPIC for upstream in enabled)
    return routes


def _connections_of(organization: Organization, user: object):
    return (
        Connection.objects.visible_to(user).filter(organization=organization)
        .annotate(route_count=Count("route_upstreams__route", distinct=True)).order_by("name")
    )


def _render_gateway(
    request: HttpRequest, project: Project, *, token_form: ApiTokenForm | None = None,
    new_token: tuple[ApiToken, str] | None = None, status: int = 200,
) -> HttpResponse:
    routes = _routes_of(project, request.user)
    limits = list(
        RateLimit.objects.visible_to(request.user).filter(project=project).select_related("api_token")
        .order_by("api_token__name", "id")
    )
    gateway_tokens = [
        token for token in ApiToken.objects.visible_to(request.user).filter(project=project).active()
        if token.has_scope(ApiToken.Scope.GATEWAY)
    ]
    # Live numbers from Redis (gateway/stats.py): cheap reads of counters, no scan.
    usage = stats.limit_usage(project.id, [limit.api_token_id for limit in limits if limit.api_token_id])
    for limit in limits:
        limit.usage = usage.get(limit.api_token_id)
    context = {
        "project": project,
        "organization": project.organization,
        "can_manage": request.role >= MANAGE_ROLE,
        "cache_stats": stats.cache_stats(project.id),
        "limit_usage": usage,
        "snippets": Snippets.for_project(routes, new_token[1] if new_token else None),
        "new_token": new_token[0] if new_token else None,
        "token_form": token_form or ApiTokenForm(initial={"name": "Gateway", "scopes": [ApiToken.Scope.GATEWAY]}),
        "gateway_tokens": gateway_tokens,
        "routes": routes,
        "connections": _connections_of(project.organization, request.user),
        "gateway_settings": GatewaySettings.current(project),
        "limits": limits,
        "here": reverse("gateway", args=[project.uuid]),
    }
    return render(request, "gateway/gateway.html", context, status=status)


@login_required
@require_http_methods(["GET"])
def gateway(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    return _render_gateway(request, project_for(request, project_uuid))


@login_required
@require_POST
def gateway_token_create(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    """A token with (by default) only the gateway scope, made here so the snippets can show it:
    in this response only, as on the API tokens page; the raw value is never stored."""
    project = project_for(request, project_uuid, MANAGE_ROLE)
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _render_gateway(request, project, token_form=form, status=400)
    token, raw = ApiToken.issue(
        project=project, name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"],
        expires_at=form.expires_at(), by=request.user,
    )
    if not token.has_scope(ApiToken.Scope.GATEWAY):
        messages.warning(request, f"“{token.name}” has no gateway scope: the gateway will refuse it (403).")
    return _render_gateway(request, project, new_token=(token, raw))


@login_required
@require_http_methods(["GET", "POST"])
def gateway_settings(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    project = project_for(request, project_uuid, MANAGE_ROLE)
    current = GatewaySettings.current(project)
    form = GatewaySettingsForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid() and _saved(form, form.save(commit=False)):
        messages.success(request, "Gateway settings saved.")
        return redirect("gateway", project.uuid)
    return _form_response(request, "gateway/settings_form.html", {"project": project, "form": form}, form)


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------
def _managed_route(request: HttpRequest, project_uuid: UUID, route_uuid: UUID) -> Route:
    project = project_for(request, project_uuid, MANAGE_ROLE)
    return get_object_or_404(
        Route.objects.visible_to(request.user).filter(project=project).select_related("project__organization"),
        uuid=route_uuid,
    )


def _route_form_page(request: HttpRequest, project: Project, route: Route | None) -> HttpResponse:
    form = RouteForm(request.POST or None, instance=route, project=project)
    upstreams = upstream_formset(request.POST or None, form.instance)
    if request.method == "POST" and form.is_valid() and upstreams.is_valid():
        with transaction.atomic():  # the route and its upstream list change together
            saved = form.save(commit=False)
            if _saved(form, saved):
                saved.replace_upstreams(upstreams.specs())
        if not form.errors:
            messages.success(request, f"Route “{saved.name}” saved.")
            return redirect("gateway", project.uuid)
    context = {
        "project": project, "route": route, "form": form, "upstreams": upstreams,
        "has_connections": Connection.objects.visible_to(request.user).filter(organization=project.organization).exists(),
    }
    return _form_response(request, "gateway/route_form.html", context, form, upstreams)


@login_required
@require_http_methods(["GET", "POST"])
def route_create(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    return _route_form_page(request, project_for(request, project_uuid, MANAGE_ROLE), None)


@login_required
@require_http_methods(["GET", "POST"])
def route_edit(request: HttpRequest, project_uuid: UUID, route_uuid: UUID) -> HttpResponse:
    route = _managed_route(request, project_uuid, route_uuid)
    return _route_form_page(request, route.project, route)


@login_required
@require_http_methods(["GET", "POST"])
def route_delete(request: HttpRequest, project_uuid: UUID, route_uuid: UUID) -> HttpResponse:
    route = _managed_route(request, project_uuid, route_uuid)
    if request.method == "POST":
        route.delete()
        messages.success(request, f"Route “{route.name}” deleted: calls naming it now get 404 model_not_found.")
        return redirect("gateway", route.project.uuid)
    return render(request, "gateway/route_delete.html", {"project": route.project, "route": route})


# ---------------------------------------------------------------------------------------------
# Rate limits
# ---------------------------------------------------------------------------------------------
def _managed_limit(request: HttpRequest, project_uuid: UUID, limit_uuid: UUID) -> RateLimit:
    project = project_for(request, project_uuid, MANAGE_ROLE)
    return get_object_or_404(
        RateLimit.objects.visible_to(request.user).filter(project=project).select_related("project", "api_token"),
        uuid=limit_uuid,
    )


def _limit_form_page(request: HttpRequest, project: Project, limit: RateLimit | None) -> HttpResponse:
    initial = {"api_token": request.GET.get("token")} if limit is None and request.GET.get("token") else None
    form = RateLimitForm(request.POST or None, instance=limit, initial=initial, project=project)
    if request.method == "POST" and form.is_valid() and _saved(form, saved := form.save(commit=False)):
        messages.success(request, f"Limits for {saved.api_token.name if saved.api_token else 'the whole project'} saved.")
        return redirect("gateway", project.uuid)
    return _form_response(request, "gateway/limit_form.html", {"project": project, "limit": limit, "form": form}, form)


@login_required
@require_http_methods(["GET", "POST"])
def limit_create(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    return _limit_form_page(request, project_for(request, project_uuid, MANAGE_ROLE), None)


@login_required
@require_http_methods(["GET", "POST"])
def limit_edit(request: HttpRequest, project_uuid: UUID, limit_uuid: UUID) -> HttpResponse:
    limit = _managed_limit(request, project_uuid, limit_uuid)
    return _limit_form_page(request, limit.project, limit)


@login_required
@require_http_methods(["GET", "POST"])
def limit_delete(request: HttpRequest, project_uuid: UUID, limit_uuid: UUID) -> HttpResponse:
    limit = _managed_limit(request, project_uuid, limit_uuid)
    if request.method == "POST":
        limit.delete()
        messages.success(request, "Limits removed.")
        return redirect("gateway", limit.project.uuid)
    return render(request, "gateway/limit_delete.html", {"project": limit.project, "limit": limit})


# ---------------------------------------------------------------------------------------------
# Connections (the organization's)
# ---------------------------------------------------------------------------------------------
def _back_to(request: HttpRequest, organization: Organization) -> str:
    """Where a connection form returns: the page it was opened from (`next`, a path on this
    site), else the organization's connections."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if wanted.startswith("/") and url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return reverse("gateway_connections", args=[organization.uuid])


def _managed_connection(request: HttpRequest, organization_uuid: UUID, connection_uuid: UUID) -> Connection:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    return get_object_or_404(
        Connection.objects.visible_to(request.user).filter(organization=organization).select_related("organization"),
        uuid=connection_uuid,
    )


@login_required
@require_http_methods(["GET"])
def connections(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    listed = list(_connections_of(organization, request.user))
    routes = (
        Route.objects.visible_to(request.user).filter(upstreams__connection__in=listed)
        .select_related("project").distinct().order_by("project__name", "name")
    )
    used_by: dict[int, list[Route]] = {}
    for route in routes.prefetch_related("upstreams"):
        for connection_id in {upstream.connection_id for upstream in route.upstreams.all()}:
            used_by.setdefault(connection_id, []).append(route)
    for connection in listed:
        connection.routes = used_by.get(connection.id, [])
    context = {
        "organization": organization, "connections": listed, "can_manage": request.role >= MANAGE_ROLE,
        "here": reverse("gateway_connections", args=[organization.uuid]),
    }
    return render(request, "gateway/connections.html", context)


def _connection_form_page(request: HttpRequest, organization: Organization, connection: Connection | None) -> HttpResponse:
    form = ConnectionForm(request.POST or None, instance=connection, organization=organization)
    back = _back_to(request, organization)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        if connection is None:
            saved.created_by = request.user
        if _saved(form, saved):
            messages.success(request, f"Connection “{saved.name}” saved.")
            return redirect(back)
    context = {"organization": organization, "connection": connection, "form": form, "back": back}
    return _form_response(request, "gateway/connection_form.html", context, form)


@sensitive_post_parameters("new_api_key")  # error reports and logs never carry the key
@login_required
@require_http_methods(["GET", "POST"])
def connection_create(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, MANAGE_ROLE)
    return _connection_form_page(request, organization, None)


@sensitive_post_parameters("new_api_key")
@login_required
@require_http_methods(["GET", "POST"])
def connection_edit(request: HttpRequest, organization_uuid: UUID, connection_uuid: UUID) -> HttpResponse:
    connection = _managed_connection(request, organization_uuid, connection_uuid)
    return _connection_form_page(request, connection.organization, connection)


@login_required
@require_http_methods(["GET", "POST"])
def connection_delete(request: HttpRequest, organization_uuid: UUID, connection_uuid: UUID) -> HttpResponse:
    connection = _managed_connection(request, organization_uuid, connection_uuid)
    organization = connection.organization
    routes = list(connection.routes_using().order_by("project__name", "name"))
    back = _back_to(request, organization)
    if request.method == "POST" and not routes:
        connection.delete()
        messages.success(request, f"Connection “{connection.name}” deleted with its stored key.")
        return redirect(back)
    context = {"organization": organization, "connection": connection, "routes": routes, "back": back}
    # Refused while routes use it (the upstream rows RESTRICT the delete): 409 Conflict.
    return render(request, "gateway/connection_delete.html", context, status=409 if request.method == "POST" else 200)
