"""Performance rules: fire once, stay firing quietly, resolve once, fire again as a new incident;
each metric, both kinds of window, too little data, and concurrent evaluations."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from alerts.models import Alert, AlertRule, Delivery
from alerts.rules import evaluate_rule
from benchmarks.models import Model, Provider, ProviderKind

from .conftest import add_results, make_target

pytestmark = pytest.mark.django_db


@pytest.fixture
def target(personas):
    return make_target(personas, model_names=["fast", "slow"])


def make_rule(personas, target, members=(), **fields) -> AlertRule:
    fields = {"name": "Slow first token", "metric": AlertRule.Metric.TTFT_P95, "threshold": 500.0,
              "window_results": 10, "min_results": 3, **fields}
    rule = AlertRule.objects.create(organization=personas.org, target=target if "catalog_model" not in fields else None,
                                    **fields)
    if members:
        rule.notify_members.add(*members)
    return rule


def state(rule) -> str:
    rule.refresh_from_db()
    return rule.state


def test_a_rule_fires_once_stays_firing_resolves_once_and_fires_again(personas, target):
    rule = make_rule(personas, target, members=[personas.owner, personas.member], model_name="fast")
    assert evaluate_rule(rule.id) is None and state(rule) == AlertRule.State.NO_DATA
    add_results(target=target, count=10, ttft_ms=100, model_name="fast")
    add_results(target=target, count=10, ttft_ms=5000, model_name="slow")  # another model: not judged
    assert evaluate_rule(rule.id) is None and state(rule) == AlertRule.State.OK

    add_results(target=target, count=1, ttft_ms=1000, model_name="fast")  # p95 of 9 × 100 and 1000 = 595
    firing = evaluate_rule(rule.id)
    assert firing.kind == Alert.Kind.RULE_FIRING and firing.incident == 1
    assert state(rule) == AlertRule.State.FIRING and rule.last_value == pytest.approx(595.0)
    assert rule.last_sample_size == 10 and rule.incident_count == 1
    assert firing.title == "Our gateway / fast: Slow first token is firing (595.0 ms)"
    assert sorted(firing.deliveries.values_list("address", flat=True)) == ["member@a.example", "owner@a.example"]

    for _ in range(3):  # still bad: no new alert, no new delivery
        add_results(target=target, count=2, ttft_ms=2000, model_name="fast")
        assert evaluate_rule(rule.id) is None
    assert state(rule) == AlertRule.State.FIRING
    assert Alert.objects.count() == 1 and Delivery.objects.count() == 2

    add_results(target=target, count=10, ttft_ms=120, model_name="fast")
    resolved = evaluate_rule(rule.id)
    assert (resolved.kind, resolved.incident, resolved.severity) == (Alert.Kind.RULE_RESOLVED, 1, "info")
    assert "resolved (120.0 ms)" in resolved.title
    assert state(rule) == AlertRule.State.OK
    assert evaluate_rule(rule.id) is None

    add_results(target=target, count=10, ttft_ms=800, model_name="fast")
    again = evaluate_rule(rule.id)
    assert (again.kind, again.incident) == (Alert.Kind.RULE_FIRING, 2)
    assert list(Alert.objects.order_by("id").values_list("kind", "incident")) == [
        ("rule.firing", 1), ("rule.resolved", 1), ("rule.firing", 2),
    ]
    assert Delivery.objects.count() == 6


def test_tokens_per_second_below(personas, target):
    rule = make_rule(personas, target, name="Slow stream", metric=AlertRule.Metric.TPS_MEDIAN, threshold=20.0)
    add_results(target=target, count=5, tps=35)
    assert evaluate_rule(rule.id) is None and state(rule) == AlertRule.State.OK
    add_results(target=target, count=6, tps=12)  # median of the last 10: 6 × 12, 4 × 35
    firing = evaluate_rule(rule.id)
    assert firing.kind == Alert.Kind.RULE_FIRING and "(12.0 tok/s)" in firing.title
    add_results(target=target, count=10, tps=40)
    assert evaluate_rule(rule.id).kind == Alert.Kind.RULE_RESOLVED


def test_error_rate_above(personas, target):
    rule = make_rule(personas, target, name="Errors", metric=AlertRule.Metric.ERROR_RATE, threshold=20.0)
    add_results(target=target, count=8)
    add_results(target=target, count=2, success=False)  # 20 %: not above
    assert evaluate_rule(rule.id) is None and rule.__class__.objects.get(pk=rule.pk).last_value == 20.0
    add_results(target=target, count=1, success=False)  # 30 % of the last 10
    firing = evaluate_rule(rule.id)
    assert firing is not None and firing.data["value"] == 30.0 and "(30.0 %)" in firing.title


def test_a_window_of_minutes_judges_only_recent_results(personas, target):
    rule = make_rule(personas, target, window_results=None, window_minutes=60)
    now = timezone.now()
    add_results(target=target, count=20, ttft_ms=3000, at=now - timedelta(minutes=90))  # outside the window
    assert evaluate_rule(rule.id, now=now) is None and state(rule) == AlertRule.State.NO_DATA
    assert rule.last_sample_size == 0
    add_results(target=target, count=4, ttft_ms=200, at=now - timedelta(minutes=30))
    assert evaluate_rule(rule.id, now=now) is None and state(rule) == AlertRule.State.OK
    assert rule.last_sample_size == 4
    add_results(target=target, count=4, ttft_ms=900, at=now - timedelta(minutes=10))
    assert evaluate_rule(rule.id, now=now).kind == Alert.Kind.RULE_FIRING
    # An hour later the bad ones have left the window and nothing is new: too little data, so
    # the rule stays firing (no data is not a recovery) and nobody hears anything.
    assert evaluate_rule(rule.id, now=now + timedelta(minutes=65)) is None
    assert state(rule) == AlertRule.State.FIRING and rule.last_value is None
    assert Alert.objects.count() == 1


def test_too_few_results_is_no_data_without_an_alert(personas, target):
    rule = make_rule(personas, target, members=[personas.owner], min_results=5)
    add_results(target=target, count=4, ttft_ms=9000)
    assert evaluate_rule(rule.id) is None
    assert state(rule) == AlertRule.State.NO_DATA and rule.last_sample_size == 4
    add_results(target=target, count=5, success=False)  # failures have no TTFT: still too few values
    assert evaluate_rule(rule.id) is None and state(rule) == AlertRule.State.NO_DATA
    assert not Alert.objects.exists() and not Delivery.objects.exists()


def test_a_rule_on_a_public_catalog_model_judges_public_results_only(personas, target):
    provider = Provider.objects.create(name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://acme.example/v1")
    model = Model.objects.create(provider=provider, name="acme-large")
    rule = make_rule(personas, None, catalog_model=model, name="Acme slow")
    add_results(catalog_model=model, count=10, ttft_ms=100)
    assert evaluate_rule(rule.id) is None and state(rule) == AlertRule.State.OK
    add_results(catalog_model=model, count=10, ttft_ms=700)
    firing = evaluate_rule(rule.id)
    assert firing.title.startswith("Acme AI / acme-large: Acme slow is firing")


def test_a_disabled_rule_is_not_evaluated(personas, target):
    rule = make_rule(personas, target, is_enabled=False)
    add_results(target=target, count=10, ttft_ms=9000)
    assert evaluate_rule(rule.id) is None
    assert state(rule) == AlertRule.State.NO_DATA and rule.last_evaluated_at is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_of_one_rule_fire_once(personas, target, queued):
    rule = make_rule(personas, target, members=[personas.owner])
    add_results(target=target, count=10, ttft_ms=900)
    barrier, results, errors = threading.Barrier(8), [], []

    def evaluate() -> None:
        try:
            barrier.wait()
            results.append(evaluate_rule(rule.id))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(1 for r in results if r is not None) == 1
    assert Alert.objects.filter(rule=rule).count() == 1
    assert Delivery.objects.filter(alert__rule=rule).count() == 1
    assert len(queued.of("deliver")) == 1
    assert state(rule) == AlertRule.State.FIRING and rule.incident_count == 1
