"""Performance alert rules: a state machine per rule, evaluated after every benchmark run.

    ok ──breached──▶ firing ──recovered──▶ ok        (no_data: too few results to judge)

A rule notifies on the two transitions only: "firing" when it is first breached and "resolved"
when it recovers, never on every run in between. Each firing starts an incident (`incident_count`
+ 1); its firing and resolved alerts are unique per (rule, incident, kind), and the transition
itself happens under a row lock on the rule, so concurrent evaluations cannot fire twice. Going
to or from no_data notifies nobody (a paused target is not an incident) and a firing rule with
too little data stays firing until there is data to say it recovered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from benchmarks.models import BenchmarkResult
from benchmarks.statistics import percentile

from .models import Alert, AlertRule, Severity
from .notify import raise_alert


@dataclass(frozen=True)
class Measurement:
    value: float | None
    sample_size: int


def results_for(rule: AlertRule, now: datetime) -> QuerySet:
    if rule.target_id:
        results = BenchmarkResult.objects.filter(target_id=rule.target_id, organization_id=rule.organization_id)
        if rule.model_name:
            results = results.filter(model_name=rule.model_name)
    else:
        results = BenchmarkResult.objects.public().filter(model_id=rule.catalog_model_id)
    if rule.window_minutes:
        results = results.filter(created_at__gte=now - timedelta(minutes=rule.window_minutes))
    return results.order_by("-created_at", "-id")


def measure(rule: AlertRule, now: datetime) -> Measurement:
    rows = results_for(rule, now).values("success", "ttft_ms", "total_latency_ms", "tps")
    rows = list(rows[: rule.window_results] if rule.window_results else rows[:5000])
    if len(rows) < rule.min_results:
        return Measurement(None, len(rows))
    successes = [r for r in rows if r["success"]]
    metric = AlertRule.Metric(rule.metric)
    if metric == AlertRule.Metric.ERROR_RATE:
        return Measurement(100.0 * (len(rows) - len(successes)) / len(rows), len(rows))
    column, q = {
        AlertRule.Metric.TTFT_P95: ("ttft_ms", 0.95),
        AlertRule.Metric.TTFT_MEDIAN: ("ttft_ms", 0.5),
        AlertRule.Metric.LATENCY_P95: ("total_latency_ms", 0.95),
        AlertRule.Metric.TPS_MEDIAN: ("tps", 0.5),
    }[metric]
    values = [r[column] for r in successes if r[column] is not None]
    if len(values) < rule.min_results:
        return Measurement(None, len(rows))
    return Measurement(percentile(values, q), len(rows))


def is_breached(rule: AlertRule, value: float) -> bool:
    return value < rule.threshold if rule.breached_below else value > rule.threshold


def _texts(rule: AlertRule, value: float, sample_size: int, firing: bool) -> tuple[str, str]:
    unit = "%" if rule.metric == AlertRule.Metric.ERROR_RATE else ("tok/s" if rule.breached_below else "ms")
    shown = f"{value:.1f} {unit}" if unit != "%" else f"{value:.1f} %"
    if firing:
        title = f"{rule.subject_label()}: {rule.name} is firing ({shown})"
        message = (
            f"Rule “{rule.name}” ({rule.condition_label()}) is breached: {shown} over {sample_size} results. "
            f"You will hear once more when it recovers."
        )
    else:
        title = f"{rule.subject_label()}: {rule.name} resolved ({shown})"
        message = f"Rule “{rule.name}” ({rule.condition_label()}) recovered: {shown} over {sample_size} results."
    return title, message


def evaluate_rule(rule_id: int, now: datetime | None = None) -> Alert | None:
    """Measure, move the state machine, and raise the transition's alert (if any)."""
    now = now or timezone.now()
    with transaction.atomic():
        rule = (
            AlertRule.objects.select_for_update(of=("self",))
            .select_related("organization", "target", "catalog_model__provider")
            .filter(id=rule_id, is_enabled=True).first()
        )
        if rule is None:
            return None
        measured = measure(rule, now)
        rule.last_value, rule.last_sample_size, rule.last_evaluated_at = measured.value, measured.sample_size, now
        fields = ["last_value", "last_sample_size", "last_evaluated_at"]
        alert = None
        if measured.value is None:
            if rule.state == AlertRule.State.OK:
                rule.state, rule.state_changed_at = AlertRule.State.NO_DATA, now
                fields += ["state", "state_changed_at"]
        else:
            breached = is_breached(rule, measured.value)
            link = reverse("alert_rule_edit", args=[rule.organization.uuid, rule.uuid])
            data = {
                "rule": str(rule.uuid), "rule_name": rule.name, "metric": rule.metric, "threshold": rule.threshold,
                "value": round(measured.value, 3), "sample_size": measured.sample_size,
                "window": rule.window_label(), "subject": rule.subject_label(),
            }
            if breached and rule.state != AlertRule.State.FIRING:
                rule.incident_count += 1
                rule.state, rule.state_changed_at = AlertRule.State.FIRING, now
                fields += ["state", "state_changed_at", "incident_count"]
                title, message = _texts(rule, measured.value, measured.sample_size, firing=True)
                alert = raise_alert(
                    organization=rule.organization, kind=Alert.Kind.RULE_FIRING, rule=rule,
                    incident=rule.incident_count, severity=Severity.CRITICAL, title=title, message=message,
                    link=link, data={**data, "incident": rule.incident_count}, recipients=rule,
                )
            elif not breached and rule.state != AlertRule.State.OK:
                was_firing = rule.state == AlertRule.State.FIRING
                rule.state, rule.state_changed_at = AlertRule.State.OK, now
                fields += ["state", "state_changed_at"]
                if was_firing:
                    title, message = _texts(rule, measured.value, measured.sample_size, firing=False)
                    alert = raise_alert(
                        organization=rule.organization, kind=Alert.Kind.RULE_RESOLVED, rule=rule,
                        incident=rule.incident_count, severity=Severity.INFO, title=title, message=message,
                        link=link, data={**data, "incident": rule.incident_count}, recipients=rule,
                    )
        rule.save(update_fields=fields)
    return alert


def rules_watching(organization_id: int | None, target_id: int | None, model_ids: list[int]) -> list[int]:
    """Rules a finished run may have moved: those on its target, or on the public models it measured."""
    if target_id is not None:
        condition = Q(target_id=target_id, organization_id=organization_id)
    else:
        condition = Q(catalog_model_id__in=model_ids)
    return list(AlertRule.objects.enabled().filter(condition).values_list("id", flat=True))


def evaluate_rules(rule_ids: list[int], now: datetime | None = None) -> int:
    return sum(1 for rule_id in rule_ids if evaluate_rule(rule_id, now) is not None)
