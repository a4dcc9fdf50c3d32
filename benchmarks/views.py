"""Benchmark pages: the public leaderboard (no login) and an organization's private benchmarks,
run history, "Run now" and run detail. Tenant data goes through `organization_for()` and
`visible_to()` (404 for outsiders, 403 for too weak a role)."""

from __future__ import annotations

from dataclasses import asdict
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Organization, Role
from accounts.tenancy import current_project, organization_for

from . import execution, statistics, tasks
from .forms import TargetForm
from .models import BenchmarkResult, Run, Target

DEFAULT_RANGE = "24h"
RANGE_LABELS = {"24h": "24 hours", "7d": "7 days", "30d": "30 days"}
# Timeline buckets per range: hourly, 6-hourly, daily.
RANGE_BUCKETS = {"24h": 24, "7d": 28, "30d": 30}
KINDS = {"direct": "Direct providers", "aggregator": "Aggregators"}
ACTIVE_STATUSES = [Run.Status.PENDING, Run.Status.RUNNING]


def _range_of(request: HttpRequest) -> str:
    key = request.GET.get("range", DEFAULT_RANGE)
    return key if key in statistics.RANGES else DEFAULT_RANGE


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _chart_data(stats: list[statistics.ModelStats], line: dict) -> dict:
    """What benchmarks.js draws: a TTFT bar per model and the timelines (rounded for size), the
    series in the table's order so that a model keeps its colour across charts."""
    names = [s.model_name for s in stats]
    labels = [n if names.count(n) == 1 else f"{s.model_name} ({s.provider_name})" for n, s in zip(names, stats, strict=True)]
    order = {label: index for index, label in enumerate(labels)}
    return {
        "models": labels,
        "bar": {
            "labels": [label for label, s in zip(labels, stats, strict=True) if s.ttft_p50_ms is not None],
            "ttft_p50_ms": [_rounded(s.ttft_p50_ms) for s in stats if s.ttft_p50_ms is not None],
        },
        "timeline": {
            "labels": line["labels"],
            "series": [
                {
                    "model": series["model"],
                    "ttft_p50_ms": [_rounded(v) for v in series["ttft_p50_ms"]],
                    "tps_p50": [_rounded(v) for v in series["tps_p50"]],
                    "latency_p50_ms": [_rounded(v) for v in series["latency_p50_ms"]],
                    "error_rate": [_rounded(v, 4) for v in series["error_rate"]],
                }
                for series in sorted(line["series"], key=lambda series: order.get(series["model"], len(order)))
            ],
        },
    }


def _stats_context(results: QuerySet[BenchmarkResult], range_key: str) -> dict:
    since = statistics.since_for(range_key)
    stats = statistics.model_stats(results, since)
    line = statistics.timeline(results, since, buckets=RANGE_BUCKETS[range_key])
    return {
        "stats": stats,
        "rows": [{**asdict(s), "error_pct": s.error_rate * 100} for s in stats],
        "chart_data": _chart_data(stats, line),
        "range_key": range_key,
        "range_label": RANGE_LABELS[range_key],
        "ranges": RANGE_LABELS,
    }


@require_http_methods(["GET"])
def leaderboard(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        # The header shows the user's current project, as on their other pages.
        project = current_project(request)
        if project is not None:
            request.project, request.organization = project, project.organization
    kind = request.GET.get("kind", "")
    results = BenchmarkResult.objects.public()
    if kind in KINDS:
        results = results.filter(provider__is_aggregator=(kind == "aggregator"))
    else:
        kind = ""
    context = _stats_context(results, _range_of(request))
    context.update(kind=kind, kinds=KINDS, kind_label=KINDS.get(kind, ""))
    return render(request, "benchmarks/leaderboard.html", context)


@login_required
@require_http_methods(["GET"])
def organization_benchmarks(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    results = BenchmarkResult.objects.visible_to(request.user).filter(organization=organization)
    context = _stats_context(results, _range_of(request))
    runs = (
        Run.objects.visible_to(request.user).filter(organization=organization)
        .select_related("target", "created_by")
        .annotate(
            result_count=Count("results"),
            success_count=Count("results", filter=Q(results__success=True)),
        )
        .order_by("-created_at")[:20]
    )
    targets = list(Target.objects.visible_to(request.user).filter(organization=organization).with_last_run_status())
    active = set(
        Run.objects.visible_to(request.user)
        .filter(organization=organization, target__in=targets, status__in=ACTIVE_STATUSES)
        .values_list("target_id", flat=True)
    )
    for target in targets:
        target.has_active_run = target.id in active
    context.update(
        organization=organization, runs=runs, targets=targets,
        can_run=request.role >= Role.MEMBER,
        can_manage=request.role >= Target.MANAGE_ROLE,
    )
    return render(request, "benchmarks/organization.html", context)


# ---------------------------------------------------------------------------------------------
# Managing targets (Target.MANAGE_ROLE, the same role the API's TargetViewSet needs)
# ---------------------------------------------------------------------------------------------
def _managed_target(request: HttpRequest, organization_uuid: UUID, target_uuid: UUID) -> Target:
    organization = organization_for(request, organization_uuid, Target.MANAGE_ROLE)
    return get_object_or_404(
        Target.objects.visible_to(request.user).filter(organization=organization).select_related("organization"),
        uuid=target_uuid,
    )


@sensitive_post_parameters("new_api_key")  # error reports and logs never carry the key
@login_required
@require_http_methods(["GET", "POST"])
def target_create(request: HttpRequest, organization_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, Target.MANAGE_ROLE)
    form = TargetForm(request.POST or None, organization=organization)
    if request.method == "POST":
        if form.is_valid():
            target = form.save(commit=False)
            target.created_by = request.user
            target.save()
            schedule = f"runs every {target.interval_minutes} minutes" if target.is_enabled else "paused"
            messages.success(request, f"Target “{target.name}” added ({schedule}).")
            return redirect("organization_benchmarks", organization.uuid)
    return _render_target_form(request, form, organization, None)


@sensitive_post_parameters("new_api_key")  # error reports and logs never carry the key
@login_required
@require_http_methods(["GET", "POST"])
def target_edit(request: HttpRequest, organization_uuid: UUID, target_uuid: UUID) -> HttpResponse:
    target = _managed_target(request, organization_uuid, target_uuid)
    form = TargetForm(request.POST or None, instance=target, organization=target.organization)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Target “{target.name}” saved.")
        return redirect("organization_benchmarks", target.organization.uuid)
    return _render_target_form(request, form, target.organization, target)


def _render_target_form(
    request: HttpRequest, form: TargetForm, organization: Organization, target: Target | None
) -> HttpResponse:
    # A form with errors comes back as 400, so scripts and tests can tell it from a fresh form.
    status = 400 if form.is_bound and form.errors else 200
    context = {"organization": organization, "target": target, "form": form}
    return render(request, "benchmarks/target_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def target_delete(request: HttpRequest, organization_uuid: UUID, target_uuid: UUID) -> HttpResponse:
    target = _managed_target(request, organization_uuid, target_uuid)
    if request.method == "POST":
        organization, name = target.organization, target.name
        target.delete()  # its results stay (their target becomes empty); its schedule goes
        messages.success(request, f"Target “{name}” deleted. Its past results are kept.")
        return redirect("organization_benchmarks", organization.uuid)
    context = {"organization": target.organization, "target": target, "result_count": target.results.count()}
    return render(request, "benchmarks/target_delete.html", context)


@login_required
@require_POST
def target_set_enabled(request: HttpRequest, organization_uuid: UUID, target_uuid: UUID) -> HttpResponse:
    """Pause or resume. The wanted state is in the form (not a toggle), so a double submit is
    harmless; saving the instance (not a queryset update) re-syncs the beat schedule."""
    target = _managed_target(request, organization_uuid, target_uuid)
    wanted = request.POST.get("enabled")
    if wanted not in ("true", "false"):
        return HttpResponseBadRequest("enabled must be true or false")
    target.is_enabled = wanted == "true"
    target.save(update_fields=["is_enabled"])
    messages.success(request, f"Target “{target.name}” {'resumed' if target.is_enabled else 'paused'}.")
    return redirect("organization_benchmarks", target.organization.uuid)


@login_required
@require_POST
def target_run_now(request: HttpRequest, organization_uuid: UUID, target_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid, Role.MEMBER)
    target = get_object_or_404(
        Target.objects.visible_to(request.user).filter(organization=organization), uuid=target_uuid
    )
    active = (
        Run.objects.visible_to(request.user)
        .filter(organization=organization, target=target, status__in=ACTIVE_STATUSES)
        .first()
    )
    if active is not None:
        messages.info(request, f"A run of {target.name} is already {active.get_status_display().lower()}.")
        return redirect("benchmark_run_detail", organization.uuid, active.uuid)
    try:
        run = execution.start_run(
            name=f"{target.name} (run now)", triggered_by=Run.Trigger.MANUAL,
            organization=organization, target=target, created_by=request.user,
            schedule_key=target.schedule_key,
        )
    except execution.RunAlreadyActive:  # a concurrent click won the partial unique constraint
        messages.info(request, f"A run of {target.name} is already in progress.")
        return redirect("organization_benchmarks", organization.uuid)
    run_uuid = str(run.uuid)
    transaction.on_commit(lambda: tasks.execute_run.delay(run_uuid))  # the worker must see the row
    messages.success(request, f"Benchmark of {target.name} started.")
    return redirect("benchmark_run_detail", organization.uuid, run.uuid)


@login_required
@require_http_methods(["GET"])
def run_detail(request: HttpRequest, organization_uuid: UUID, run_uuid: UUID) -> HttpResponse:
    organization = organization_for(request, organization_uuid)
    run = get_object_or_404(
        Run.objects.visible_to(request.user).filter(organization=organization).select_related("target", "created_by"),
        uuid=run_uuid,
    )
    results = run.results.order_by("created_at", "id")
    context = {
        "organization": organization, "run": run, "results": results,
        "is_active": run.status in ACTIVE_STATUSES,
        "duration_s": (run.finished_at - run.started_at).total_seconds()
        if run.started_at and run.finished_at else None,
    }
    return render(request, "benchmarks/run_detail.html", context)
