"""What the schema fuzz test (test_schema_fuzz.py) runs against: one owner's tenant with an
object of every kind, an API token with every scope, and schemathesis hooks that send the
seeded objects' uuids as path parameters and body references about half of the time (random
uuids only ever reach the 404 branch, so the 200 responses would never be checked).

Also usable from schemathesis's CLI against a running server (`SCHEMATHESIS_HOOKS=
tests.config.schema_fuzz` and `PULSE_FUZZ_SEEDED=<json file written by seed()>`), which is how
the numbers in the issue note were measured.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import schemathesis
from hypothesis import strategies as st

# A detail route's `{uuid}` means the object of the collection before it.
COLLECTION_OF_UUID = {
    "organizations": "organization", "projects": "project", "members": "member", "invitations": "invitation",
    "tokens": "token", "providers": "provider", "models": "model", "targets": "target", "runs": "run",
    "results": "result", "events": "event", "budgets": "budget", "alert-rules": "alert_rule",
    "webhooks": "webhook", "alerts": "alert", "connections": "connection", "routes": "route", "limits": "limit",
}
# Body and query fields that name another object by uuid.
REFERENCE_FIELDS = {
    "organization": "organization", "project": "project", "api_token": "token", "target": "target",
    "catalog_model": "model", "provider": "provider", "model": "model", "budget": "budget", "rule": "alert_rule",
    "connection": "connection",
}


@dataclass
class Seeded:
    raw_token: str
    organization: str
    project: str
    member: str
    invitation: str
    token: str
    provider: str
    model: str
    target: str
    run: str
    result: str
    event: str
    budget: str
    alert_rule: str
    webhook: str
    alert: str
    connection: str
    route: str
    limit: str


# Filled by seed() (or from PULSE_FUZZ_SEEDED for the CLI); read by the hooks below.
SEEDED: dict[str, str] = {}
if os.environ.get("PULSE_FUZZ_SEEDED"):
    SEEDED.update(json.loads(open(os.environ["PULSE_FUZZ_SEEDED"]).read()))  # noqa: SIM115


def seed() -> Seeded:
    """One owner's organization with one of everything the API serves, through the domain's own
    paths (ingestion for events, notify for alerts), so rollups and deliveries exist too."""
    from django.utils import timezone

    from accounts.models import ApiToken, Invitation, Organization, Role
    from alerts import notify
    from alerts.models import AlertRule, Budget, Webhook
    from benchmarks.models import BenchmarkResult, Model, Price, Provider, ProviderKind, Run, Target
    from costs.ingestion import ingest
    from costs.models import CostEvent
    from gateway.models import Connection, RateLimit, Route, UpstreamSpec
    from tests.conftest import make_user

    owner = make_user("fuzz-owner@fuzz.example")
    organization = Organization.create_for_owner(owner, name="Fuzz", project_name="Fuzz prod")
    project = organization.projects.get()
    member = organization.add_member(make_user("fuzz-member@fuzz.example"), Role.MEMBER)
    invitation, _raw = Invitation.issue(organization, "invitee@fuzz.example", Role.VIEWER, by=owner)
    token, raw_token = ApiToken.issue(
        project=project, name="fuzz", scopes=[scope.value for scope in ApiToken.Scope], by=owner
    )

    provider = Provider.objects.create(name="OpenAI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://api.openai.com/v1")
    model = Model.objects.create(provider=provider, name="gpt-4o-mini", is_active=True)
    # As costs.pricing adds providers from the price database: no base URL known.
    Provider.objects.create(name="Groq", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="", is_active=False)
    now = timezone.now()
    Price.objects.create(model=model, input_mtok=Decimal("0.15"), output_mtok=Decimal("0.6"), valid_from=now - timedelta(days=60))
    target = Target.objects.create(
        organization=organization, name="Fuzz endpoint", kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url="https://llm.fuzz.example/v1", model_names=["gpt-4o-mini"],
    )
    run = Run.objects.create(
        name="earlier", triggered_by=Run.Trigger.MANUAL, organization=organization, target=target,
        status=Run.Status.FINISHED, started_at=now - timedelta(hours=1), finished_at=now - timedelta(hours=1),
    )
    # A private target's result has no catalog provider or model: both are null.
    result = BenchmarkResult.objects.create(
        run=run, organization=organization, target=target, provider_name=target.name, model_name="gpt-4o-mini",
        success=True, status_code=200, ttft_ms=120.5, total_latency_ms=900.0, tps=80.0, output_tokens=50,
        cost_usd=Decimal("0"), is_priced=True, created_at=now - timedelta(hours=1),
    )
    public_run = Run.objects.create(name="public", triggered_by=Run.Trigger.SCHEDULE, status=Run.Status.FINISHED)
    BenchmarkResult.objects.create(
        run=public_run, provider=provider, model=model, provider_name=provider.name, model_name=model.name,
        success=False, status_code=500, error_kind="server_error", error_message="upstream 500",
        created_at=now - timedelta(hours=2),
    )

    events = [
        {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1200, "output_tokens": 300,
         "tags": {"feature": "chat"}, "idempotency_key": "fuzz-1"},
        {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 0, "output_tokens": 0, "cost_usd": "0",
         "idempotency_key": "fuzz-2"},
        {"provider": "acme", "model": "unpriced-model", "input_tokens": 10, "output_tokens": 5, "status_code": 500,
         "idempotency_key": "fuzz-3"},
    ]
    outcome = ingest(project, events, token=token)
    assert outcome.inserted == len(events), outcome.errors
    event = CostEvent.objects.filter(project=project).order_by("occurred_at", "id").first()

    webhook = Webhook(organization=organization, name="Ops", url="https://hooks.fuzz.example/pulse")
    webhook.rotate_secret()
    webhook.save()
    budget = Budget.objects.create(organization=organization, project=project, name="Prod", amount=Decimal("100"))
    budget.webhooks.add(webhook)
    Budget.objects.create(organization=organization, name="Whole org", amount=Decimal("1000"))
    alert_rule = AlertRule.objects.create(
        organization=organization, name="Slow", target=target, metric=AlertRule.Metric.TTFT_P95, threshold=500, window_results=10,
    )
    alert = notify.send_test_alert(organization, by_name="fuzz", webhook=webhook)

    connection = Connection(
        organization=organization, name="Fuzz OpenAI", kind=ProviderKind.OPENAI_COMPATIBLE, provider="openai",
        base_url="https://api.openai.com/v1",
    )
    connection.api_key = "sk-fuzz-secret"
    connection.save()
    route = Route.objects.create(project=project, name="fast-chat", strategy=Route.Strategy.FASTEST)
    route.replace_upstreams([UpstreamSpec(connection, "gpt-4o-mini"), UpstreamSpec(connection, "gpt-4o", 3)])
    limit = RateLimit.objects.create(project=project, api_token=token, requests_per_minute=60, tokens_per_day=10**6)

    seeded = Seeded(
        raw_token=raw_token, organization=str(organization.uuid), project=str(project.uuid),
        member=str(member.uuid), invitation=str(invitation.uuid), token=str(token.uuid),
        provider=str(provider.uuid), model=str(model.uuid), target=str(target.uuid), run=str(run.uuid),
        result=str(result.uuid), event=str(event.uuid), budget=str(budget.uuid),
        alert_rule=str(alert_rule.uuid), webhook=str(webhook.uuid), alert=str(alert.uuid),
        connection=str(connection.uuid), route=str(route.uuid), limit=str(limit.uuid),
    )
    SEEDED.clear()
    SEEDED.update(asdict(seeded))
    return seeded


def seeded_for_path(path: str, name: str) -> str | None:
    """The seeded object a path parameter names: `{organization_uuid}` an organization, and a
    `{uuid}` the object of the collection just before it (`/webhooks/{uuid}/…` a webhook)."""
    if name.endswith("_uuid"):
        return SEEDED.get(name.removesuffix("_uuid"))
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment == "{" + name + "}" and index > 0:
            kind = COLLECTION_OF_UUID.get(segments[index - 1])
            return SEEDED.get(kind) if kind else None
    return None


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _sometimes(value: Any, seeded: str | None) -> st.SearchStrategy:
    """The generated value or the seeded one. Only a well-formed uuid is swapped: a malformed
    one is negative testing's deliberate mistake, which must reach the server as it is."""
    return st.sampled_from([value, seeded]) if seeded and _is_uuid(value) else st.just(value)


@schemathesis.auth(refresh_interval=None)  # a new token per test: never reuse an old one
class SeededToken:
    """The seeded owner's all-scope API token, as the schema's bearer scheme says."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str | None:
        return SEEDED.get("raw_token")  # None (no header) until seed() ran

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict) -> st.SearchStrategy:
    path = context.operation.path
    return st.fixed_dictionaries(
        {name: _sometimes(value, seeded_for_path(path, name)) for name, value in (path_parameters or {}).items()}
    )


def _with_seeded_references(values: Any) -> st.SearchStrategy:
    """Each string naming a reference (organization, target, …) is, half of the time, a seeded
    object the caller can see; also inside lists of objects (a route's upstreams name their
    connections)."""
    if not SEEDED:
        return st.just(values)
    if isinstance(values, list):
        return st.tuples(*(_with_seeded_references(value) for value in values)).map(list)
    if not isinstance(values, dict):
        return st.just(values)
    return st.fixed_dictionaries(
        {
            name: _sometimes(value, SEEDED.get(REFERENCE_FIELDS.get(name, "")))
            if isinstance(value, str) else _with_seeded_references(value)
            for name, value in values.items()
        }
    )


@schemathesis.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy:
    """A reference to an object (organization, target, …) is, half of the time, a seeded one the
    caller can see: otherwise every create would stop at "object does not exist"."""
    return _with_seeded_references(body)


@schemathesis.hook
def flatmap_query(context: schemathesis.HookContext, query: Any) -> st.SearchStrategy:
    return _with_seeded_references(query)
