"""Benchmark pages: the public leaderboard and an organization's private benchmarks, run now and
run detail, for every persona."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from benchmarks.models import BenchmarkResult, Model, Price, Provider, ProviderKind, Run, Target
from tests.conftest import client_as

pytestmark = pytest.mark.django_db


def add_result(run: Run, *, model: Model | None = None, model_name: str = "", provider_name: str = "",
               success: bool = True, ttft: float = 120.0, latency: float = 900.0, **extra) -> BenchmarkResult:
    return BenchmarkResult.objects.create(
        run=run, organization=run.organization, target=run.target, model=model,
        provider=model.provider if model else None,
        model_name=model_name or model.name, provider_name=provider_name or model.provider.name,
        success=success, ttft_ms=ttft if success else None, tps=80.0 if success else None,
        total_latency_ms=latency if success else None, error_kind="" if success else "server_error",
        status_code=200 if success else 500, created_at=timezone.now() - timedelta(minutes=5), **extra,
    )


@pytest.fixture
def public_results() -> list[BenchmarkResult]:
    direct = Provider.objects.create(name="OpenAI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://o.example/v1")
    router = Provider.objects.create(name="OpenRouter", kind=ProviderKind.OPENAI_COMPATIBLE,
                                     base_url="https://r.example/v1", is_aggregator=True)
    priced = Model.objects.create(provider=direct, name="gpt-fast")
    Price.objects.create(model=priced, input_mtok=Decimal("1"), output_mtok=Decimal("2"),
                         valid_from=timezone.now() - timedelta(days=1))
    resold = Model.objects.create(provider=router, name="resold-model")
    run = Run.objects.create(name="public", triggered_by=Run.Trigger.SCHEDULE, status=Run.Status.FINISHED)
    return [
        add_result(run, model=priced, latency=900.0, cost_usd=Decimal("0.0001"), is_priced=True),
        add_result(run, model=priced, latency=1700.0, cost_usd=Decimal("0.0001"), is_priced=True),  # jitter 400
        add_result(run, model=resold, ttft=300.0),
        add_result(run, model=resold, success=False),
    ]


@pytest.fixture
def target(personas) -> Target:
    return Target.objects.create(
        organization=personas.org, name="Our gateway", kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url="https://gw.example/v1", model_names=["private-model"],
    )


@pytest.fixture
def private_run(personas, target) -> Run:
    run = Run.objects.create(name="Our gateway (run now)", triggered_by=Run.Trigger.MANUAL,
                             organization=personas.org, target=target, status=Run.Status.FINISHED)
    add_result(run, model_name="private-model", provider_name=target.name, response_text="Latency matters because…")
    add_result(run, model_name="private-model", provider_name=target.name, success=False,
               error_message="Internal server error from upstream")
    return run


# ---------------------------------------------------------------------------------------------
# Leaderboard
# ---------------------------------------------------------------------------------------------
def test_the_leaderboard_is_public_and_shows_stats_and_charts(public_results):
    response = client_as().get(reverse("leaderboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "gpt-fast" in html and "resold-model" in html and 'data-testid="model-row"' in html
    assert 'id="benchmark-chart-data"' in html and 'id="ttft-chart"' in html and "benchmarks" in html
    assert 'data-jitter="yellow"' in html and "400 ms" in html  # a coloured dot with the value
    assert "unpriced" in html  # resold-model has no price: not $0
    assert "50 %" in html  # resold-model's error rate
    assert "No benchmark results" not in html
    assert "<script>" not in html  # CSP: no inline scripts


def test_leaderboard_filters_by_kind_and_range(public_results, personas):
    client = client_as()
    direct = client.get(reverse("leaderboard"), {"kind": "direct"}).content.decode()
    assert "gpt-fast" in direct and "resold-model" not in direct
    aggregators = client.get(reverse("leaderboard"), {"kind": "aggregator", "range": "7d"}).content.decode()
    assert "resold-model" in aggregators and "gpt-fast" not in aggregators and "last 7 days" in aggregators
    # Unknown values fall back to the defaults instead of failing.
    assert client.get(reverse("leaderboard"), {"kind": "nope", "range": "1y"}).status_code == 200
    # Private results never reach the leaderboard.
    run = Run.objects.create(name="private", triggered_by=Run.Trigger.MANUAL, organization=personas.org)
    add_result(run, model_name="secret-model", provider_name="Acme gateway")
    assert "secret-model" not in client.get(reverse("leaderboard")).content.decode()


def test_leaderboard_empty_state():
    response = client_as().get(reverse("leaderboard"))
    assert response.status_code == 200
    assert "No benchmark results in the last 24 hours yet" in response.content.decode()
    assert "No benchmark results in the last 30 days yet" in client_as().get(
        reverse("leaderboard"), {"range": "30d"}).content.decode()


def test_leaderboard_rejects_posts():
    assert client_as().post(reverse("leaderboard")).status_code == 405


def test_nav_links(personas):
    assert reverse("leaderboard") in client_as().get(reverse("home")).content.decode()
    html = client_as(personas.viewer).get(reverse("project_dashboard", args=[personas.project.uuid])).content.decode()
    assert reverse("organization_benchmarks", args=[personas.org.uuid]) in html and reverse("leaderboard") in html


# ---------------------------------------------------------------------------------------------
# Organization benchmarks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", ["owner", "admin", "member", "viewer"])
def test_members_see_their_organizations_benchmarks(personas, private_run, persona):
    response = client_as(personas.user(persona)).get(reverse("organization_benchmarks", args=[personas.org.uuid]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "private-model" in html and "Our gateway (run now)" in html and 'data-testid="run-row"' in html
    assert (">Run now</button>" in html) is (persona != "viewer")


def test_organization_benchmarks_empty_state(personas):
    html = client_as(personas.owner).get(reverse("organization_benchmarks", args=[personas.org.uuid])).content.decode()
    assert "No benchmark results in the last 24 hours yet" in html and "No private targets yet" in html


def test_outsiders_get_404_and_anonymous_users_a_login_redirect(personas, private_run):
    url = reverse("organization_benchmarks", args=[personas.org.uuid])
    assert client_as(personas.outsider).get(url).status_code == 404
    response = client_as().get(url)
    assert response.status_code == 302 and reverse("account_login") in response["Location"]
    # The outsider's own page shows nothing of Acme's.
    html = client_as(personas.outsider).get(
        reverse("organization_benchmarks", args=[personas.other_org.uuid])).content.decode()
    assert "private-model" not in html
    assert client_as(personas.owner).get("/orgs/not-a-uuid/benchmarks/").status_code == 404
    assert client_as(personas.owner).post(url).status_code == 405


# ---------------------------------------------------------------------------------------------
# Run now
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def delay():
    with mock.patch("benchmarks.tasks.execute_run.delay") as patched:
        yield patched


def run_now_url(personas, target) -> str:
    return reverse("benchmark_target_run", args=[personas.org.uuid, target.uuid])


@pytest.mark.parametrize("persona", ["owner", "member"])
def test_members_can_run_a_target_now(personas, target, delay, persona, django_capture_on_commit_callbacks):
    user = personas.user(persona)
    with django_capture_on_commit_callbacks(execute=True):  # queued only once the run is committed
        response = client_as(user).post(run_now_url(personas, target))
    run = Run.objects.get(target=target)
    assert response.status_code == 302
    assert response["Location"] == reverse("benchmark_run_detail", args=[personas.org.uuid, run.uuid])
    assert (run.organization, run.triggered_by, run.created_by, run.status) == (
        personas.org, Run.Trigger.MANUAL, user, Run.Status.PENDING)
    delay.assert_called_once_with(str(run.uuid))


def test_run_now_while_a_run_is_active_does_not_start_another(personas, target, delay, django_capture_on_commit_callbacks):
    client = client_as(personas.member)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(run_now_url(personas, target))
    response = client.post(run_now_url(personas, target), follow=True)
    assert Run.objects.filter(target=target).count() == 1 and delay.call_count == 1
    assert "already pending" in response.content.decode()


def test_run_now_is_refused_to_viewers_outsiders_anonymous_and_gets(personas, target, delay):
    url = run_now_url(personas, target)
    assert client_as(personas.viewer).post(url).status_code == 403
    assert client_as(personas.outsider).post(url).status_code == 404
    anonymous = client_as().post(url)
    assert anonymous.status_code == 302 and reverse("account_login") in anonymous["Location"]
    assert client_as(personas.owner).get(url).status_code == 405
    # A target of another organization is not found through Acme's URL.
    foreign = Target.objects.create(organization=personas.other_org, name="Theirs", kind=ProviderKind.ANTHROPIC,
                                    base_url="https://b.example", model_names=["x"])
    assert client_as(personas.owner).post(run_now_url(personas, foreign)).status_code == 404
    assert not Run.objects.exists() and not delay.called


# ---------------------------------------------------------------------------------------------
# Run detail
# ---------------------------------------------------------------------------------------------
def test_run_detail_lists_results_and_refreshes_only_while_active(personas, private_run):
    url = reverse("benchmark_run_detail", args=[personas.org.uuid, private_run.uuid])
    html = client_as(personas.viewer).get(url).content.decode()
    assert html.count('data-testid="result-row"') == 2
    assert "Latency matters because" in html and "Internal server error from upstream" in html and "<details" in html
    assert 'http-equiv="refresh"' not in html

    for status in (Run.Status.PENDING, Run.Status.RUNNING):
        private_run.status = status
        private_run.save()
        assert '<meta http-equiv="refresh" content="3">' in client_as(personas.viewer).get(url).content.decode()


def test_run_detail_access(personas, private_run):
    url = reverse("benchmark_run_detail", args=[personas.org.uuid, private_run.uuid])
    assert client_as(personas.outsider).get(url).status_code == 404
    assert client_as().get(url).status_code == 302
    assert client_as(personas.owner).post(url).status_code == 405
    assert client_as(personas.owner).get(f"/orgs/{personas.org.uuid}/benchmarks/runs/nope/").status_code == 404
    # A run of another organization is not found through Acme's URL, even by its owner.
    other = Run.objects.create(name="theirs", triggered_by=Run.Trigger.MANUAL, organization=personas.other_org)
    assert client_as(personas.owner).get(
        reverse("benchmark_run_detail", args=[personas.org.uuid, other.uuid])).status_code == 404
