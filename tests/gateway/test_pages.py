"""The Gateway pages: a project's Gateway page (base URL, snippets, a gateway token made on the
spot, routes, connections, settings, limits) and the forms behind it, for every persona. Viewers
read, members write (viewers get 403, also on the forms), the outsider gets 404. Keys are
written, never shown."""

from __future__ import annotations

import re
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from accounts.models import ApiToken
from gateway.forms import RouteForm
from gateway.models import Connection, GatewaySettings, RateLimit, Route
from tests.conftest import client_as

from .factories import OTHER_SECRET, SECRET, GatewayWorld, build_world, leaks_a_key, make_route

pytestmark = pytest.mark.django_db

MEMBERS = ["owner", "admin", "member"]


@pytest.fixture
def world(personas) -> GatewayWorld:
    return build_world(personas)


@pytest.fixture
def client_as_persona(personas):
    return lambda name: client_as(personas.user(name))


def urls(world: GatewayWorld) -> dict[str, str]:
    project, org = world.personas.project.uuid, world.personas.org.uuid
    return {
        "gateway": reverse("gateway", args=[project]),
        "token": reverse("gateway_token_create", args=[project]),
        "settings": reverse("gateway_settings", args=[project]),
        "route_new": reverse("gateway_route_create", args=[project]),
        "route_edit": reverse("gateway_route_edit", args=[project, world.route.uuid]),
        "route_delete": reverse("gateway_route_delete", args=[project, world.route.uuid]),
        "limit_new": reverse("gateway_limit_create", args=[project]),
        "limit_edit": reverse("gateway_limit_edit", args=[project, world.limit.uuid]),
        "limit_delete": reverse("gateway_limit_delete", args=[project, world.limit.uuid]),
        "connections": reverse("gateway_connections", args=[org]),
        "connection_new": reverse("gateway_connection_create", args=[org]),
        "connection_edit": reverse("gateway_connection_edit", args=[org, world.connection.uuid]),
        "connection_delete": reverse("gateway_connection_delete", args=[org, world.connection.uuid]),
        "anthropic_delete": reverse("gateway_connection_delete", args=[org, world.anthropic.uuid]),
    }


READ_PAGES = ["gateway", "connections"]
MANAGE_PAGES = ["settings", "route_new", "route_edit", "route_delete", "limit_new", "limit_edit", "limit_delete",
                "connection_new", "connection_edit", "connection_delete"]


def route_form(**overrides: object) -> dict:
    """A route form: `rows` is a list of (connection uuid or "", model, weight, order, delete)."""
    rows = overrides.pop("rows", [])
    initial = overrides.pop("initial", 0)
    data = {"name": "smart-chat", "strategy": "ordered", "is_enabled": "on",
            "upstreams-TOTAL_FORMS": str(len(rows)), "upstreams-INITIAL_FORMS": str(initial),
            "upstreams-MIN_NUM_FORMS": "0", "upstreams-MAX_NUM_FORMS": "10"}
    for index, (connection, model, weight, order, delete) in enumerate(rows):
        data |= {f"upstreams-{index}-connection": connection, f"upstreams-{index}-model": model,
                 f"upstreams-{index}-weight": weight, f"upstreams-{index}-ORDER": order}
        if delete:
            data[f"upstreams-{index}-DELETE"] = "on"
    return data | overrides


# ---------------------------------------------------------------------------------------------
# Who may see and do what
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", ["owner", "admin", "member", "viewer"])
def test_everyone_in_the_organization_reads_the_gateway(world, client_as_persona, persona):
    client = client_as_persona(persona)
    for name in READ_PAGES:
        response = client.get(urls(world)[name])
        assert response.status_code == 200, name


@pytest.mark.parametrize("persona", MEMBERS)
def test_members_open_every_form(world, client_as_persona, persona):
    client = client_as_persona(persona)
    for name in MANAGE_PAGES:
        assert client.get(urls(world)[name]).status_code == 200, name


def test_a_viewer_opens_no_form_and_posts_nothing(world, client_as_persona):
    client = client_as_persona("viewer")
    before = [list(model.objects.values()) for model in (Connection, Route, RateLimit, GatewaySettings, ApiToken)]
    for name in [*MANAGE_PAGES, "token"]:
        if name != "token":
            assert client.get(urls(world)[name]).status_code == 403, name
        assert client.post(urls(world)[name], {"name": "Hijacked", "new_api_key": "x"}).status_code == 403, name
    after = [list(model.objects.values()) for model in (Connection, Route, RateLimit, GatewaySettings, ApiToken)]
    assert after == before


def test_the_outsider_gets_404_everywhere(world, client_as_persona):
    client = client_as_persona("outsider")
    for name, url in urls(world).items():
        # 405 only where the method is not served at all (the same for any project).
        assert client.get(url).status_code in (404, 405), name
        expected = (404, 405) if name in READ_PAGES else (404,)
        assert client.post(url, {"name": "Hijacked"}).status_code in expected, name


def test_the_viewer_sees_no_management_controls(world, client_as_persona):
    html = client_as_persona("viewer").get(urls(world)["gateway"]).content.decode()
    assert "fast-chat" in html and "OpenAI/gpt-4o-mini" in html and "Whole project" in html
    assert "None" not in html  # an unset limit reads as a dash
    assert urls(world)["route_new"] not in html and "/edit/" not in html and "/delete/" not in html
    assert 'data-testid="gateway-token-form"' not in html
    owner_html = client_as_persona("owner").get(urls(world)["gateway"]).content.decode()
    assert urls(world)["route_edit"] in owner_html and 'data-testid="gateway-token-form"' in owner_html


def test_the_navigation_leads_to_the_gateway(world, client_as_persona):
    html = client_as_persona("viewer").get(reverse("project_dashboard", args=[world.personas.project.uuid])).content.decode()
    assert f'href="{urls(world)["gateway"]}"' in html and ">Gateway</a>" in html


# ---------------------------------------------------------------------------------------------
# The Gateway page: base URL, snippets, a token made here
# ---------------------------------------------------------------------------------------------
def test_the_page_shows_the_base_url_and_snippets_with_a_placeholder(world, client_as_persona):
    html = client_as_persona("member").get(urls(world)["gateway"]).content.decode()

    for testid in ("gateway-base-url", "snippet-python", "snippet-javascript", "snippet-curl", "snippet-anthropic",
                   "snippet-claude-code", "gateway-live-stats"):
        assert f'data-testid="{testid}"' in html, testid
    assert 'OpenAI(base_url="http://127.0.0.1:8001/v1", api_key="pk_live_YOUR_GATEWAY_TOKEN")' in html
    assert 'baseURL: "http://127.0.0.1:8001/v1"' in html
    assert "curl http://127.0.0.1:8001/v1/chat/completions" in html
    assert 'model="fast-chat"' in html  # the project's own route, not a made-up model
    assert 'ANTHROPIC_BASE_URL="http://127.0.0.1:8001"' in html
    assert "No token with the <code>gateway</code> scope yet" in html


def test_a_member_makes_a_gateway_token_and_the_snippets_use_it_once(world, client_as_persona):
    client = client_as_persona("member")
    form = client.get(urls(world)["gateway"]).content.decode()
    # The gateway scope, and only it, is ticked in advance.
    assert re.search(r'<input type="checkbox" name="scopes" value="gateway"[^>]*checked', form)
    assert not re.search(r'<input type="checkbox" name="scopes" value="(read|write|ingest)"[^>]*checked', form)

    response = client.post(urls(world)["token"], {"name": "Search service", "scopes": ["gateway"]})

    assert response.status_code == 200
    token = ApiToken.objects.get(name="Search service")
    assert token.scopes == ["gateway"] and token.project == world.personas.project
    assert token.created_by == world.personas.member
    html = response.content.decode()
    raw = html.split('id="new-token-value">')[1].split("<")[0]
    assert raw.startswith(token.prefix) and ApiToken.authenticate(raw) == token
    assert f'api_key="{raw}"' in html and f'apiKey: "{raw}"' in html and f"Bearer {raw}" in html
    assert f'ANTHROPIC_AUTH_TOKEN="{raw}"' in html
    # Shown once: the next visit has the placeholder and the token's masked form.
    again = client.get(urls(world)["gateway"]).content.decode()
    assert raw not in again and token.masked in again and "pk_live_YOUR_GATEWAY_TOKEN" in again


def test_a_token_form_with_errors_comes_back_as_400(world, client_as_persona):
    response = client_as_persona("member").post(urls(world)["token"], {"name": "", "scopes": []})
    assert response.status_code == 400
    assert response.context["token_form"].errors.keys() == {"name", "scopes"}
    assert not ApiToken.objects.filter(name="").exists()


def test_a_token_without_the_gateway_scope_is_made_with_a_warning(world, client_as_persona):
    response = client_as_persona("member").post(urls(world)["token"], {"name": "Reader", "scopes": ["read"]})
    assert response.status_code == 200
    assert "has no gateway scope" in response.content.decode()


def test_the_anthropic_snippet_names_a_route_with_an_anthropic_upstream(world, client_as_persona):
    make_route(world.personas.project, "claude-chat", [(world.anthropic, "claude-3-5-haiku-latest", 1)])
    html = client_as_persona("viewer").get(urls(world)["gateway"]).content.decode()
    assert 'model="claude-chat"' in html and 'ANTHROPIC_MODEL="claude-chat"' in html


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------
def test_a_route_is_made_with_its_upstreams_in_order(world, client_as_persona):
    conn, anth = str(world.connection.uuid), str(world.anthropic.uuid)
    data = route_form(rows=[(conn, "gpt-4o", "2", "2", False), (anth, "claude", "1", "1", False), ("", "", "1", "", False)])

    response = client_as_persona("member").post(urls(world)["route_new"], data)

    assert response.status_code == 302, (response.context["form"].errors, response.context["upstreams"].errors,
                                         response.context["upstreams"].non_form_errors())
    assert response.url == urls(world)["gateway"]
    route = Route.objects.get(project=world.personas.project, name="smart-chat")
    assert [(u.label, u.weight) for u in route.upstreams.order_by("position")] == [("Anthropic/claude", 1), ("OpenAI/gpt-4o", 2)]


def test_editing_a_route_shows_its_upstreams_and_removes_a_ticked_one(world, client_as_persona):
    client = client_as_persona("member")
    form = client.get(urls(world)["route_edit"])
    assert len(re.findall(rf'<option value="{world.connection.uuid}" selected>', form.content.decode())) == 2
    assert form.context["upstreams"].initial == [
        {"connection": world.connection.uuid, "model": "gpt-4o-mini", "weight": 1},
        {"connection": world.connection.uuid, "model": "gpt-4o", "weight": 3},
    ]
    conn = str(world.connection.uuid)
    data = route_form(name="fast-chat", strategy="weighted", initial=2, rows=[
        (conn, "gpt-4o-mini", "1", "1", True), (conn, "gpt-4o", "3", "2", False), (conn, "o3-mini", "5", "", False),
    ])

    response = client.post(urls(world)["route_edit"], data)

    assert response.status_code == 302, response.context["upstreams"].errors if response.context else None
    world.route.refresh_from_db()
    assert world.route.strategy == "weighted"
    assert [(u.model, u.weight) for u in world.route.upstreams.order_by("position")] == [("gpt-4o", 3), ("o3-mini", 5)]


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        ({"name": "fast-chat"}, "name", "Production already has a route named “fast-chat”."),
        ({"name": "fast chat"}, "name", "without spaces"),
        ({"strategy": "random"}, "strategy", "Select a valid choice."),
        ({"rows": []}, "list", "Add at least one upstream"),
        ({"rows": [("{c}", "gpt-4o", "1", "", False), ("{c}", "gpt-4o", "1", "", False)]}, 1, "listed twice"),
        ({"rows": [("{c}", "gpt-4o", "0", "", False)]}, 0, "greater than or equal to 1"),
        ({"rows": [("{c}", "gpt-4o", "lots", "", False)]}, 0, "Enter a whole number."),
        ({"rows": [("{c}", "", "1", "", False)]}, 0, "This field is required."),
        ({"rows": [("{other}", "gpt-4o", "1", "", False)]}, 0, "Select a valid choice."),
        ({"rows": [("{c}", f"m{i}", "1", "", False) for i in range(11)]}, "list", "10"),
    ],
    ids=["duplicate-name", "name-space", "strategy", "no-upstreams", "duplicate-upstream", "weight-0", "weight-text",
         "model-missing", "other-organization", "eleven"],
)
def test_bad_route_input_comes_back_with_a_message_where_it_belongs(world, client_as_persona, data, where, message):
    if "rows" in data:
        data = dict(data, rows=[
            (c.format(c=world.connection.uuid, other=world.other_connection.uuid), *rest) for c, *rest in data["rows"]
        ])
    response = client_as_persona("member").post(urls(world)["route_new"], route_form(**data))

    assert response.status_code == 400
    if where == "list":
        assert message in " ".join(response.context["upstreams"].non_form_errors())
    elif isinstance(where, int):
        errors = response.context["upstreams"].forms[where].errors
        assert message in str(errors), errors
    else:
        assert message in " ".join(response.context["form"].errors[where])
    assert not Route.objects.filter(name="smart-chat").exists()
    assert SECRET not in response.content.decode()


def test_a_route_is_deleted(world, client_as_persona):
    response = client_as_persona("member").post(urls(world)["route_delete"])
    assert response.status_code == 302
    assert not Route.objects.filter(pk=world.route.pk).exists()
    assert Connection.objects.filter(pk=world.connection.pk).exists()


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------
def connection_form(**overrides: object) -> dict:
    return {"name": "Groq", "kind": "openai_compatible", "provider": "groq", "base_url": "https://api.groq.com/openai/v1",
            "new_api_key": "gsk-page-secret", "is_enabled": "on"} | overrides


def test_a_connection_is_added_with_its_key_stored_encrypted_and_back_where_it_came_from(world, client_as_persona):
    client = client_as_persona("member")
    form = client.get(urls(world)["connection_new"] + f"?next={urls(world)['gateway']}").content.decode()
    assert 'type="password"' in form and "clear_api_key" not in form

    response = client.post(urls(world)["connection_new"], connection_form(next=urls(world)["gateway"]), follow=True)

    assert response.redirect_chain == [(urls(world)["gateway"], 302)]
    connection = Connection.objects.get(organization=world.personas.org, name="Groq")
    assert connection.api_key.reveal() == "gsk-page-secret" and connection.created_by == world.personas.member
    html = response.content.decode()
    assert "Connection “Groq” saved." in html and "gsk-page-secret" not in html and str(connection.api_key) not in html


def test_a_foreign_next_is_ignored(world, client_as_persona):
    for evil in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = client_as_persona("member").post(
            urls(world)["connection_new"], connection_form(name=f"G{len(evil)}", next=evil)
        )
        assert response.status_code == 302 and response.url == urls(world)["connections"], evil


def test_editing_keeps_replaces_or_removes_the_key(world, client_as_persona):
    client, url = client_as_persona("member"), urls(world)["connection_edit"]
    html = client.get(url).content.decode()
    assert SECRET not in html and "A key is set. Leave blank to keep it" in html and "clear_api_key" in html

    base = connection_form(name="OpenAI", provider="openai", base_url="https://api.openai.com/v1", new_api_key="")
    assert client.post(url, base).status_code == 302
    assert Connection.objects.get(pk=world.connection.pk).api_key.reveal() == SECRET
    assert client.post(url, base | {"new_api_key": "sk-rotated"}).status_code == 302
    assert Connection.objects.get(pk=world.connection.pk).api_key.reveal() == "sk-rotated"
    assert client.post(url, base | {"clear_api_key": "on"}).status_code == 302
    assert Connection.objects.get(pk=world.connection.pk).api_key == ""


def test_a_new_host_needs_the_key_again(world, client_as_persona):
    url = urls(world)["connection_edit"]
    data = connection_form(name="OpenAI", provider="openai", base_url="https://collector.evil.example/v1", new_api_key="")

    response = client_as_persona("member").post(url, data)

    assert response.status_code == 400
    assert "enter the API key again" in response.context["form"].errors["new_api_key"][0]
    assert Connection.objects.get(pk=world.connection.pk).base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "This field is required."),
        ("name", "OpenAI", "Acme already has a connection named “OpenAI”."),
        ("kind", "carrier_pigeon", "Select a valid choice."),
        ("provider", "", "This field is required."),
        ("base_url", "not a url", "Enter a valid URL."),
        ("base_url", "ftp://files.example/v1", "Enter an http:// or https:// URL."),
    ],
)
def test_bad_connection_input_comes_back_with_a_message_on_the_field_and_no_key(world, client_as_persona, field, value, message):
    response = client_as_persona("member").post(urls(world)["connection_new"], connection_form(**{field: value}))

    assert response.status_code == 400
    assert list(response.context["form"].errors) == [field], response.context["form"].errors
    assert message in response.context["form"].errors[field][0]
    assert "gsk-page-secret" not in response.content.decode()  # not even the key just typed


def test_a_private_address_is_refused_on_the_page(world, client_as_persona, private_refused):
    response = client_as_persona("member").post(urls(world)["connection_new"], connection_form(base_url="http://10.0.0.5/v1"))
    assert response.status_code == 400 and list(response.context["form"].errors) == ["base_url"]


def test_a_connection_in_use_is_not_deleted(world, client_as_persona):
    client = client_as_persona("member")
    page = client.get(urls(world)["connection_delete"]).content.decode()
    assert 'data-testid="connection-in-use"' in page and "Production/fast-chat" in page

    response = client.post(urls(world)["connection_delete"])

    assert response.status_code == 409
    assert Connection.objects.filter(pk=world.connection.pk).exists()
    unused = client.post(urls(world)["anthropic_delete"])
    assert unused.status_code == 302 and not Connection.objects.filter(pk=world.anthropic.pk).exists()


def test_the_connections_page_lists_what_uses_each(world, client_as_persona):
    html = client_as_persona("viewer").get(urls(world)["connections"]).content.decode()
    assert html.count('data-testid="connection-row"') == 2
    assert "Production/fast-chat" in html and "no route" in html and "Bravo" not in html


# ---------------------------------------------------------------------------------------------
# Settings and limits
# ---------------------------------------------------------------------------------------------
def test_a_member_saves_the_settings(world, client_as_persona):
    data = {"cache_enabled": "on", "cache_ttl_seconds": "600", "store_bodies": "on", "body_retention_days": "3",
            "body_max_bytes": "2048"}
    response = client_as_persona("member").post(urls(world)["settings"], data, follow=True)

    saved = GatewaySettings.objects.get(project=world.personas.project)
    assert (saved.cache_enabled, saved.cache_ttl_seconds, saved.store_bodies, saved.body_retention_days,
            saved.body_max_bytes) == (True, 600, True, 3, 2048)
    assert "Gateway settings saved." in response.content.decode() and "replayed for 600 s" in response.content.decode()


def test_bad_settings_come_back_with_messages(world, client_as_persona):
    data = {"cache_ttl_seconds": "0", "body_retention_days": "365", "body_max_bytes": "many"}
    response = client_as_persona("member").post(urls(world)["settings"], data)
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"cache_ttl_seconds", "body_retention_days", "body_max_bytes"}
    assert not GatewaySettings.objects.exists()


def test_limits_are_added_for_a_token_and_changed_and_removed(world, client_as_persona):
    client = client_as_persona("member")
    form = client.get(urls(world)["limit_new"]).content.decode()
    assert "The whole project" in form and world.token.masked in form

    added = client.post(urls(world)["limit_new"], {"api_token": world.token.uuid, "tokens_per_minute": "5000"})
    assert added.status_code == 302
    limit = RateLimit.objects.get(api_token=world.token)
    assert limit.as_dict() == {"requests_per_minute": None, "tokens_per_minute": 5000, "requests_per_day": None,
                               "tokens_per_day": None}
    edit = client.get(reverse("gateway_limit_edit", args=[world.personas.project.uuid, limit.uuid])).content.decode()
    assert re.search(rf'<option value="{world.token.uuid}"[^>]*selected', edit)
    again = client.post(urls(world)["limit_new"], {"api_token": world.token.uuid, "requests_per_day": "5"})
    assert again.status_code == 400 and "already has limits" in again.context["form"].errors["api_token"][0]
    nothing = client.post(urls(world)["limit_edit"], {"api_token": ""})
    assert nothing.status_code == 400 and "Set at least one limit" in str(nothing.context["form"].non_field_errors())
    assert client.post(urls(world)["limit_delete"]).status_code == 302
    assert not RateLimit.objects.filter(pk=world.limit.pk).exists()


# ---------------------------------------------------------------------------------------------
# Keys never shown
# ---------------------------------------------------------------------------------------------
def test_no_page_shows_a_key(world, client_as_persona):
    for persona in ("owner", "viewer"):
        client = client_as_persona(persona)
        for name in [*READ_PAGES, *MANAGE_PAGES]:
            html = client.get(urls(world)[name]).content.decode()
            assert not leaks_a_key(html, world.connection, world.other_connection), name
            assert SECRET not in html and OTHER_SECRET not in html


def test_a_route_name_taken_meanwhile_comes_back_on_the_form(world, client_as_persona, monkeypatch):
    checked = RouteForm._post_clean

    def check_then_lose_the_race(self):
        checked(self)  # the model's rules passed; now a concurrent request saves the same name
        Route.objects.create(project=world.personas.project, name="smart-chat")

    monkeypatch.setattr(RouteForm, "_post_clean", check_then_lose_the_race)
    data = route_form(rows=[(str(world.connection.uuid), "gpt-4o", "1", "", False)])
    response = client_as_persona("member").post(urls(world)["route_new"], data)

    assert response.status_code == 400
    assert response.context["form"].errors["name"] == ["Production already has a route named “smart-chat”."]
    assert Route.objects.filter(project=world.personas.project, name="smart-chat").count() == 1


def test_the_live_numbers_section_renders_what_the_gateway_reports(world, rf):
    """templates/gateway/_live_stats.html against the documented shapes of gateway/stats.py
    (CacheStats, LimitUsage of WindowUsage), which the Gateway page passes in."""
    window = SimpleNamespace
    cache = SimpleNamespace(hits=30, misses=10, bypass=2, hit_rate=0.75, saved_usd=Decimal("1.25"), entries=7,
                            memory_bytes=2048)
    world.limit.usage = SimpleNamespace(rpm=window(limit=60, used=12, remaining=48, resets_in_s=12.0), tpm=None,
                                        rpd=None, tpd=None)
    request = rf.get("/")
    request.user = world.personas.viewer

    html = render_to_string("gateway/_live_stats.html", {
        "cache_stats": cache, "limit_usage": {None: world.limit.usage}, "limits": [world.limit],
    }, request=request)

    assert "75 %" in html and "30 hits" in html and "$1.25" in html and "2.0\xa0KB" in html
    assert "12 / 60" in html


def test_the_gateway_page_shows_the_cache_numbers_the_gateway_counted(world, client_as_persona):
    """The page reads the live counters from Redis (gateway/stats.py), per project."""
    import asyncio

    from gateway import cache
    from gateway.redis import async_client

    async def traffic() -> None:
        r = async_client()
        await cache.count(r, world.personas.project.id, "hit", saved_micro_usd=2_500_000)
        await cache.count(r, world.personas.project.id, "miss")
        await cache.count(r, world.personas.other_project.id, "hit", saved_micro_usd=9_000_000)

    asyncio.run(traffic())
    response = client_as_persona("viewer").get(urls(world)["gateway"])

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="cache-hit-rate"' in html and "50 %" in html
    assert "$2.50" in html and "$9.00" not in html
