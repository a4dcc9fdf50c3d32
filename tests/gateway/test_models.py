"""The gateway's configuration rules, on the models (gateway/models.py), which the API, the pages
and the admin all go through."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db.models import RestrictedError

from accounts.models import ApiToken, Organization
from gateway.models import (
    MAX_UPSTREAMS_PER_ROUTE,
    Connection,
    GatewaySettings,
    RateLimit,
    Route,
    RouteUpstream,
    UpstreamsInvalid,
    UpstreamSpec,
)

from .factories import SECRET, build_world, make_connection, make_route

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(personas):
    return build_world(personas)


def test_upstreams_are_kept_in_the_order_given(world):
    route = world.route
    route.replace_upstreams([UpstreamSpec(world.anthropic, "claude", 2), UpstreamSpec(world.connection, "gpt-4o")])

    rows = list(route.upstreams.order_by("position"))
    assert [(row.position, row.label, row.weight) for row in rows] == [(0, "Anthropic/claude", 2), (1, "OpenAI/gpt-4o", 1)]


def test_the_upstream_list_rules_say_which_upstream_is_wrong(world):
    route = world.route
    with pytest.raises(UpstreamsInvalid) as invalid:
        route.check_upstreams([
            UpstreamSpec(world.connection, "gpt-4o"),
            UpstreamSpec(world.other_connection, "gpt-4o"),
            UpstreamSpec(world.connection, "gpt-4o", 0),
        ])
    assert invalid.value.overall == []
    assert invalid.value.per_upstream == {
        1: {"connection": ["Choose a connection of this project's organization."]},
        2: {"weight": ["A weight from 1 to 1000."], "model": ["OpenAI/gpt-4o is listed twice; list each upstream once."]},
    }
    assert isinstance(invalid.value, ValidationError)  # forms and the exception handler take it as one

    with pytest.raises(UpstreamsInvalid) as empty:
        route.check_upstreams([])
    assert empty.value.overall == ["Add at least one upstream: a connection and the model name it expects."]
    with pytest.raises(UpstreamsInvalid) as too_many:
        route.check_upstreams([UpstreamSpec(world.connection, f"m{i}") for i in range(MAX_UPSTREAMS_PER_ROUTE + 1)])
    assert too_many.value.overall == ["At most 10 upstreams per route."]


def test_a_connection_in_use_cannot_be_deleted_but_its_organization_can(world, personas):
    with pytest.raises(RestrictedError):
        world.connection.delete()
    assert world.route.upstreams.count() == 2

    world.route.delete()
    world.anthropic.delete()  # unused: fine

    bravo = Organization.objects.get(pk=personas.other_org.pk)
    bravo.delete()  # its connection is used by its own route, deleted in the same cascade
    assert not Connection.objects.filter(pk=world.other_connection.pk).exists()
    assert not Route.objects.filter(pk=world.other_route.pk).exists()


def test_a_project_with_routes_can_be_deleted(world, personas):
    route = make_route(world.staging, "s", [(world.connection, "m", 1)])
    world.staging.remove(by=personas.owner)
    assert Connection.objects.filter(pk=world.connection.pk).exists()
    assert not RouteUpstream.objects.filter(route_id=route.pk).exists()


def test_connection_names_are_unique_per_organization_with_a_field_message(world, personas):
    clash = Connection(organization=personas.org, name="OpenAI", kind="openai_compatible", provider="openai",
                       base_url="https://api.openai.com/v1")
    with pytest.raises(ValidationError) as error:
        clash.full_clean()
    assert error.value.message_dict == {"name": ["Acme already has a connection named “OpenAI”."]}
    Connection(organization=personas.other_org, name="OpenAI", kind="openai_compatible", provider="openai",
               base_url="https://api.openai.com/v1").full_clean()


def test_the_provider_is_normalised_as_ingestion_does(personas):
    connection = Connection(organization=personas.org, name="G", kind="openai_compatible", provider="  Groq ",
                            base_url="https://api.groq.com/openai/v1")
    connection.full_clean()
    assert connection.provider == "groq"


def test_the_stored_key_follows_only_to_the_same_origin(world):
    connection = world.connection
    assert not connection.key_would_follow_to_another_host("https://api.openai.com/v2")
    assert not connection.key_would_follow_to_another_host("HTTPS://API.OPENAI.COM/v1")
    for elsewhere in ("https://evil.example/v1", "http://api.openai.com/v1", "https://api.openai.com:8443/v1",
                      "https://api.openai.com.evil.example/v1"):
        assert connection.key_would_follow_to_another_host(elsewhere), elsewhere
    keyless = make_connection(world.personas.org, "Keyless", key="")
    assert not keyless.key_would_follow_to_another_host("https://evil.example/v1")
    assert connection.api_key.reveal() == SECRET


def test_route_names_are_model_names(world, personas):
    for bad in ("fast chat", "tab\there", "nul\x00", ""):
        with pytest.raises(ValidationError):
            Route(project=personas.project, name=bad).full_clean()
    for good in ("gpt-4o-mini", "meta-llama/Llama-3.1-8B-Instruct", "llama3:8b", "fast-chat"):
        Route(project=world.staging, name=good).full_clean()
    with pytest.raises(ValidationError) as clash:
        Route(project=personas.project, name="fast-chat").full_clean()
    assert clash.value.message_dict == {"name": ["Production already has a route named “fast-chat”."]}


def test_callable_routes_are_enabled_with_an_enabled_connection(world, personas):
    disabled = make_connection(personas.org, "Off", enabled=False)
    make_route(personas.project, "off-only", [(disabled, "m", 1)])
    make_route(personas.project, "paused", [(world.connection, "m", 1)], enabled=False)
    make_route(personas.project, "half", [(disabled, "m", 1), (world.anthropic, "c", 1)])

    names = list(Route.objects.filter(project=personas.project).callable().order_by("name").values_list("name", flat=True))
    assert names == ["fast-chat", "half"]


def test_settings_read_as_defaults_without_a_row(personas):
    current = GatewaySettings.current(personas.project)
    assert current.pk is None and (current.cache_enabled, current.cache_ttl_seconds, current.store_bodies) == (False, 3600, False)
    assert not GatewaySettings.objects.exists()
    saved = GatewaySettings.of(personas.project)
    saved.cache_enabled = True
    saved.save()
    assert GatewaySettings.current(personas.project).cache_enabled is True


def test_rate_limits_need_one_limit_one_row_and_a_token_of_the_project(world, personas):
    with pytest.raises(ValidationError) as nothing:
        RateLimit(project=personas.project, api_token=world.token).full_clean()
    assert nothing.value.messages == ["Set at least one limit (requests or tokens, per minute or per day)."]
    with pytest.raises(ValidationError) as twice:
        RateLimit(project=personas.project, tokens_per_day=5).full_clean()
    assert "project-wide limits" in twice.value.message_dict["api_token"][0]
    staging_token, _ = ApiToken.issue(project=world.staging, name="s", scopes=["read"], by=personas.owner)
    with pytest.raises(ValidationError) as elsewhere:
        RateLimit(project=personas.project, api_token=staging_token, tokens_per_day=5).full_clean()
    assert elsewhere.value.message_dict == {"api_token": ["Choose a token of this project."]}
    RateLimit(project=personas.project, api_token=world.token, tokens_per_day=5).full_clean()
