"""The benchmarks API (/api/v1/benchmarks/…), read as a specification.

With the personas of tests/conftest.py (owner, admin, member, viewer of Acme; an outsider who owns
Bravo): everyone in Acme reads Acme's targets, runs and results; members and up change targets and
start runs; a viewer's write is 403; the outsider gets 404 (or, naming Acme's target in a body,
the same 400 as for a target that does not exist); anonymous callers 401; a wrong method 405; a
malformed UUID in a path 404; bad input 400 on the offending field. A target's API key is written,
never read back. The public catalog and the public benchmarks are readable by anyone signed in.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from benchmarks import tasks
from benchmarks.models import BenchmarkResult, Model, Price, Provider, ProviderKind, Run, Target
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

API = "/api/v1/benchmarks"
MEMBERS = ["owner", "admin", "member"]
SECRET = "sk-very-secret-123"


def call(client: APIClient, method: str, url: str, body: object = None):
    data = "" if body is None else json.dumps(body)
    return client.generic(method, url, data=data, content_type="application/json")


def target_body(personas: Personas, **overrides: object) -> dict:
    return {
        "organization": str(personas.org.uuid), "name": "Our gateway", "kind": "openai_compatible",
        "base_url": "https://llm.acme.example/v1", "api_key": SECRET, "model_names": ["gpt-4o-mini"],
        "prompt": "Say hello.", "max_tokens": 128, "interval_minutes": 30, "is_enabled": True,
    } | overrides


@pytest.fixture
def target(personas: Personas) -> Target:
    target = Target.objects.create(
        organization=personas.org, name="Acme endpoint", kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url="https://llm.acme.example/v1", model_names=["m1"],
    )
    target.api_key = "sk-acme"
    target.save()
    return target


@pytest.fixture
def other_target(personas: Personas) -> Target:
    return Target.objects.create(
        organization=personas.other_org, name="Bravo endpoint", kind=ProviderKind.ANTHROPIC,
        base_url="https://llm.bravo.example", model_names=["m2"],
    )


@pytest.fixture
def catalog() -> dict[str, object]:
    provider = Provider.objects.create(name="OpenAI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://api.openai.com/v1")
    other = Provider.objects.create(name="Anthropic", kind=ProviderKind.ANTHROPIC, base_url="https://api.anthropic.com")
    mini = Model.objects.create(provider=provider, name="gpt-4o-mini", is_active=True)
    old = Model.objects.create(provider=provider, name="gpt-3.5-turbo", is_active=False)
    haiku = Model.objects.create(provider=other, name="claude-haiku", is_active=True)
    start = timezone.now() - timedelta(days=30)
    Price.objects.create(model=mini, input_mtok=Decimal("0.15"), output_mtok=Decimal("0.6"), valid_from=start)
    Price.objects.create(model=mini, input_mtok=Decimal("0.1"), output_mtok=Decimal("0.4"), valid_from=start + timedelta(days=10))
    return {"provider": provider, "other": other, "mini": mini, "old": old, "haiku": haiku}


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------
def test_the_catalog_is_readable_by_anyone_signed_in_and_never_shows_credentials(api_as, catalog):
    catalog["provider"].api_key = "sk-operator"
    catalog["provider"].save()
    response = api_as("outsider").get(f"{API}/providers")

    assert response.status_code == 200
    assert [p["name"] for p in response.json()["results"]] == ["Anthropic", "OpenAI"]
    assert "api_key" not in response.json()["results"][0] and b"sk-operator" not in response.content
    detail = api_as("viewer").get(f"{API}/providers/{catalog['provider'].uuid}")
    assert detail.status_code == 200 and detail.json()["kind"] == "openai_compatible"


def test_the_catalog_needs_authentication(api_client, catalog):
    assert api_client.get(f"{API}/providers").status_code == 401
    assert api_client.get(f"{API}/models").status_code == 401


def test_models_filter_by_provider_and_active(api_as, catalog):
    client = api_as("viewer")
    names = lambda response: sorted(m["name"] for m in response.json()["results"])  # noqa: E731

    assert names(client.get(f"{API}/models")) == ["claude-haiku", "gpt-3.5-turbo", "gpt-4o-mini"]
    assert names(client.get(f"{API}/models", {"provider": str(catalog["provider"].uuid)})) == ["gpt-3.5-turbo", "gpt-4o-mini"]
    assert names(client.get(f"{API}/models", {"active": "true"})) == ["claude-haiku", "gpt-4o-mini"]
    assert names(client.get(f"{API}/models", {"provider": str(catalog["provider"].uuid), "active": "true"})) == ["gpt-4o-mini"]
    assert client.get(f"{API}/models", {"provider": "nope"}).status_code == 400


def test_a_models_price_history_is_newest_first(api_as, catalog):
    response = api_as("viewer").get(f"{API}/models/{catalog['mini'].uuid}/prices")

    assert response.status_code == 200
    assert [p["input_mtok"] for p in response.json()["results"]] == ["0.100000", "0.150000"]
    assert api_as("viewer").get(f"{API}/models/not-a-uuid/prices").status_code == 404
    assert api_as("viewer").get(f"{API}/models/{uuid.uuid4()}/prices").status_code == 404


def test_the_catalog_is_read_only(api_as, catalog):
    assert api_as("owner").post(f"{API}/providers", {"name": "X"}, format="json").status_code == 405
    assert api_as("owner").delete(f"{API}/models/{catalog['mini'].uuid}").status_code == 405


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", MEMBERS)
def test_members_create_targets_and_the_key_is_stored_encrypted_never_returned(personas, api_as, persona):
    response = call(api_as(persona), "POST", f"{API}/targets", target_body(personas))

    assert response.status_code == 201, response.content
    data = response.json()
    assert "api_key" not in data and SECRET.encode() not in response.content
    assert data["has_api_key"] is True and data["organization"] == str(personas.org.uuid)
    target = Target.objects.get(uuid=data["uuid"])
    assert target.api_key != SECRET and target.api_key.reveal() == SECRET
    assert target.created_by == personas.user(persona) and target.model_names == ["gpt-4o-mini"]


def test_a_viewer_cannot_create_a_target(personas, api_as):
    response = call(api_as("viewer"), "POST", f"{API}/targets", target_body(personas))

    assert response.status_code == 403
    assert not Target.objects.exists()


def test_the_outsider_cannot_name_acme_in_a_body(personas, api_as):
    acme = call(api_as("outsider"), "POST", f"{API}/targets", target_body(personas))
    nothing = call(api_as("outsider"), "POST", f"{API}/targets", target_body(personas, organization=str(uuid.uuid4())))

    assert acme.status_code == nothing.status_code == 400
    assert list(acme.json()) == list(nothing.json()) == ["organization"]
    assert not Target.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("kind", "carrier_pigeon"),
        ("base_url", "not a url"),
        ("base_url", "ftp://files.acme.example/v1"),  # the rules shared with the page form
        ("model_names", ["gpt-4o", "gpt-4o"]),
        ("model_names", []),
        ("model_names", [""]),
        ("model_names", "gpt-4o"),
        ("max_tokens", 0),
        ("max_tokens", 32769),
        ("interval_minutes", 4),
        ("interval_minutes", 1441),
        ("organization", "not-a-uuid"),
    ],
)
def test_bad_input_is_a_400_on_the_field_and_never_echoes_the_key(personas, api_as, field, value):
    response = call(api_as("member"), "POST", f"{API}/targets", target_body(personas, **{field: value}))

    assert response.status_code == 400
    assert list(response.json()) == [field], response.json()
    assert SECRET.encode() not in response.content
    assert not Target.objects.exists()


def test_target_names_are_unique_per_organization(personas, api_as, target):
    response = call(api_as("member"), "POST", f"{API}/targets", target_body(personas, name=target.name))
    assert response.status_code == 400 and list(response.json()) == ["name"]

    in_bravo = call(api_as("outsider"), "POST", f"{API}/targets",
                    target_body(personas, name=target.name, organization=str(personas.other_org.uuid)))
    assert in_bravo.status_code == 201


@pytest.mark.parametrize("persona", [*MEMBERS, "viewer"])
def test_everyone_in_acme_reads_its_targets(api_as, persona, target, other_target):
    client = api_as(persona)
    listing = client.get(f"{API}/targets")
    detail = client.get(f"{API}/targets/{target.uuid}")

    assert [t["uuid"] for t in listing.json()["results"]] == [str(target.uuid)]
    assert detail.status_code == 200 and detail.json()["has_api_key"] is True
    assert "api_key" not in detail.json() and b"sk-acme" not in detail.content


@pytest.mark.parametrize("url", ["{target}", str(uuid.uuid4()), "not-a-uuid"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_the_outsider_gets_404_as_for_nothing(api_as, target, url, method):
    response = call(api_as("outsider"), method, f"{API}/targets/" + url.format(target=target.uuid), {"name": "Mine"})

    assert response.status_code == 404
    target.refresh_from_db()
    assert target.name == "Acme endpoint"


@pytest.mark.parametrize(("persona", "status"), [("owner", 200), ("member", 200), ("viewer", 403)])
def test_who_may_update_a_target(api_as, target, persona, status):
    response = call(api_as(persona), "PATCH", f"{API}/targets/{target.uuid}", {"name": "Renamed", "max_tokens": 64})

    assert response.status_code == status
    target.refresh_from_db()
    assert (target.name == "Renamed") is (status == 200)


def test_updating_the_key_replaces_or_removes_it_and_the_organization_never_moves(personas, api_as, target):
    client = api_as("member")
    call(client, "PATCH", f"{API}/targets/{target.uuid}", {"api_key": "sk-new", "organization": str(personas.other_org.uuid)})
    target.refresh_from_db()
    assert target.api_key.reveal() == "sk-new" and target.organization == personas.org

    call(client, "PATCH", f"{API}/targets/{target.uuid}", {"name": "No key change"})
    target.refresh_from_db()
    assert target.api_key.reveal() == "sk-new"

    response = call(client, "PATCH", f"{API}/targets/{target.uuid}", {"api_key": ""})
    assert response.json()["has_api_key"] is False


@pytest.mark.parametrize(("persona", "status"), [("admin", 204), ("member", 204), ("viewer", 403)])
def test_who_may_delete_a_target(api_as, target, persona, status):
    response = api_as(persona).delete(f"{API}/targets/{target.uuid}")

    assert response.status_code == status
    assert Target.objects.filter(pk=target.pk).exists() is (status == 403)


def test_anonymous_callers_get_401_and_wrong_methods_405(api_client, api_as, target):
    assert api_client.get(f"{API}/targets").status_code == 401
    assert call(api_client, "POST", f"{API}/targets", {}).status_code == 401
    assert api_as("owner").post(f"{API}/targets/{target.uuid}", {}, format="json").status_code == 405
    assert api_as("owner").delete(f"{API}/targets").status_code == 405


def test_a_read_token_lists_targets_but_cannot_create_and_a_write_token_can(personas, token_client, target):
    reader, _token = token_client(["read"])
    assert [t["name"] for t in reader.get(f"{API}/targets").json()["results"]] == ["Acme endpoint"]
    refused = call(reader, "POST", f"{API}/targets", target_body(personas))
    assert refused.status_code == 403 and not Target.objects.filter(name="Our gateway").exists()

    writer, _token = token_client(["write"])
    assert call(writer, "POST", f"{API}/targets", target_body(personas)).status_code == 201
    assert Target.objects.get(name="Our gateway").created_by is None


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def queued(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(tasks.execute_run, "delay", lambda run_uuid: calls.append(run_uuid))
    return calls


@pytest.mark.parametrize("persona", MEMBERS)
def test_run_now_queues_a_pending_run_once_committed(personas, api_as, target, queued, persona, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = call(api_as(persona), "POST", f"{API}/runs", {"target": str(target.uuid)})

    assert response.status_code == 202, response.content
    data = response.json()
    assert data["status"] == "pending" and data["target"] == str(target.uuid)
    assert queued == [data["uuid"]]
    run = Run.objects.get(uuid=data["uuid"])
    assert (run.organization, run.target, run.triggered_by) == (personas.org, target, Run.Trigger.API)
    assert run.schedule_key == f"target:{target.uuid}" and run.created_by == personas.user(persona)


def test_run_now_is_refused_while_a_run_of_the_target_is_active(api_as, target, queued, django_capture_on_commit_callbacks):
    client = api_as("member")
    with django_capture_on_commit_callbacks(execute=True):
        first = call(client, "POST", f"{API}/runs", {"target": str(target.uuid)})
        second = call(client, "POST", f"{API}/runs", {"target": str(target.uuid)})

    assert first.status_code == 202
    assert second.status_code == 409 and "already pending or running" in second.json()["detail"]
    assert second.json()["run"] == first.json()["uuid"]  # the run to follow instead
    assert len(queued) == 1 and Run.objects.count() == 1


@pytest.mark.parametrize(
    ("persona", "body", "status"),
    [
        ("viewer", {"target": "{target}"}, 403),
        ("outsider", {"target": "{target}"}, 400),
        ("member", {"target": "{random}"}, 400),
        ("member", {"target": "not-a-uuid"}, 400),
        ("member", {}, 400),
        (None, {"target": "{target}"}, 401),
    ],
)
def test_run_now_refusals(api_as, api_client, target, queued, persona, body, status):
    client = api_as(persona) if persona else api_client
    filled = {k: v.format(target=target.uuid, random=uuid.uuid4()) for k, v in body.items()}

    response = call(client, "POST", f"{API}/runs", filled)

    assert response.status_code == status
    if status == 400:
        assert list(response.json()) == ["target"]
    assert not Run.objects.exists() and queued == []


def test_a_read_token_lists_runs_but_cannot_start_one(token_client, target, queued):
    reader, _token = token_client(["read"])
    Run.objects.create(name="earlier", triggered_by=Run.Trigger.MANUAL, organization=target.organization, target=target)

    assert len(reader.get(f"{API}/runs").json()["results"]) == 1
    assert call(reader, "POST", f"{API}/runs", {"target": str(target.uuid)}).status_code == 403
    assert Run.objects.count() == 1


@pytest.fixture
def runs(personas: Personas, target: Target, other_target: Target, catalog) -> dict[str, Run]:
    acme = Run.objects.create(name="acme", triggered_by=Run.Trigger.MANUAL, organization=personas.org, target=target)
    bravo = Run.objects.create(name="bravo", triggered_by=Run.Trigger.MANUAL, organization=personas.other_org, target=other_target)
    public = Run.objects.create(name="public", triggered_by=Run.Trigger.SCHEDULE, status=Run.Status.FINISHED)
    now = timezone.now()
    BenchmarkResult.objects.create(
        run=acme, organization=personas.org, target=target, provider_name=target.name, model_name="m1",
        success=True, ttft_ms=100, created_at=now - timedelta(hours=1),
    )
    BenchmarkResult.objects.create(
        run=bravo, organization=personas.other_org, target=other_target, provider_name=other_target.name,
        model_name="m2", success=True, created_at=now - timedelta(hours=1),
    )
    for model, success, age in [("mini", True, 1), ("mini", False, 30), ("haiku", True, 50)]:
        m = catalog[model]
        BenchmarkResult.objects.create(
            run=public, provider=m.provider, model=m, provider_name=m.provider.name, model_name=m.name,
            success=success, status_code=200 if success else 500, created_at=now - timedelta(hours=age),
        )
    return {"acme": acme, "bravo": bravo, "public": public}


def test_runs_list_the_callers_own_or_the_public_ones(api_as, runs):
    names = lambda response: [r["name"] for r in response.json()["results"]]  # noqa: E731

    assert names(api_as("viewer").get(f"{API}/runs")) == ["acme"]
    assert names(api_as("outsider").get(f"{API}/runs")) == ["bravo"]
    assert names(api_as("outsider").get(f"{API}/runs", {"public": "true"})) == ["public"]
    assert api_as("viewer").get(f"{API}/runs", {"public": "maybe"}).status_code == 400


def test_a_run_detail_nests_its_results_and_public_runs_are_readable_by_all(api_as, runs):
    mine = api_as("viewer").get(f"{API}/runs/{runs['acme'].uuid}")
    assert mine.status_code == 200
    assert [r["model_name"] for r in mine.json()["results"]] == ["m1"]

    public = api_as("outsider").get(f"{API}/runs/{runs['public'].uuid}")
    assert public.status_code == 200 and len(public.json()["results"]) == 3

    assert api_as("outsider").get(f"{API}/runs/{runs['acme'].uuid}").status_code == 404
    assert api_as("outsider").get(f"{API}/runs/not-a-uuid").status_code == 404


def test_runs_cannot_be_changed_or_deleted(api_as, runs):
    url = f"{API}/runs/{runs['acme'].uuid}"
    assert call(api_as("owner"), "PATCH", url, {"name": "x"}).status_code == 405
    assert api_as("owner").delete(url).status_code == 405


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
def result_models(response) -> list[str]:
    assert response.status_code == 200, response.content
    return sorted(r["model_name"] for r in response.json()["results"])


def test_results_are_the_callers_own_or_the_public_ones(api_as, runs):
    assert result_models(api_as("viewer").get(f"{API}/results")) == ["m1"]
    assert result_models(api_as("outsider").get(f"{API}/results")) == ["m2"]
    assert result_models(api_as("outsider").get(f"{API}/results", {"public": "true"})) == ["claude-haiku", "gpt-4o-mini", "gpt-4o-mini"]


def test_result_filters(api_as, runs, catalog, target):
    client = api_as("viewer")
    get = lambda **params: client.get(f"{API}/results", {"public": "true", **params})  # noqa: E731

    assert result_models(get(model=str(catalog["mini"].uuid))) == ["gpt-4o-mini", "gpt-4o-mini"]
    assert result_models(get(provider=str(catalog["other"].uuid))) == ["claude-haiku"]
    assert result_models(get(success="false")) == ["gpt-4o-mini"]
    assert result_models(get(success="true")) == ["claude-haiku", "gpt-4o-mini"]
    since = (timezone.now() - timedelta(hours=40)).isoformat()
    until = (timezone.now() - timedelta(hours=10)).isoformat()
    assert result_models(get(since=since)) == ["gpt-4o-mini", "gpt-4o-mini"]
    assert result_models(get(since=since, until=until)) == ["gpt-4o-mini"]
    assert result_models(client.get(f"{API}/results", {"target": str(target.uuid)})) == ["m1"]
    assert result_models(client.get(f"{API}/results", {"target": str(uuid.uuid4())})) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45T00:00:00Z"}, "until"),
        ({"model": "nope"}, "model"),
        ({"provider": "123"}, "provider"),
        ({"target": "x"}, "target"),
        ({"success": "perhaps"}, "success"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
    ],
)
def test_bad_result_filters_are_400_on_the_field(api_as, runs, params, field):
    response = api_as("viewer").get(f"{API}/results", params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_results_are_paginated_and_listed_without_n_plus_1(api_as, runs, catalog):
    public, mini = runs["public"], catalog["mini"]
    client = api_as("viewer")
    with CaptureQueriesContext(connection) as few:
        client.get(f"{API}/results", {"public": "true"})
    BenchmarkResult.objects.bulk_create(
        BenchmarkResult(run=public, provider=mini.provider, model=mini, provider_name="OpenAI", model_name=mini.name,
                        created_at=datetime(2026, 1, 1, tzinfo=UTC))
        for _ in range(60)
    )
    with CaptureQueriesContext(connection) as many:
        response = client.get(f"{API}/results", {"public": "true"})

    assert len(many) == len(few)
    body = response.json()
    assert body["count"] == 63 and len(body["results"]) == 50 and body["next"]
    first = body["results"][0]
    assert first["run"] == str(public.uuid) and first["model"] == str(mini.uuid) and first["provider"] == str(mini.provider.uuid)


def test_a_result_detail_follows_the_same_scoping(api_as, runs):
    acme_result = runs["acme"].results.get()
    public_result = runs["public"].results.first()
    assert api_as("viewer").get(f"{API}/results/{acme_result.uuid}").status_code == 200
    assert api_as("outsider").get(f"{API}/results/{acme_result.uuid}").status_code == 404
    assert api_as("outsider").get(f"{API}/results/{public_result.uuid}").status_code == 200


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [({"range": "1y"}, "range"), ({"range": ""}, "range"), ({"range": "24h", "public": "maybe"}, "public")],
)
def test_stats_reject_unknown_ranges(api_as, params, field):
    response = api_as("viewer").get(f"{API}/stats", params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_stats_need_authentication(api_client):
    assert api_client.get(f"{API}/stats").status_code == 401


@pytest.mark.parametrize("range_key", ["24h", "7d", "30d"])
def test_stats_of_the_public_benchmarks(api_as, runs, range_key):
    response = api_as("outsider").get(f"{API}/stats", {"range": range_key, "public": "true"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["range"] == range_key and body["public"] is True
    by_name = {row["model_name"]: row for row in body["models"]}
    expected = {"24h": {"gpt-4o-mini": 1}, "7d": {"gpt-4o-mini": 2, "claude-haiku": 1}}.get(
        range_key, {"gpt-4o-mini": 2, "claude-haiku": 1}
    )
    assert {name: row["samples"] for name, row in by_name.items()} == expected
    mini = by_name["gpt-4o-mini"]
    assert mini["provider_name"] == "OpenAI" and mini["blended_mtok_usd"] == "0.175000"
    assert mini["error_rate"] == (0.0 if range_key == "24h" else 0.5)


def test_stats_of_the_callers_own_results(api_as, runs):
    response = api_as("viewer").get(f"{API}/stats", {"range": "24h"})

    assert response.status_code == 200, response.content
    assert [row["model_name"] for row in response.json()["models"]] == ["m1"]
