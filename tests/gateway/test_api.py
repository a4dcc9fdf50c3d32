"""The gateway's management API (/api/v1/gateway/…), read as a specification.

With the personas of tests/conftest.py (owner, admin, member, viewer of Acme; an outsider who owns
Bravo): everyone in Acme reads Acme's connections, routes, settings, limits and callable models;
members and up (and tokens with the write scope) change them; a viewer's or a read-only token's
write is 403 and changes nothing; the outsider gets 404 for every Acme object, exactly as for one
that does not exist. Bad input is a 400 on the offending field (for upstreams, on the offending
index), never a 500. A connection's API key is written, never read back.
"""

from __future__ import annotations

import json
import uuid

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, Project
from gateway.models import (
    Connection,
    GatewaySettings,
    RateLimit,
    Route,
    RouteUpstream,
    UpstreamSpec,
)
from gateway.serializers import ConnectionSerializer, RateLimitSerializer
from tests.conftest import Personas

from .factories import (
    OTHER_SECRET,
    SECRET,
    GatewayWorld,
    build_world,
    leaks_a_key,
    make_connection,
    member_of_both,
)

pytestmark = pytest.mark.django_db

API = "/api/v1/gateway"
MEMBERS = ["owner", "admin", "member"]


def call(client: APIClient, method: str, url: str, body: object = None):
    data = "" if body is None else json.dumps(body)
    return client.generic(method, f"{API}{url}", data=data, content_type="application/json")


@pytest.fixture
def world(personas: Personas) -> GatewayWorld:
    return build_world(personas)


def connection_body(**overrides: object) -> dict:
    return {
        "organization": "{org}", "name": "Groq", "kind": "openai_compatible", "provider": "Groq",
        "base_url": "https://api.groq.com/openai/v1", "api_key": "gsk-new-key-123",
    } | overrides


def route_body(**overrides: object) -> dict:
    return {
        "project": "{project}", "name": "smart-chat", "strategy": "ordered",
        "upstreams": [{"connection": "{connection}", "model": "gpt-4o"}, {"connection": "{connection}", "model": "gpt-4o-mini", "weight": 5}],
    } | overrides


def snapshot(*models: type) -> list:
    return [json.dumps(list(model.objects.order_by("pk").values()), default=str) for model in models]


GATEWAY_MODELS = (Connection, Route, RouteUpstream, GatewaySettings, RateLimit)
READS = [
    "/connections", "/connections/{connection}", "/routes", "/routes/{route}", "/routes?project={project}",
    "/limits", "/limits/{limit}", "/settings/{project}", "/models?project={project}",
]
# (method, url, body, the status when allowed)
WRITES = {
    "create connection": ("POST", "/connections", connection_body(), 201),
    "patch connection": ("PATCH", "/connections/{connection}", {"name": "Renamed"}, 200),
    "put connection": ("PUT", "/connections/{connection}", connection_body(name="Replaced", base_url="https://api.openai.com/v2"), 200),
    "delete connection": ("DELETE", "/connections/{anthropic}", None, 204),
    "create route": ("POST", "/routes", route_body(), 201),
    "patch route": ("PATCH", "/routes/{route}", {"strategy": "weighted"}, 200),
    "put route": ("PUT", "/routes/{route}", route_body(name="replaced"), 200),
    "delete route": ("DELETE", "/routes/{route}", None, 204),
    "create limit": ("POST", "/limits", {"project": "{project}", "api_token": "{token}", "tokens_per_minute": 5000}, 201),
    "patch limit": ("PATCH", "/limits/{limit}", {"requests_per_day": 1000}, 200),
    "put limit": ("PUT", "/limits/{limit}", {"requests_per_minute": 30}, 200),
    "delete limit": ("DELETE", "/limits/{limit}", None, 204),
    "patch settings": ("PATCH", "/settings/{project}", {"cache_enabled": True}, 200),
    "put settings": ("PUT", "/settings/{project}", {"store_bodies": True, "body_retention_days": 3}, 200),
}
DETAILS = [
    (method, url) for url in ("/connections/{connection}", "/routes/{route}", "/limits/{limit}")
    for method in ("GET", "PATCH", "PUT", "DELETE")
] + [("GET", "/settings/{project}"), ("PATCH", "/settings/{project}"), ("PUT", "/settings/{project}"),
     ("GET", "/models?project={project}")]


# ---------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", ["owner", "admin", "member", "viewer"])
def test_everyone_in_the_organization_reads(world, api_as, persona):
    client = api_as(persona)
    for url in READS:
        response = call(client, "GET", world.fill(url))
        assert response.status_code == 200, (url, response.status_code, response.content)


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("persona", MEMBERS)
def test_members_write(world, api_as, persona, write):
    method, url, body, allowed = WRITES[write]
    response = call(api_as(persona), method, world.fill(url), world.fill(body))
    assert response.status_code == allowed, response.content


@pytest.mark.parametrize("write", list(WRITES))
def test_a_viewer_and_a_read_only_token_are_refused_every_write(world, api_as, token_client, write):
    method, url, body, _allowed = WRITES[write]
    read_only, _token = token_client(["read"])
    before = snapshot(*GATEWAY_MODELS)
    for client in (api_as("viewer"), read_only):
        response = call(client, method, world.fill(url), world.fill(body))
        assert response.status_code == 403, (write, response.content)
    assert snapshot(*GATEWAY_MODELS) == before


@pytest.mark.parametrize(("method", "url"), DETAILS)
def test_the_outsider_gets_404_exactly_as_for_nothing(world, api_as, token_client, method, url):
    missing = url.format(**{name: str(uuid.uuid4()) for name in world.ids()})
    outsider_token, _ = token_client(["read", "write"], project=world.personas.other_project)
    before = snapshot(*GATEWAY_MODELS)
    for client in (api_as("outsider"), outsider_token):
        got = call(client, method, world.fill(url), {"name": "x"})
        nothing = call(client, method, missing, {"name": "x"})
        assert got.status_code == nothing.status_code == 404, (got.content, nothing.content)
        assert got.json() == nothing.json()
    assert snapshot(*GATEWAY_MODELS) == before


def test_the_outsider_lists_none_of_acmes_objects(world, api_as):
    client = api_as("outsider")
    for url, found in (("/connections", "Bravo OpenAI"), ("/routes", "bravo-chat"), ("/limits", None)):
        text = call(client, "GET", url).content.decode()
        assert "Acme" not in text and str(world.connection.uuid) not in text and "fast-chat" not in text
        if found:
            assert found in text
    assert call(client, "GET", world.fill("/routes?project={project}")).json()["results"] == []


def test_a_write_scoped_token_writes_its_projects_routes_limits_and_settings(world, token_client):
    client, _token = token_client(["write"])
    assert call(client, "POST", "/routes", world.fill(route_body())).status_code == 201
    assert call(client, "PATCH", world.fill("/settings/{project}"), {"cache_enabled": True}).status_code == 200
    assert call(client, "PATCH", world.fill("/limits/{limit}"), {"tokens_per_day": 10}).status_code == 200
    # A project-bound token sees its own project only: another project of the organization is unknown.
    response = call(client, "POST", "/routes", world.fill(route_body(project="{staging}")))
    assert response.status_code == 400
    assert "does not exist" in response.json()["project"][0]
    assert call(client, "GET", world.fill("/settings/{staging}")).status_code == 404
    # …and it may leave ?project= out where one project is meant.
    assert call(client, "GET", "/models").json()["project"] == str(world.personas.project.uuid)


def test_a_project_bound_token_reads_connections_but_never_changes_them(world, token_client):
    """A connection serves every project of the organization (and carries its key): one
    project's token must not repoint it, delete it, or add to the organization's."""
    client, _token = token_client(["read", "write"])
    listed = call(client, "GET", "/connections").json()["results"]
    assert {row["name"] for row in listed} == {"OpenAI", "Anthropic"}
    before = snapshot(Connection)
    for method, url, body in (
        ("POST", "/connections", connection_body()),
        ("PATCH", "/connections/{connection}", {"base_url": "https://evil.example/v1", "api_key": "x"}),
        ("DELETE", "/connections/{anthropic}", None),
    ):
        response = call(client, method, world.fill(url), world.fill(body))
        assert response.status_code == 403, response.content
        assert "bound to one project" in response.json()["detail"]
    assert snapshot(Connection) == before


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------
def test_a_connection_is_created_with_its_key_stored_encrypted_and_never_returned(world, api_as):
    response = call(api_as("member"), "POST", "/connections", world.fill(connection_body(api_key="gsk-secret-42")))

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["has_key"] is True and "api_key" not in body
    assert body["provider"] == "groq"  # priced and rolled up under the normalised name, as ingestion does
    assert body["route_count"] == 0
    stored = Connection.objects.get(uuid=body["uuid"])
    assert stored.api_key != "gsk-secret-42" and stored.api_key.reveal() == "gsk-secret-42"
    assert "gsk-secret-42" not in response.content.decode() and str(stored.api_key) not in response.content.decode()


def test_a_connection_without_a_key_is_fine(world, api_as):
    body = connection_body(name="Local vLLM", base_url="https://vllm.acme.example/v1")
    del body["api_key"]
    response = call(api_as("member"), "POST", "/connections", world.fill(body))
    assert response.status_code == 201
    assert response.json()["has_key"] is False


def test_the_key_is_kept_replaced_or_removed(world, api_as):
    client, url = api_as("member"), world.fill("/connections/{connection}")

    assert call(client, "PATCH", url, {"name": "OpenAI prod"}).json()["has_key"] is True
    assert Connection.objects.get(pk=world.connection.pk).api_key.reveal() == SECRET
    assert call(client, "PATCH", url, {"api_key": "sk-rotated"}).status_code == 200
    assert Connection.objects.get(pk=world.connection.pk).api_key.reveal() == "sk-rotated"
    assert call(client, "PATCH", url, {"api_key": ""}).json()["has_key"] is False
    assert Connection.objects.get(pk=world.connection.pk).api_key == ""


def test_moving_a_connection_to_another_host_needs_the_key_again(world, api_as):
    """Whoever may edit a connection must not be able to point it at their own server and
    receive the key someone else entered."""
    client, url = api_as("member"), world.fill("/connections/{connection}")

    refused = call(client, "PATCH", url, {"base_url": "https://collector.evil.example/v1"})
    assert refused.status_code == 400
    assert "send the API key again" in refused.json()["api_key"][0]
    assert Connection.objects.get(pk=world.connection.pk).base_url == "https://api.openai.com/v1"
    # Another path on the same host keeps the key; another host with the key (or "") is fine.
    assert call(client, "PATCH", url, {"base_url": "https://api.openai.com/v2"}).status_code == 200
    assert call(client, "PATCH", url, {"base_url": "https://eu.api.openai.com/v1", "api_key": "sk-eu"}).status_code == 200
    assert call(client, "PATCH", url, {"base_url": "http://eu.api.openai.com/v1", "api_key": ""}).status_code == 200
    # Without a stored key there is nothing to protect.
    assert call(client, "PATCH", url, {"base_url": "https://elsewhere.example/v1"}).status_code == 200


def test_a_private_base_url_is_refused_with_a_field_message(world, api_as, private_refused):
    for url in ("http://127.0.0.1:6379/v1", "http://169.254.169.254/latest", "http://[::ffff:10.0.0.1]/v1"):
        response = call(api_as("member"), "POST", "/connections", world.fill(connection_body(base_url=url)))
        assert response.status_code == 400, url
        assert list(response.json()) == ["base_url"], response.json()
    assert not Connection.objects.filter(name="Groq").exists()


def test_the_organization_of_a_connection_never_changes(world, api_as):
    member = member_of_both(world.personas)
    client = APIClient()
    client.force_authenticate(member)
    response = call(client, "PATCH", world.fill("/connections/{connection}"), world.fill({"organization": "{other_org}"}))
    assert response.status_code == 400
    assert response.json() == {"organization": ["Read-only: leave it out."]}
    assert Connection.objects.get(pk=world.connection.pk).organization == world.personas.org


def test_what_get_returns_can_be_put_back(world, api_as):
    """Read-only fields are accepted with the value they already have (a GET body sent back)."""
    client = api_as("member")
    for url in ("/connections/{connection}", "/routes/{route}", "/limits/{limit}", "/settings/{project}"):
        shown = call(client, "GET", world.fill(url)).json()
        response = call(client, "PUT", world.fill(url), shown)
        assert response.status_code == 200, (url, response.content)
        assert response.json() | {"updated_at": None} == shown | {"updated_at": None}
    assert Connection.objects.get(pk=world.connection.pk).api_key.reveal() == SECRET


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": 5}, "name", "Not a valid string."),
        ({"name": ""}, "name", "This field may not be blank."),
        ({"name": "OpenAI"}, "name", "Acme already has a connection named “OpenAI”."),
        ({"kind": "carrier_pigeon"}, "kind", "is not a valid choice"),
        ({"kind": 1}, "kind", "is not a valid choice"),
        ({"provider": "  "}, "provider", "This field may not be blank."),
        ({"base_url": "not a url"}, "base_url", "Enter an http:// or https:// URL."),
        ({"base_url": "ftp://files.example/v1"}, "base_url", "Enter an http:// or https:// URL."),
        ({"base_url": 12}, "base_url", "Not a valid string."),
        ({"api_key": ["sk"]}, "api_key", "Not a valid string."),
        ({"is_enabled": "yes"}, "is_enabled", "Must be a valid boolean."),
        ({"organization": 7}, "organization", "Invalid value."),
        ({"organization": "{other_org}"}, "organization", "does not exist"),
        ({"organization": "not-a-uuid"}, "organization", "is not a valid UUID"),
        ({"has_key": True}, "has_key", "Read-only: leave it out."),
        ({"colour": "blue"}, "colour", "Unknown field."),
    ],
)
def test_bad_connection_input_is_a_400_on_the_field(world, api_as, body, field, message):
    response = call(api_as("member"), "POST", "/connections", world.fill(connection_body(**body)))

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field], response.json()
    assert message in response.json()[field][0]


@pytest.mark.parametrize("body", [[], "text", 5, None])
def test_a_body_that_is_not_an_object_is_a_400(world, api_as, body):
    response = call(api_as("member"), "POST", "/connections", body)
    assert response.status_code == 400


def test_a_connection_routes_use_is_not_deleted(world, api_as):
    response = call(api_as("member"), "DELETE", world.fill("/connections/{connection}"))

    assert response.status_code == 409
    assert "Production/fast-chat" in response.json()["detail"]
    assert Connection.objects.filter(pk=world.connection.pk).exists()
    assert world.route.upstreams.count() == 2


def test_connections_list_their_route_count_and_filter_by_organization(world, api_as):
    member = member_of_both(world.personas)
    client = APIClient()
    client.force_authenticate(member)
    everything = call(client, "GET", "/connections").json()["results"]
    assert {row["name"]: row["route_count"] for row in everything} == {"Anthropic": 0, "Bravo OpenAI": 1, "OpenAI": 1}
    acme = call(client, "GET", world.fill("/connections?organization={org}")).json()["results"]
    assert [row["name"] for row in acme] == ["Anthropic", "OpenAI"]
    assert call(client, "GET", "/connections?organization=abc").status_code == 400


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------
def test_a_route_is_created_with_its_upstreams_in_order(world, api_as):
    response = call(api_as("member"), "POST", "/routes", world.fill(route_body()))

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["project"] == str(world.personas.project.uuid) and body["strategy"] == "ordered"
    assert [(u["label"], u["weight"]) for u in body["upstreams"]] == [("OpenAI/gpt-4o", 1), ("OpenAI/gpt-4o-mini", 5)]
    route = Route.objects.get(uuid=body["uuid"])
    assert [(u.position, u.model) for u in route.upstreams.order_by("position")] == [(0, "gpt-4o"), (1, "gpt-4o-mini")]


def test_a_change_replaces_the_upstream_list_or_keeps_it(world, api_as):
    client, url = api_as("member"), world.fill("/routes/{route}")
    kept = call(client, "PATCH", url, {"strategy": "cheapest"}).json()
    assert [u["model"] for u in kept["upstreams"]] == ["gpt-4o-mini", "gpt-4o"]

    body = world.fill({"upstreams": [{"connection": "{anthropic}", "model": "claude-3-5-haiku-latest"},
                                     {"connection": "{connection}", "model": "gpt-4o-mini", "weight": 2}]})
    replaced = call(client, "PATCH", url, body).json()
    assert [u["label"] for u in replaced["upstreams"]] == ["Anthropic/claude-3-5-haiku-latest", "OpenAI/gpt-4o-mini"]
    assert RouteUpstream.objects.filter(route=world.route).count() == 2


def test_another_organizations_connection_is_a_400_on_its_upstream(world, api_as):
    """For an outsider's view it does not exist; for someone in both organizations it is not
    one this project's routes may use. Either way a field message on the index, never a 500."""
    body = route_body(upstreams=[{"connection": "{connection}", "model": "gpt-4o"},
                                 {"connection": "{other_connection}", "model": "gpt-4o"}])
    response = call(api_as("member"), "POST", "/routes", world.fill(body))
    assert response.status_code == 400
    assert list(response.json()["upstreams"]) == ["1"]
    assert "does not exist" in response.json()["upstreams"]["1"]["connection"][0]

    client = APIClient()
    client.force_authenticate(member_of_both(world.personas))
    response = call(client, "POST", "/routes", world.fill(body))
    assert response.status_code == 400
    assert response.json() == {"upstreams": {"1": {"connection": ["Choose a connection of this project's organization."]}}}
    assert not Route.objects.filter(name="smart-chat").exists()


@pytest.mark.parametrize(
    ("upstreams", "expected"),
    [
        ([], {"upstreams": {"non_field_errors": ["This list may not be empty."]}}),
        ([{"connection": "{connection}", "model": f"m{i}"} for i in range(11)],
         {"upstreams": {"non_field_errors": ["Ensure this field has no more than 10 elements."]}}),
        ([{"connection": "{connection}", "model": "gpt-4o", "weight": 0}],
         {"upstreams": {"0": {"weight": ["Ensure this value is greater than or equal to 1."]}}}),
        ([{"connection": "{connection}", "model": "gpt-4o", "weight": 1001}],
         {"upstreams": {"0": {"weight": ["Ensure this value is less than or equal to 1000."]}}}),
        ([{"connection": "{connection}", "model": "gpt-4o", "weight": "3"}],
         {"upstreams": {"0": {"weight": ["A valid integer is required."]}}}),
        ([{"connection": "{connection}", "model": "gpt-4o", "weight": True}],
         {"upstreams": {"0": {"weight": ["A valid integer is required."]}}}),
        ([{"connection": "{connection}", "model": "gpt 4o"}],
         {"upstreams": {"0": {"model": ["A model name without spaces or control characters, e.g. gpt-4o-mini or fast-chat."]}}}),
        ([{"connection": "{connection}", "model": "gpt-4o"}, {"connection": "{connection}", "model": "gpt-4o"}],
         {"upstreams": {"1": {"model": ["OpenAI/gpt-4o is listed twice; list each upstream once."]}}}),
        ([{"connection": 12, "model": "gpt-4o"}], {"upstreams": {"0": {"connection": ["Invalid value."]}}}),
        ([{"connection": str(uuid.UUID(int=1)), "model": "gpt-4o"}],
         {"upstreams": {"0": {"connection": [f"Object with uuid={uuid.UUID(int=1)} does not exist."]}}}),
        ([{"model": "gpt-4o"}], {"upstreams": {"0": {"connection": ["This field is required."]}}}),
        ([{"connection": "{connection}", "model": "gpt-4o", "wieght": 2}], {"upstreams": {"0": {"wieght": ["Unknown field."]}}}),
        (["{connection}"], {"upstreams": {"0": {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}}}),
        ({"connection": "{connection}", "model": "gpt-4o"},
         {"upstreams": {"non_field_errors": ['Expected a list of items but got type "dict".']}}),
    ],
    ids=["empty", "eleven", "weight-0", "weight-1001", "weight-string", "weight-bool", "model-space", "duplicate",
         "connection-int", "connection-unknown", "connection-missing", "unknown-field", "item-not-object", "not-a-list"],
)
def test_bad_upstreams_are_a_400_on_the_upstream(world, api_as, upstreams, expected):
    response = call(api_as("member"), "POST", "/routes", world.fill(route_body(upstreams=upstreams)))

    assert response.status_code == 400, response.content
    assert response.json() == expected
    assert not Route.objects.filter(name="smart-chat").exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "fast-chat"}, "name", "Production already has a route named “fast-chat”."),
        ({"name": "fast chat"}, "name", "without spaces"),
        ({"name": "x" * 129}, "name", "no more than 128 characters"),
        ({"name": ["a"]}, "name", "Not a valid string."),
        ({"strategy": "random"}, "strategy", "is not a valid choice"),
        ({"is_enabled": 1}, "is_enabled", "Must be a valid boolean."),
        ({"project": "{other_project}"}, "project", "does not exist"),
        ({"project": None}, "project", "This field may not be null."),
        ({"uuid": "{route}"}, "uuid", "Read-only: leave it out."),
    ],
)
def test_bad_route_input_is_a_400_on_the_field(world, api_as, body, field, message):
    response = call(api_as("member"), "POST", "/routes", world.fill(route_body(**body)))

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field], response.json()
    assert message in response.json()[field][0]


def test_a_route_name_is_unique_per_project_only(world, api_as):
    response = call(api_as("member"), "POST", "/routes", world.fill(route_body(project="{staging}", name="fast-chat")))
    assert response.status_code == 201, response.content


def test_a_route_never_moves_to_another_project(world, api_as):
    response = call(api_as("member"), "PATCH", world.fill("/routes/{route}"), world.fill({"project": "{staging}"}))
    assert response.status_code == 400
    assert response.json() == {"project": ["Read-only: leave it out."]}


def test_routes_are_filtered_by_project(world, api_as):
    client = api_as("member")
    call(client, "POST", "/routes", world.fill(route_body(project="{staging}", name="staging-chat")))
    assert [r["name"] for r in call(client, "GET", world.fill("/routes?project={staging}")).json()["results"]] == ["staging-chat"]
    assert call(client, "GET", "/routes?project=nope").status_code == 400


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
def test_settings_read_as_the_defaults_without_creating_a_row(world, api_as):
    response = call(api_as("viewer"), "GET", world.fill("/settings/{project}"))

    assert response.json() == {
        "project": str(world.personas.project.uuid), "cache_enabled": False, "cache_ttl_seconds": 3600,
        "store_bodies": False, "body_retention_days": 7, "body_max_bytes": 32768, "updated_at": None,
    }
    assert not GatewaySettings.objects.exists()


def test_a_member_changes_the_settings(world, api_as):
    response = call(api_as("member"), "PATCH", world.fill("/settings/{project}"),
                    {"cache_enabled": True, "cache_ttl_seconds": 60, "store_bodies": True, "body_max_bytes": 4096})

    assert response.status_code == 200
    saved = GatewaySettings.objects.get(project=world.personas.project)
    assert (saved.cache_enabled, saved.cache_ttl_seconds, saved.store_bodies, saved.body_max_bytes) == (True, 60, True, 4096)
    assert response.json()["updated_at"] is not None


def test_a_refused_settings_change_leaves_no_row_behind(world, api_as):
    assert call(api_as("viewer"), "PATCH", world.fill("/settings/{project}"), {"cache_enabled": True}).status_code == 403
    assert call(api_as("member"), "PATCH", world.fill("/settings/{project}"), {"cache_ttl_seconds": 0}).status_code == 400
    assert not GatewaySettings.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"cache_ttl_seconds": 0}, "cache_ttl_seconds", "greater than or equal to 1"),
        ({"cache_ttl_seconds": 30 * 86400 + 1}, "cache_ttl_seconds", "less than or equal to 2592000"),
        ({"cache_ttl_seconds": "60"}, "cache_ttl_seconds", "A valid integer is required."),
        ({"cache_enabled": "true"}, "cache_enabled", "Must be a valid boolean."),
        ({"body_retention_days": 91}, "body_retention_days", "less than or equal to 90"),
        ({"body_max_bytes": 255}, "body_max_bytes", "greater than or equal to 256"),
        ({"body_max_bytes": 1.5}, "body_max_bytes", "A valid integer is required."),
        ({"project": "{staging}"}, "project", "Read-only: leave it out."),
        ({"cache": True}, "cache", "Unknown field."),
    ],
)
def test_bad_settings_are_a_400_on_the_field(world, api_as, body, field, message):
    response = call(api_as("member"), "PATCH", world.fill("/settings/{project}"), world.fill(body))

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert message in response.json()[field][0]


def test_settings_of_an_unknown_project_are_404(world, api_as):
    for url in (f"/settings/{uuid.uuid4()}", "/settings/not-a-uuid"):
        assert call(api_as("member"), "GET", url).status_code == 404
        assert call(api_as("member"), "PATCH", url, {"cache_enabled": True}).status_code == 404


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------
def test_limits_for_the_project_and_for_one_token(world, api_as):
    client = api_as("member")
    response = call(client, "POST", "/limits", world.fill({"project": "{project}", "api_token": "{token}", "tokens_per_minute": 5000}))

    assert response.status_code == 201, response.content
    assert response.json() | {"uuid": None, "created_at": None, "updated_at": None} == {
        "uuid": None, "project": str(world.personas.project.uuid), "api_token": str(world.token.uuid),
        "api_token_name": "Backend", "scope": "token", "requests_per_minute": None, "tokens_per_minute": 5000,
        "requests_per_day": None, "tokens_per_day": None, "created_at": None, "updated_at": None,
    }
    project_wide = call(client, "GET", world.fill("/limits/{limit}")).json()
    assert (project_wide["scope"], project_wide["api_token"], project_wide["api_token_name"]) == ("project", None, None)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "non_field_errors", "Set at least one limit"),
        ({"requests_per_minute": None}, "non_field_errors", "Set at least one limit"),
        ({"requests_per_minute": 5, "api_token": None}, "api_token", "The project already has project-wide limits"),
        ({"requests_per_minute": 0, "api_token": "{token}"}, "requests_per_minute", "greater than or equal to 1"),
        ({"requests_per_minute": 10**12 + 1, "api_token": "{token}"}, "requests_per_minute", "less than or equal to"),
        ({"tokens_per_day": "100", "api_token": "{token}"}, "tokens_per_day", "A valid integer is required."),
        ({"tokens_per_day": -1, "api_token": "{token}"}, "tokens_per_day", "greater than or equal to 1"),
        ({"requests_per_day": 5, "api_token": "not-a-uuid"}, "api_token", "is not a valid UUID"),
        ({"requests_per_day": 5, "api_token": "{other_route}"}, "api_token", "does not exist"),
        ({"requests_per_day": 5, "rpm": 5}, "rpm", "Unknown field."),
    ],
)
def test_bad_limits_are_a_400_on_the_field(world, api_as, body, field, message):
    response = call(api_as("member"), "POST", "/limits", world.fill({"project": "{project}", **body}))

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field], response.json()
    assert message in response.json()[field][0]


def test_a_limit_names_a_token_of_its_own_project(world, api_as):
    staging_token, _raw = ApiToken.issue(project=world.staging, name="Staging", scopes=["read"], by=world.personas.owner)
    response = call(api_as("member"), "POST", "/limits", world.fill({"project": "{project}", "api_token": str(staging_token.uuid), "requests_per_minute": 5}))
    assert response.status_code == 400
    assert response.json() == {"api_token": ["Choose a token of this project."]}
    # One row per token.
    ok = call(api_as("member"), "POST", "/limits", world.fill({"project": "{project}", "api_token": "{token}", "requests_per_minute": 5}))
    again = call(api_as("member"), "POST", "/limits", world.fill({"project": "{project}", "api_token": "{token}", "requests_per_day": 5}))
    assert ok.status_code == 201 and again.status_code == 400
    assert again.json() == {"api_token": ["This token already has limits here; change those instead."]}


# ---------------------------------------------------------------------------------------------
# The models a project may call
# ---------------------------------------------------------------------------------------------
def test_models_lists_the_routes_a_caller_may_name(world, api_as):
    disabled_connection = make_connection(world.personas.org, "Old", enabled=False)
    for name, connection, enabled in (("old-chat", disabled_connection, True), ("paused", world.connection, False)):
        route = Route.objects.create(project=world.personas.project, name=name, is_enabled=enabled)
        route.replace_upstreams([UpstreamSpec(connection, "m")])
    mixed = Route.objects.create(project=world.personas.project, name="mixed")
    mixed.replace_upstreams([UpstreamSpec(disabled_connection, "a"), UpstreamSpec(world.anthropic, "claude")])

    response = call(api_as("viewer"), "GET", world.fill("/models?project={project}"))

    assert response.status_code == 200
    assert response.json() == {
        "project": str(world.personas.project.uuid), "base_url": "http://127.0.0.1:8001/v1",
        "models": [
            {"id": "fast-chat", "strategy": "fastest", "upstreams": ["OpenAI/gpt-4o-mini", "OpenAI/gpt-4o"]},
            {"id": "mixed", "strategy": "ordered", "upstreams": ["Anthropic/claude"]},
        ],
    }


def test_models_need_a_project_a_person_can_see(world, api_as):
    assert call(api_as("member"), "GET", "/models").status_code == 400
    assert call(api_as("member"), "GET", "/models?project=abc").status_code == 400
    assert call(api_as("outsider"), "GET", world.fill("/models?project={project}")).status_code == 404


# ---------------------------------------------------------------------------------------------
# Keys never leave
# ---------------------------------------------------------------------------------------------
def test_no_response_carries_a_key(world, api_as, token_client):
    responses = []
    for persona in ("owner", "viewer", "outsider"):
        client = api_as(persona)
        for url in READS + ["/connections/{other_connection}"]:
            responses.append(call(client, "GET", world.fill(url)))
    client = api_as("member")
    for method, url, body, _ in WRITES.values():
        responses.append(call(client, method, world.fill(url), world.fill(body)))
    responses.append(call(client, "PATCH", world.fill("/connections/{connection}"), {"name": 7}))  # a 400 too
    token, _ = token_client(["read"])
    responses.append(call(token, "GET", "/connections"))
    for response in responses:
        text = response.content.decode()
        assert not leaks_a_key(text, world.connection, world.other_connection), response.request
        assert SECRET not in text and OTHER_SECRET not in text


def test_a_project_without_routes_has_no_models(personas, api_as):
    project = Project.objects.create(organization=personas.org, name="Empty")
    response = call(api_as("viewer"), "GET", f"/models?project={project.uuid}")
    assert response.json()["models"] == []


# ---------------------------------------------------------------------------------------------
# Races: a name taken between the check and the save is still a 400
# ---------------------------------------------------------------------------------------------
def someone_else_saves_first(monkeypatch, serializer: type, save_theirs) -> None:
    """Between this request's checks and its save, a concurrent request saves the same name."""
    validate = serializer.validate

    def validate_then_lose_the_race(self, attrs):
        attrs = validate(self, attrs)
        save_theirs()
        return attrs

    monkeypatch.setattr(serializer, "validate", validate_then_lose_the_race)


def test_a_connection_name_taken_meanwhile_is_a_400_not_a_500(world, api_as, monkeypatch):
    someone_else_saves_first(monkeypatch, ConnectionSerializer, lambda: make_connection(world.personas.org, "Groq"))
    response = call(api_as("member"), "POST", "/connections", world.fill(connection_body()))
    assert response.status_code == 400, response.content
    assert response.json() == {"name": ["Acme already has a connection named “Groq”."]}
    assert Connection.objects.filter(name="Groq").count() == 1


def test_a_limit_taken_meanwhile_is_a_400_not_a_500(world, api_as, monkeypatch):
    someone_else_saves_first(
        monkeypatch, RateLimitSerializer,
        lambda: RateLimit.objects.create(project=world.personas.project, api_token=world.token, tokens_per_day=1),
    )
    body = world.fill({"project": "{project}", "api_token": "{token}", "requests_per_day": 9})
    response = call(api_as("member"), "POST", "/limits", body)
    assert response.status_code == 400, response.content
    assert response.json() == {"api_token": ["This token already has limits here; change those instead."]}
    assert RateLimit.objects.get(api_token=world.token).tokens_per_day == 1
