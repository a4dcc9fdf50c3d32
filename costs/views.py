"""Cost pages: the activity log (filtered, paginated), one event in detail with its cost
explained (and its request and response, when kept), and the log's CSV export. Tenant data goes through `project_for()` and
`visible_to()` (404 for outsiders; viewers may read everything here)."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_http_methods

from accounts.tenancy import project_for

from . import activity, export
from .display import MoneyDisplay
from .forms import RANGE_LABELS, ActivityFilterForm
from .models import CostEvent

PAGE_SIZE = 50


def _filtered(request: HttpRequest, project_uuid: UUID) -> tuple[object, ActivityFilterForm, object]:
    project = project_for(request, project_uuid)
    form = ActivityFilterForm(request.GET, project=project, user=request.user)
    events = form.apply(CostEvent.objects.visible_to(request.user).filter(project=project))
    return project, form, events


@login_required
@require_http_methods(["GET"])
def activity_log(request: HttpRequest, project_uuid: UUID) -> HttpResponse:
    project, form, events = _filtered(request, project_uuid)
    page = Paginator(events.order_by("-occurred_at", "-id"), PAGE_SIZE).get_page(request.GET.get("page"))
    names = activity.token_names(project, request.user)
    page.object_list = list(page.object_list)
    for event in page.object_list:
        event.token_name = names.get(event.token_prefix, "")
    return render(request, "costs/activity.html", {
        "project": project,
        "form": form,
        "filter_errors": form.error_messages(),
        "page": page,
        "unpriced_models": activity.unpriced_models(project, request.user),
        "range_label": RANGE_LABELS.get(form.range_key, "Chosen dates"),
        "time_zone": project.organization.time_zone,
    })


@login_required
@require_http_methods(["GET"])
def activity_detail(request: HttpRequest, project_uuid: UUID, event_uuid: UUID) -> HttpResponse:
    project = project_for(request, project_uuid)
    event = get_object_or_404(
        CostEvent.objects.visible_to(request.user).filter(project=project)
        .select_related("api_token", "price__model__provider"),
        uuid=event_uuid,
    )
    body = activity.kept_body(event, request.user)
    return render(request, "costs/activity_detail.html", {
        "project": project,
        "event": event,
        "body": body,
        "body_parts": activity.body_parts(body) if body else [],
        "breakdown": activity.cost_breakdown(event),
        "token_name": activity.token_names(project, request.user).get(event.token_prefix),
        "time_zone": project.organization.time_zone,
    })


@login_required
@require_http_methods(["GET"])
def activity_export(request: HttpRequest, project_uuid: UUID) -> StreamingHttpResponse:
    project, _form, events = _filtered(request, project_uuid)
    lines = export.rows(
        events.order_by("-occurred_at", "-id"),
        shown=MoneyDisplay.for_request(request),
        token_names=activity.token_names(project, request.user),
        time_zone=project.organization.time_zone,
    )
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    filename = f"pulse-{slugify(project.organization.name)}-{slugify(project.name)}-events-{timezone.now():%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
