"""Pages for projects, organizations, members, invitations, API tokens and the magic link.

Every view that touches tenant data goes through `project_for()` / `organization_for()`
(404 for outsiders, 403 for too weak a role)."""

from __future__ import annotations

from uuid import UUID

from allauth.account.models import EmailAddress
from allauth.account.utils import perform_login
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from alerts.display import BudgetMeter
from alerts.models import MANAGE_ROLE as BUDGET_MANAGE_ROLE
from alerts.models import Budget
from costs import activity as costs_activity
from costs.display import MoneyDisplay
from costs.overview import Overview

from . import magic_link
from .adapter import PENDING_INVITATION_SESSION_KEY
from .forms import (
    AccountSettingsForm,
    ApiTokenForm,
    InvitationForm,
    OrganizationForm,
    ProjectDeleteForm,
    ProjectForm,
    RoleForm,
)
from .invitations import send_invitation
from .models import ApiToken, Invitation, Membership, Organization, Project, Role
from .tenancy import current_project, organization_for, project_for


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "landing.html")
    project = current_project(request)
    if project is None:
        messages.info(request, "You are not in any organization yet. Create one to get started.")
        return redirect("organization_create")
    return redirect("project_dashboard", project.uuid)


# ---------------------------------------------------------------------------------------------
# The signed-in person's own settings
# ---------------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def account_settings(request: HttpRequest) -> HttpResponse:
    form = AccountSettingsForm(request.POST or None, instance=request.user)
    if request.method == "POST":
        if form.is_valid():
            form.save()
            messages.success(request, "Your settings were saved.")
            return redirect("account_settings")
        return render(request, "settings/account.html", {"form": form}, status=400)
    return render(request, "settings/account.html", {"form": form})


# ---------------------------------------------------------------------------------------------
# Projects
# ---------------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET"])
def project_dashboard(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    project = project_for(request, project_uuid)
    shown = MoneyDisplay.for_request(request)
    overview = Overview.build(project, request.user, shown=shown, range_key=request.GET.get("range"))
    # "$ saved by the cache" belongs on dashboards of projects that call through the gateway.
    gateway_in_use = bool(overview.summary.totals.cache_hits) or _uses_gateway(project)
    budgets = Budget.objects.visible_to(request.user).covering(project).select_related("organization", "project", "api_token")
    return render(request, "projects/dashboard.html", {
        "project": project, "overview": overview, "can_manage_tokens": request.role >= Role.MEMBER,
        "show_cache_savings": gateway_in_use,
        # The page's exchange rates (read once) serve the budgets' currencies too.
        "budget_meters": BudgetMeter.for_budgets(budgets, rates=shown.rates),
        "can_manage_budgets": request.role >= BUDGET_MANAGE_ROLE,
    })


def _uses_gateway(project: Project) -> bool:
    """Whether the project routes calls through the gateway or has its cache switched on."""
    # One query: a route exists, or the settings row says the cache is on.
    uses = Q(gateway_routes__isnull=False) | Q(gateway_settings__cache_enabled=True)
    return Project.objects.filter(pk=project.pk).filter(uses).exists()


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    project = project_for(request, project_uuid)
    form = ProjectForm(instance=project, organization=project.organization)
    delete_form = ProjectDeleteForm(project=project)
    if request.method == "POST":
        project.organization.require_role(request.user, Role.ADMIN)
        if request.POST.get("action") == "delete":
            delete_form = ProjectDeleteForm(request.POST, project=project)
            if delete_form.is_valid():
                name, organization = project.name, project.organization
                try:
                    project.remove(by=request.user)
                except ValidationError as error:  # the organization's last project
                    messages.error(request, " ".join(error.messages))
                    return redirect("project_settings", project.uuid)
                messages.success(request, f"Project “{name}” was deleted.")
                return redirect("organization_settings", organization.uuid)
        else:
            form = ProjectForm(request.POST, instance=project, organization=project.organization)
            if form.is_valid():
                form.save()
                messages.success(request, "Project renamed.")
                return redirect("project_settings", project.uuid)
    return render(request, "projects/settings.html", {"project": project, "form": form, "delete_form": delete_form})


@login_required
@require_POST
def project_create(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, Role.ADMIN)
    form = ProjectForm(request.POST, organization=organization)
    if form.is_valid():
        project = Project.create_in(organization, name=form.cleaned_data["name"], by=request.user)
        messages.success(request, f"Project “{project.name}” created.")
        return redirect("project_dashboard", project.uuid)
    for error in form.errors.get("name", []):
        messages.error(request, error)
    return redirect("organization_settings", organization.uuid)


# ---------------------------------------------------------------------------------------------
# API tokens
# ---------------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    project = project_for(request, project_uuid)
    form = ApiTokenForm()
    new_token = None
    status = 200
    if request.method == "POST":
        project.organization.require_role(request.user, Role.MEMBER)
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            token, raw = ApiToken.issue(
                project=project,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at(),
                by=request.user,
            )
            # Rendered in this response only: the raw value is never stored or shown again.
            new_token = {"token": token, "raw": raw}
            form = ApiTokenForm()
        else:
            status = 400
    tokens = list(ApiToken.objects.visible_to(request.user).filter(project=project).select_related("created_by"))
    usage = costs_activity.usage_by_token(project, request.user)
    for token in tokens:
        token.usage = usage.get(token.prefix)
    return render(
        request,
        "projects/api_tokens.html",
        {
            "project": project,
            "form": form,
            "tokens": tokens,
            "new_token": new_token,
            "can_manage_tokens": request.role >= Role.MEMBER,
        },
        status=status,
    )


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, project_uuid: UUID, token_uuid: UUID) -> HttpResponse:
    project = project_for(request, project_uuid, Role.MEMBER)
    token = get_object_or_404(ApiToken.objects.visible_to(request.user), project=project, uuid=token_uuid)
    token.revoke(by=request.user)
    messages.success(request, f"Token “{token.name}” ({token.masked}) was revoked.")
    return redirect("api_tokens", project.uuid)


# ---------------------------------------------------------------------------------------------
# Organizations and members
# ---------------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def organization_create(request: HttpRequest) -> HttpResponse:
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        organization = Organization.create_for_owner(request.user, name=form.cleaned_data["name"])
        organization.time_zone = form.cleaned_data["time_zone"]
        organization.save(update_fields=["time_zone"])
        messages.success(request, f"Organization “{organization.name}” created with a default project.")
        return redirect("organization_settings", organization.uuid)
    return render(request, "organizations/create.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def organization_settings(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    form = OrganizationForm(instance=organization)
    if request.method == "POST":
        organization.require_role(request.user, Role.ADMIN)
        form = OrganizationForm(request.POST, instance=organization)
        if form.is_valid():
            form.save()
            messages.success(request, "Organization settings saved.")
            return redirect("organization_settings", organization.uuid)
    context = {
        "organization": organization,
        "form": form,
        "project_form": ProjectForm(organization=organization),
        "invitation_form": InvitationForm(),
        "projects": organization.projects.all(),
        "memberships": Membership.objects.visible_to(request.user)
        .filter(organization=organization)
        .select_related("user"),
        "invitations": Invitation.objects.visible_to(request.user)
        .filter(organization=organization, accepted_at__isnull=True)
        .select_related("invited_by"),
        "roles": Role.choices,
        "is_admin": request.role >= Role.ADMIN,
        "is_owner": request.role >= Role.OWNER,
    }
    return render(request, "organizations/settings.html", context)


@login_required
@require_POST
def member_update(request: HttpRequest, organization_uuid: UUID, membership_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    membership = get_object_or_404(
        Membership.objects.visible_to(request.user).select_related("user"),
        organization=organization,
        uuid=membership_uuid,
    )
    try:
        if request.POST.get("action") == "remove":
            membership.remove(by=request.user)
            messages.success(request, f"{membership.user.email} was removed from {organization.name}.")
            if membership.user_id == request.user.pk:
                return redirect("home")
        else:
            # Refuse (403) before reading the form, as the API does: a viewer is told "not
            # allowed", not what is wrong with the role it sent. change_role() checks it again.
            organization.require_role(request.user, Role.ADMIN)
            form = RoleForm(request.POST)
            if not form.is_valid():
                messages.error(request, "Choose a valid role.")
                return redirect("organization_settings", organization.uuid)
            membership.change_role(Role(form.cleaned_data["role"]), by=request.user)
            messages.success(request, f"{membership.user.email} is now {membership.get_role_display().lower()}.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("organization_settings", organization.uuid)


@login_required
@require_POST
def invitation_create(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, Role.ADMIN)
    form = InvitationForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect("organization_settings", organization.uuid)
    try:
        invitation, raw = Invitation.issue(
            organization, form.cleaned_data["email"], Role(form.cleaned_data["role"]), by=request.user
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("organization_settings", organization.uuid)
    send_invitation(invitation, raw)
    messages.success(request, f"Invitation sent to {invitation.email}.")
    return redirect("organization_settings", organization.uuid)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, organization_uuid: UUID, invitation_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, Role.ADMIN)
    invitation = get_object_or_404(
        Invitation.objects.visible_to(request.user), organization=organization, uuid=invitation_uuid
    )
    invitation.withdraw(by=request.user)
    messages.success(request, f"The invitation for {invitation.email} was withdrawn.")
    return redirect("organization_settings", organization.uuid)


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = Invitation.from_token(token)
    if invitation is None or invitation.status != "pending":
        request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        return render(request, "invitations/invalid.html", {"invitation": invitation}, status=404 if invitation is None else 410)
    if not request.user.is_authenticated:
        # Remember it across signup/login; the account adapter sends the user back here after.
        request.session[PENDING_INVITATION_SESSION_KEY] = token
        return render(request, "invitations/accept.html", {"invitation": invitation})
    if request.method == "POST":
        try:
            invitation.accept(request.user)
        except (ValidationError, PermissionDenied) as error:
            messages.error(request, str(error.messages[0] if isinstance(error, ValidationError) else error))
            return render(request, "invitations/accept.html", {"invitation": invitation}, status=403)
        request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        project = invitation.organization.projects.first()
        messages.success(request, f"Welcome to {invitation.organization.name}!")
        if project:
            return redirect("project_dashboard", project.uuid)
        return redirect("organization_settings", invitation.organization.uuid)
    return render(request, "invitations/accept.html", {"invitation": invitation})


# ---------------------------------------------------------------------------------------------
# Magic link (one-click sign-in from the login-code email)
# ---------------------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
def magic_link_login(request: HttpRequest, token: str) -> HttpResponse:
    user = magic_link.user_for_token(token)
    if user is None:
        return render(request, "account/magic_link_invalid.html", status=400)
    if request.method == "GET":
        # A button, not an automatic login: mail scanners that prefetch links must not use it up.
        return render(request, "account/magic_link_confirm.html", {"link_user": user})
    # Following the emailed link proves the address, as entering the emailed code does.
    EmailAddress.objects.filter(user=user, email__iexact=user.email).update(verified=True)
    return perform_login(request, user)
