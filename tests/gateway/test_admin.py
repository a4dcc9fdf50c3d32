"""Operators' admin for the gateway: every list and change page works, a connection's key is
write-only there too, and a route's upstreams are edited inline under the routes' own rules."""

from __future__ import annotations

import pytest
from django.urls import reverse

from gateway.models import Connection, GatewaySettings, Route
from tests.conftest import make_user

from .factories import OTHER_SECRET, SECRET, build_world, leaks_a_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    return make_user("ops@pulse.example", is_staff=True, is_superuser=True)


@pytest.fixture
def world(personas):
    world = build_world(personas)
    GatewaySettings.of(personas.project)
    return world


def inline_form(route: Route, rows: list[tuple[int | str, str, str]], **overrides: object) -> dict:
    """The route's change form with its upstream inline: rows of (connection pk, model, weight)."""
    existing = list(route.upstreams.order_by("position"))
    data = {
        "project": route.project_id, "name": route.name, "strategy": route.strategy, "is_enabled": "on",
        "upstreams-TOTAL_FORMS": str(len(rows)), "upstreams-INITIAL_FORMS": str(len(existing)),
        "upstreams-MIN_NUM_FORMS": "0", "upstreams-MAX_NUM_FORMS": "1000",
    }
    for index, (connection, model, weight) in enumerate(rows):
        data |= {f"upstreams-{index}-connection": connection, f"upstreams-{index}-model": model,
                 f"upstreams-{index}-weight": weight, f"upstreams-{index}-position": str(index),
                 f"upstreams-{index}-route": route.pk}
        if index < len(existing):
            data[f"upstreams-{index}-id"] = existing[index].pk
    return data | overrides


@pytest.mark.parametrize("model", ["connection", "route", "gatewaysettings", "ratelimit"])
def test_the_operator_sees_every_list_and_change_page_and_no_key(client, operator, world, model):
    objects = {"connection": world.connection, "route": world.route,
               "gatewaysettings": GatewaySettings.objects.get(), "ratelimit": world.limit}
    client.force_login(operator)

    pages = [
        client.get(reverse(f"admin:gateway_{model}_changelist"), {"q": "a"}),
        client.get(reverse(f"admin:gateway_{model}_change", args=[objects[model].pk])),
        client.get(reverse(f"admin:gateway_{model}_add")),
    ]

    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert not leaks_a_key(html, world.connection, world.other_connection)
        assert SECRET not in html and OTHER_SECRET not in html


def test_an_organization_owner_is_no_operator(client, world):
    client.force_login(world.personas.owner)
    response = client.get(reverse("admin:gateway_connection_changelist"))
    assert response.status_code == 302 and response.url.startswith("/admin/login/")


def test_the_operator_adds_a_connection_whose_key_is_encrypted(client, operator, world):
    client.force_login(operator)
    response = client.post(reverse("admin:gateway_connection_add"), {
        "organization": world.personas.org.pk, "name": "Groq", "kind": "openai_compatible", "provider": "Groq",
        "base_url": "https://api.groq.com/openai/v1", "new_api_key": "gsk-admin-secret", "is_enabled": "on",
    })

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else None
    connection = Connection.objects.get(name="Groq")
    assert connection.api_key.reveal() == "gsk-admin-secret" and connection.provider == "groq"
    change = client.get(reverse("admin:gateway_connection_change", args=[connection.pk])).content.decode()
    assert "gsk-admin-secret" not in change and str(connection.api_key) not in change


def test_the_admin_also_asks_for_the_key_when_the_host_changes(client, operator, world):
    client.force_login(operator)
    response = client.post(reverse("admin:gateway_connection_change", args=[world.connection.pk]), {
        "organization": world.personas.org.pk, "name": "OpenAI", "kind": "openai_compatible", "provider": "openai",
        "base_url": "https://collector.evil.example/v1", "new_api_key": "", "is_enabled": "on",
    })
    assert response.status_code == 200
    assert "enter the API key again" in str(response.context["adminform"].form.errors["new_api_key"])
    assert Connection.objects.get(pk=world.connection.pk).base_url == "https://api.openai.com/v1"


def test_upstreams_are_edited_inline(client, operator, world):
    client.force_login(operator)
    url = reverse("admin:gateway_route_change", args=[world.route.pk])
    data = inline_form(world.route, [(world.connection.pk, "gpt-4o-mini", "2"), (world.connection.pk, "gpt-4o", "3"),
                                     (world.anthropic.pk, "claude", "1")])

    response = client.post(url, data)

    assert response.status_code == 302
    assert [u.label for u in world.route.upstreams.order_by("position")] == [
        "OpenAI/gpt-4o-mini", "OpenAI/gpt-4o", "Anthropic/claude"]


def test_an_inline_upstream_of_another_organization_is_refused(client, operator, world):
    client.force_login(operator)
    url = reverse("admin:gateway_route_change", args=[world.route.pk])
    data = inline_form(world.route, [(world.connection.pk, "gpt-4o-mini", "1"), (world.other_connection.pk, "gpt-4o", "1")])

    response = client.post(url, data)

    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors
    assert errors[1] == {"connection": ["Choose a connection of this project's organization."]}
    assert [u.model for u in world.route.upstreams.order_by("position")] == ["gpt-4o-mini", "gpt-4o"]
    assert world.route.upstreams.filter(connection=world.other_connection).count() == 0


def test_a_connection_in_use_is_protected_in_the_admin(client, operator, world):
    client.force_login(operator)
    page = client.get(reverse("admin:gateway_connection_delete", args=[world.connection.pk]))
    assert page.status_code == 200
    assert "would require deleting the following protected related objects" in page.content.decode()
    client.post(reverse("admin:gateway_connection_delete", args=[world.connection.pk]), {"post": "yes"})
    assert Connection.objects.filter(pk=world.connection.pk).exists()
