"""The API takes only the JSON types its schema declares (lib/strict_fields.py).

The first test walks every request body the OpenAPI document describes — the serializers
drf-spectacular reads from the views, so an endpoint added later is covered by itself — and
fails on any writable field that would coerce a wrong type (a lax DRF field). The others send
the wrong types the schema fuzzer found accepted (ST201) and expect a 400 naming the field.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

from accounts.api_schema import AutoSchema
from alerts.models import Budget, Webhook
from alerts.serializers import ExtraEmailsField, ThresholdsField
from benchmarks.models import Target
from costs.api import BatchEventsField, ClientCostField, EventTimeField, TagsField
from lib.strict_fields import STRICT_FIELDS, StrictSlugRelatedField

pytestmark = pytest.mark.django_db

API = "/api/v1"

# Writable fields that are not strict classes, each with the reason it is safe.
ALLOWED = {
    # JSONFields whose validators check the JSON type of every item themselves
    # (alerts.models.validate_thresholds / validate_extra_emails).
    ThresholdsField: "validate_thresholds: a list of integers, not booleans",
    ExtraEmailsField: "validate_extra_emails: a list of strings",
    # EventInput documents what costs.ingestion.validate accepts; ingestion reads the raw JSON
    # and checks each type itself (tests/costs), never through these fields.
    ClientCostField: "ingestion: a number or a decimal string",
    EventTimeField: "ingestion: a date-time string or Unix seconds",
    TagsField: "ingestion: an object of strings, numbers and booleans",
    BatchEventsField: "ingestion: each event on its own",
    # DRF parses only an ISO 8601 string (or a datetime, which JSON cannot carry): a number, a
    # boolean or a list is already "invalid" (test_token_expires_at_must_be_a_string).
    serializers.DateTimeField: "strings only",
}


def request_bodies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, object]]:
    """(path, method, serializer) for every operation the schema gives a request body."""
    seen: list[tuple[str, str, object]] = []
    original = AutoSchema._get_request_body

    # drf-spectacular asks get_request_serializer() for each body (extend_schema(request=…)
    # overrides that method in a subclass, so record where it is called, not the method itself).
    def recording(self: AutoSchema, *args: object, **kwargs: object) -> object:
        if self.method in {"POST", "PUT", "PATCH"}:  # the only ones drf-spectacular gives a body
            seen.append((self.path, self.method, self.get_request_serializer()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AutoSchema, "_get_request_body", recording)
    SchemaGenerator().get_schema(request=None, public=True)
    return seen


def lax_fields(serializer: serializers.Serializer, prefix: str = "") -> list[str]:
    lax = []
    for name, field in serializer.fields.items():
        if field.read_only:
            continue
        label = f"{prefix}{name}"
        if isinstance(field, serializers.BaseSerializer):
            child = field.child if isinstance(field, serializers.ListSerializer) else field
            lax += lax_fields(child, f"{label}.")
            continue
        if type(field) in ALLOWED:
            continue
        if isinstance(field, serializers.ManyRelatedField):
            if not isinstance(field, STRICT_FIELDS):
                lax.append(f"{label} ({type(field).__name__})")
            field, label = field.child_relation, f"{label}[]"
        if not isinstance(field, STRICT_FIELDS):
            lax.append(f"{label} ({type(field).__name__})")
        elif isinstance(field, serializers.ListField) and not isinstance(field.child, STRICT_FIELDS):
            lax.append(f"{label}[] ({type(field.child).__name__})")
    return lax


def test_every_writable_field_of_every_request_body_is_strict(monkeypatch):
    bodies = request_bodies(monkeypatch)
    checked, lax = 0, []
    for path, method, serializer in bodies:
        if serializer is None:
            continue  # an operation without a body (e.g. a POST action)
        if isinstance(serializer, type):
            serializer = serializer(context={})
        if isinstance(serializer, serializers.ListSerializer):
            serializer = serializer.child
        assert isinstance(serializer, serializers.Serializer), f"{method} {path}: cannot check {serializer!r}"
        checked += 1
        lax += [f"{method} {path}: {field}" for field in lax_fields(serializer)]
    # The walk must have seen the bodies it exists for; if the recording broke, fail loudly.
    assert checked >= 20, bodies
    assert {("POST", "/api/v1/benchmarks/targets"), ("PATCH", "/api/v1/webhooks/{uuid}"), ("POST", "/api/v1/events")} <= {
        (method, path) for path, method, _ in bodies
    }
    assert lax == [], "lax fields (use lib.strict_fields):\n" + "\n".join(lax)


def test_the_walk_catches_a_lax_field():
    class Lax(serializers.Serializer):
        flag = serializers.BooleanField()
        names = serializers.ListField(child=serializers.CharField())

        hooks = StrictSlugRelatedField(slug_field="uuid", queryset=Webhook.objects.none(), many=True)
        loose = serializers.SlugRelatedField(slug_field="uuid", queryset=Webhook.objects.none(), many=True)

    assert lax_fields(Lax()) == [
        "flag (BooleanField)", "names (ListField)", "loose (ManyRelatedField)", "loose[] (SlugRelatedField)",
    ]


# ---------------------------------------------------------------------------------------------
# Behaviour: the fuzzer's findings, and their neighbours
# ---------------------------------------------------------------------------------------------
def send(client, method: str, url: str, body: dict):
    return getattr(client, method.lower())(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def target(personas) -> Target:
    return Target.objects.create(
        organization=personas.org, name="Endpoint", kind="openai_compatible",
        base_url="https://llm.example.com/v1", model_names=["gpt-4o-mini"],
    )


@pytest.fixture
def webhook(personas) -> Webhook:
    hook = Webhook(organization=personas.org, name="Ops", url="https://hooks.example.com/x")
    hook.rotate_secret()
    hook.save()
    return hook


def target_body(personas, **changes: object) -> dict:
    return {
        "organization": str(personas.org.uuid), "name": "New endpoint", "kind": "openai_compatible",
        "base_url": "https://llm.example.com/v1", "model_names": ["gpt-4o-mini"], **changes,
    }


@pytest.mark.parametrize("value", [0, 1, "true", "false", "on", None, [], {}])
def test_patch_target_is_enabled_takes_only_a_boolean(api_as, target, value):
    response = send(api_as("member"), "PATCH", f"{API}/benchmarks/targets/{target.uuid}", {"is_enabled": value})
    assert response.status_code == 400, response.content
    assert "is_enabled" in response.json()
    target.refresh_from_db()
    assert target.is_enabled is True


def test_patch_target_is_enabled_false_works(api_as, target):
    response = send(api_as("member"), "PATCH", f"{API}/benchmarks/targets/{target.uuid}", {"is_enabled": False})
    assert response.status_code == 200, response.content
    target.refresh_from_db()
    assert target.is_enabled is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", 4.379273499382433e212), ("name", 7), ("name", True), ("name", ["x"]),
        ("model_names", [1]), ("model_names", ["ok", 57942]), ("model_names", [True]), ("model_names", {"a": 1}),
        ("kind", 1), ("base_url", 5), ("prompt", 0.5), ("api_key", 12345),
        ("max_tokens", "256"), ("max_tokens", True), ("max_tokens", 1.5), ("interval_minutes", "30"),
        ("organization", 5),
    ],
)
def test_post_target_with_a_wrong_type_is_400_on_that_field(api_as, personas, field, value):
    response = send(api_as("member"), "POST", f"{API}/benchmarks/targets", target_body(personas, **{field: value}))
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Target.objects.filter(organization=personas.org).exists()


def test_post_target_takes_an_integral_number_as_an_integer(api_as, personas):
    # JSON Schema counts 5.0 as an integer, so the API does too (lib/strict_fields.py).
    response = send(api_as("member"), "POST", f"{API}/benchmarks/targets", target_body(personas, max_tokens=300.0))
    assert response.status_code == 201, response.content
    assert response.json()["max_tokens"] == 300


@pytest.mark.parametrize("value", [0, 1, "true", None])
def test_patch_webhook_is_enabled_takes_only_a_boolean(api_as, webhook, value):
    response = send(api_as("member"), "PATCH", f"{API}/webhooks/{webhook.uuid}", {"is_enabled": value})
    assert response.status_code == 400, response.content
    assert "is_enabled" in response.json()
    webhook.refresh_from_db()
    assert webhook.is_enabled is True


@pytest.mark.parametrize(("field", "value"), [("name", 12), ("format", 0), ("url", 3)])
def test_patch_webhook_with_a_wrong_type_is_400(api_as, webhook, field, value):
    response = send(api_as("member"), "PATCH", f"{API}/webhooks/{webhook.uuid}", {field: value})
    assert response.status_code == 400, response.content
    assert field in response.json()


def budget_body(personas, **changes: object) -> dict:
    return {
        "organization": str(personas.org.uuid), "name": "Monthly", "amount": "500.00", "currency": "USD",
        "period": "month", "thresholds": [50, 100], **changes,
    }


def test_a_budget_with_the_right_types_is_created(api_as, personas):
    response = send(api_as("member"), "POST", f"{API}/budgets", budget_body(personas))
    assert response.status_code == 201, response.content


def test_a_budgets_thresholds_take_integral_numbers_as_integers(api_as, personas):
    response = send(api_as("member"), "POST", f"{API}/budgets", budget_body(personas, thresholds=[80.0, 50]))
    assert response.status_code == 201, response.content
    assert response.json()["thresholds"] == [50, 80]
    assert Budget.objects.get(uuid=response.json()["uuid"]).thresholds == [50, 80]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # amount is documented as a decimal string: a JSON number (a binary float) is refused.
        ("amount", 500), ("amount", 500.5), ("amount", True), ("amount", ["500"]),
        ("thresholds", ["50"]), ("thresholds", [True]), ("thresholds", "50,100"), ("thresholds", [50.5]),
        ("is_enabled", 1), ("forecast_alerts", "true"), ("currency", 1), ("period", 0), ("name", 3),
        ("notify_members", "owner@a.example"), ("notify_members", [1]), ("extra_emails", [1]),
        ("webhooks", [1]), ("project", 7),
    ],
)
def test_a_budget_with_a_wrong_type_is_400_on_that_field(api_as, personas, field, value):
    response = send(api_as("member"), "POST", f"{API}/budgets", budget_body(personas, **{field: value}))
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Budget.objects.filter(organization=personas.org).exists()


@pytest.mark.parametrize(("field", "value"), [("amount", 10), ("thresholds", [True]), ("is_enabled", 0)])
def test_patch_budget_with_a_wrong_type_is_400(api_as, personas, field, value):
    created = send(api_as("member"), "POST", f"{API}/budgets", budget_body(personas))
    assert created.status_code == 201, created.content
    response = send(api_as("member"), "PATCH", f"{API}/budgets/{created.json()['uuid']}", {field: value})
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/projects", {"name": 5}, "name"),
        ("/organizations", {"name": 5.5}, "name"),
        ("/benchmarks/runs", {"target": 1}, "target"),
    ],
)
def test_other_bodies_refuse_wrong_types(api_as, personas, url, body, field):
    if url == "/projects":
        body = {**body, "organization": str(personas.org.uuid)}
    response = send(api_as("owner"), "POST", f"{API}{url}", body)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_token_scopes_must_be_a_list_of_strings(api_as, personas):
    url = f"{API}/projects/{personas.project.uuid}/tokens"
    for scopes in [{"read": 1}, "read", [1], [True]]:
        response = send(api_as("owner"), "POST", url, {"name": "ci", "scopes": scopes})
        assert response.status_code == 400, (scopes, response.content)
        assert "scopes" in response.json()
    response = send(api_as("owner"), "POST", url, {"name": "ci", "scopes": ["read"]})
    assert response.status_code == 201, response.content


def test_a_member_role_must_be_a_name(api_as, personas):
    membership = personas.org.memberships.get(user=personas.member)
    url = f"{API}/organizations/{personas.org.uuid}/members/{membership.uuid}"
    response = send(api_as("owner"), "PATCH", url, {"role": 3})
    assert response.status_code == 400, response.content
    assert "role" in response.json()


def test_an_unknown_uuid_string_is_refused_on_its_field(api_as, personas):
    body = target_body(personas, organization=str(uuid.uuid4()))
    response = send(api_as("member"), "POST", f"{API}/benchmarks/targets", body)
    assert response.status_code == 400
    assert "organization" in response.json()


@pytest.mark.parametrize("value", [1893456000, True, ["2030-01-01T00:00:00Z"]])
def test_token_expires_at_must_be_a_string(api_as, personas, value):
    url = f"{API}/projects/{personas.project.uuid}/tokens"
    response = send(api_as("owner"), "POST", url, {"name": "ci", "scopes": ["read"], "expires_at": value})
    assert response.status_code == 400, response.content
    assert "expires_at" in response.json()


def test_the_schemas_not_blank_pattern_is_pythons_white_space():
    # The server strips with str.strip(); the schema's pattern must call blank exactly that, in
    # any regex engine (ECMA's \s differs), or a client gets a 400 for a value the schema allows.
    from accounts.api_schema import NOT_BLANK

    pattern = re.compile(NOT_BLANK)
    for code in [*range(0xD800), *range(0xE000, 0x10000)]:
        char = chr(code)
        if char == "\x00":
            continue
        assert bool(pattern.match(char)) == bool(char.strip()), hex(code)
        assert bool(pattern.match(f" {char}\t")) == bool(char.strip()), hex(code)
    assert not pattern.match("ok\x00")


def test_a_budgets_webhooks_must_be_a_list_not_an_object_of_uuids(api_as, personas, webhook):
    # DRF takes any iterable for many=True: an object would pass as the list of its keys.
    for webhooks in [{str(webhook.uuid): True}, str(webhook.uuid)]:
        response = send(api_as("member"), "POST", f"{API}/budgets", budget_body(personas, webhooks=webhooks))
        assert response.status_code == 400, (webhooks, response.content)
        assert "webhooks" in response.json()
    response = send(api_as("member"), "POST", f"{API}/budgets", budget_body(personas, webhooks=[str(webhook.uuid)]))
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_tokens", True), ("input_tokens", "10"), ("input_tokens", 1.5), ("model", 5), ("provider", ["x"]),
        ("success", 1), ("success", "true"), ("status_code", "200"), ("status_code", False), ("latency_ms", "5"),
        ("latency_ms", True), ("source", 1), ("idempotency_key", 5), ("cost_usd", True), ("tags", ["a"]),
    ],
)
def test_event_ingestion_refuses_the_types_its_schema_does_not_declare(token_client, field, value):
    # Ingestion validates raw JSON itself (costs/ingestion.py), not through EventInput's fields.
    client, _ = token_client(["ingest"])
    event = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5, field: value}
    response = send(client, "POST", f"{API}/events", event)
    assert response.status_code == 400, response.content
    assert field in response.json()
