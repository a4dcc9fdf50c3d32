"""Managing private targets on the Benchmarks page: add, edit (keeping, replacing or removing the
key), pause/resume and delete, for every persona. Members and up manage targets, as in the API
(Target.MANAGE_ROLE); viewers get 403; the outsider 404. Keys are written, never shown."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from benchmarks.api import TargetViewSet
from benchmarks.models import ProviderKind, Run, Target
from tests.conftest import client_as

pytestmark = pytest.mark.django_db

SECRET = "sk-page-secret-8c1f"
NEW_SECRET = "sk-page-replacement-77aa"
MANAGERS = ["owner", "admin", "member"]


def form_data(**overrides: object) -> dict:
    return {
        "name": "Our vLLM", "kind": "openai_compatible", "base_url": "https://vllm.acme.example/v1",
        "new_api_key": SECRET, "model_names": "llama-3-8b\nqwen-2-7b, mistral-7b", "prompt": "Say hello.",
        "max_tokens": "128", "interval_minutes": "30", "is_enabled": "on",
    } | overrides


@pytest.fixture
def target(personas) -> Target:
    target = Target(organization=personas.org, name="Our gateway", kind=ProviderKind.OPENAI_COMPATIBLE,
                    base_url="https://gw.example/v1", model_names=["private-model"])
    target.api_key = SECRET
    target.save()
    return target


def urls(personas, target: Target | None = None) -> dict[str, str]:
    org = personas.org.uuid
    found = {"list": reverse("organization_benchmarks", args=[org]),
             "new": reverse("benchmark_target_create", args=[org])}
    if target is not None:
        for name in ("edit", "delete", "set_enabled"):
            found[name] = reverse(f"benchmark_target_{name}", args=[org, target.uuid])
    return found


def test_pages_need_the_same_role_as_the_api():
    assert Target.MANAGE_ROLE == TargetViewSet.write_role


# ---------------------------------------------------------------------------------------------
# Add
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", MANAGERS)
def test_managers_add_a_target_and_the_key_is_stored_encrypted(personas, persona):
    client = client_as(personas.user(persona))
    form = client.get(urls(personas)["new"])
    assert form.status_code == 200 and 'type="password"' in form.content.decode()
    assert "clear_api_key" not in form.content.decode()  # nothing to remove yet

    response = client.post(urls(personas)["new"], form_data(), follow=True)

    assert response.redirect_chain == [(urls(personas)["list"], 302)]
    target = Target.objects.get(organization=personas.org, name="Our vLLM")
    assert target.model_names == ["llama-3-8b", "qwen-2-7b", "mistral-7b"]
    assert (target.kind, target.max_tokens, target.interval_minutes, target.is_enabled) == (
        "openai_compatible", 128, 30, True)
    assert target.created_by == personas.user(persona)
    assert target.api_key != SECRET and target.api_key.reveal() == SECRET
    html = response.content.decode()
    assert "Target “Our vLLM” added (runs every 30 minutes)." in html and 'data-testid="target-row"' in html
    assert SECRET not in html and str(target.api_key) not in html
    assert PeriodicTask.objects.get(name=f"benchmarks.target:{target.uuid}").enabled


def test_the_list_shows_targets_with_their_schedule_and_last_run(personas, target):
    Target.objects.create(organization=personas.org, name="Paused one", kind=ProviderKind.ANTHROPIC,
                          base_url="https://a.example", model_names=["m"], is_enabled=False)
    Run.objects.create(name="r", triggered_by=Run.Trigger.MANUAL, organization=personas.org, target=target,
                       status=Run.Status.FAILED)
    html = client_as(personas.viewer).get(urls(personas)["list"]).content.decode()

    assert html.count('data-testid="target-row"') == 2
    assert "every 15 min" in html and "paused" in html and ">failed</span>" in html and "never" in html
    assert "https://gw.example/v1" in html and "Anthropic" in html and "no key" in html
    # A viewer sees no management controls.
    assert urls(personas)["new"] not in html and "/edit/" not in html and ">Pause<" not in html
    owner_html = client_as(personas.owner).get(urls(personas)["list"]).content.decode()
    assert urls(personas, target)["edit"] in owner_html and ">Pause</button>" in owner_html
    assert ">Resume</button>" in owner_html and SECRET not in owner_html


# ---------------------------------------------------------------------------------------------
# Bad input: a 400 re-render with a message on the field, never a 500, never the key
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "This field is required."),
        ("kind", "carrier_pigeon", "Select a valid choice."),
        ("base_url", "not a url", "Enter a valid URL."),
        ("base_url", "ftp://files.example/v1", "Enter an http:// or https:// URL."),
        ("model_names", " ,\n ", "This field is required."),
        ("model_names", "a, b, a", "Listed twice: a."),
        ("model_names", "x" * 201, "longer than 200 characters"),
        ("max_tokens", "0", "greater than or equal to 1"),
        ("max_tokens", "32769", "less than or equal to 32768"),
        ("max_tokens", "lots", "Enter a whole number."),
        ("interval_minutes", "4", "greater than or equal to 5"),
        ("interval_minutes", "1441", "less than or equal to 1440"),
    ],
)
def test_bad_input_comes_back_with_a_message_on_the_field(personas, field, value, message):
    response = client_as(personas.member).post(urls(personas)["new"], form_data(**{field: value}))

    assert response.status_code == 400
    form = response.context["form"]
    assert list(form.errors) == [field], form.errors
    assert message in " ".join(form.errors[field])
    assert message.split("“")[0] in response.content.decode().replace("&#x27;", "'")
    assert SECRET not in response.content.decode()  # the typed key is not echoed back
    assert not Target.objects.exists()


def test_names_are_unique_per_organization(personas, target):
    response = client_as(personas.owner).post(urls(personas)["new"], form_data(name=target.name))
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == ["Acme already has a target named “Our gateway”."]
    # The same name in another organization is fine.
    Target.objects.create(organization=personas.other_org, name="Our vLLM", kind=ProviderKind.ANTHROPIC,
                          base_url="https://b.example", model_names=["x"])
    assert client_as(personas.owner).post(urls(personas)["new"], form_data()).status_code == 302


# ---------------------------------------------------------------------------------------------
# Edit
# ---------------------------------------------------------------------------------------------
def edit_data(target: Target, **overrides: object) -> dict:
    return form_data(name=target.name, new_api_key="", model_names="private-model, second-model",
                     interval_minutes="60") | overrides


@pytest.mark.parametrize("persona", MANAGERS)
def test_editing_without_a_key_keeps_the_stored_one(personas, target, persona):
    client = client_as(personas.user(persona))
    page = client.get(urls(personas, target)["edit"]).content.decode()
    assert "a key is set" in page and "Remove the stored key" in page
    assert SECRET not in page and str(target.api_key) not in page
    assert "private-model" in page and 'value="https://gw.example/v1"' in page

    response = client.post(urls(personas, target)["edit"], edit_data(target), follow=True)

    assert response.redirect_chain == [(urls(personas)["list"], 302)]
    target.refresh_from_db()
    assert target.api_key.reveal() == SECRET
    assert target.model_names == ["private-model", "second-model"] and target.interval_minutes == 60
    assert PeriodicTask.objects.get(name=f"benchmarks.target:{target.uuid}").interval.every == 60
    assert SECRET not in response.content.decode()


def test_editing_with_a_new_key_replaces_it_and_never_shows_either(personas, target):
    client = client_as(personas.admin)
    response = client.post(urls(personas, target)["edit"], edit_data(target, new_api_key=NEW_SECRET), follow=True)

    target.refresh_from_db()
    assert target.api_key.reveal() == NEW_SECRET
    pages = [response.content.decode(), client.get(urls(personas, target)["edit"]).content.decode(),
             client.get(urls(personas)["list"]).content.decode()]
    for html in pages:
        assert NEW_SECRET not in html and SECRET not in html and str(target.api_key) not in html


def test_a_stored_key_can_be_removed_but_not_removed_and_replaced_at_once(personas, target):
    client = client_as(personas.owner)
    both = client.post(urls(personas, target)["edit"], edit_data(target, new_api_key=NEW_SECRET, clear_api_key="on"))
    assert both.status_code == 400 and list(both.context["form"].errors) == ["clear_api_key"]
    assert NEW_SECRET not in both.content.decode()
    target.refresh_from_db()
    assert target.api_key.reveal() == SECRET

    client.post(urls(personas, target)["edit"], edit_data(target, clear_api_key="on"))
    target.refresh_from_db()
    assert target.api_key == ""
    assert "no key" in client.get(urls(personas, target)["edit"]).content.decode()


def test_an_invalid_edit_changes_nothing(personas, target):
    response = client_as(personas.owner).post(urls(personas, target)["edit"],
                                              edit_data(target, interval_minutes="1", new_api_key=NEW_SECRET))
    assert response.status_code == 400 and "interval_minutes" in response.context["form"].errors
    target.refresh_from_db()
    assert target.interval_minutes == 15 and target.api_key.reveal() == SECRET


# ---------------------------------------------------------------------------------------------
# Pause / resume and delete
# ---------------------------------------------------------------------------------------------
def test_pausing_and_resuming_updates_the_schedule_and_is_idempotent(personas, target):
    client = client_as(personas.member)
    task = lambda: PeriodicTask.objects.get(name=f"benchmarks.target:{target.uuid}")  # noqa: E731
    for _ in range(2):  # a double submit is harmless
        response = client.post(urls(personas, target)["set_enabled"], {"enabled": "false"})
        assert response.status_code == 302
    target.refresh_from_db()
    assert not target.is_enabled and not task().enabled

    client.post(urls(personas, target)["set_enabled"], {"enabled": "true"})
    target.refresh_from_db()
    assert target.is_enabled and task().enabled
    assert client.post(urls(personas, target)["set_enabled"], {"enabled": "maybe"}).status_code == 400
    assert client.get(urls(personas, target)["set_enabled"]).status_code == 405


@pytest.mark.parametrize("persona", MANAGERS)
def test_deleting_asks_first_then_keeps_the_results(personas, target, persona):
    run = Run.objects.create(name="r", triggered_by=Run.Trigger.MANUAL, organization=personas.org, target=target,
                             status=Run.Status.FINISHED)
    client = client_as(personas.user(persona))
    confirm = client.get(urls(personas, target)["delete"])
    assert confirm.status_code == 200 and "Delete Our gateway?" in confirm.content.decode()
    assert Target.objects.filter(pk=target.pk).exists()

    response = client.post(urls(personas, target)["delete"], follow=True)

    assert response.redirect_chain == [(urls(personas)["list"], 302)]
    assert "Target “Our gateway” deleted." in response.content.decode()
    assert not Target.objects.filter(pk=target.pk).exists()
    assert not PeriodicTask.objects.filter(name=f"benchmarks.target:{target.uuid}").exists()
    assert Run.objects.filter(pk=run.pk).exists()


# ---------------------------------------------------------------------------------------------
# Who may
# ---------------------------------------------------------------------------------------------
def manage_requests(personas, target: Target) -> list[tuple[str, str, dict | None]]:
    u = urls(personas, target)
    return [
        ("get", u["new"], None), ("post", u["new"], form_data()),
        ("get", u["edit"], None), ("post", u["edit"], edit_data(target, new_api_key="sk-intruder")),
        ("get", u["delete"], None), ("post", u["delete"], {}),
        ("post", u["set_enabled"], {"enabled": "false"}),
    ]


@pytest.mark.parametrize(("persona", "status"), [("viewer", 403), ("outsider", 404)])
def test_viewers_get_403_and_the_outsider_404_and_nothing_changes(personas, target, persona, status):
    client = client_as(personas.user(persona))
    for method, url, data in manage_requests(personas, target):
        response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        assert response.status_code == status, (method, url)
    target.refresh_from_db()
    assert target.api_key.reveal() == SECRET and target.is_enabled
    assert Target.objects.count() == 1


def test_anonymous_users_are_sent_to_log_in(personas, target):
    for method, url, data in manage_requests(personas, target):
        response = getattr(client_as(), method)(url, data or {})
        assert response.status_code == 302 and reverse("account_login") in response["Location"]


def test_another_organizations_target_is_not_found_through_acmes_urls(personas):
    theirs = Target.objects.create(organization=personas.other_org, name="Theirs", kind=ProviderKind.ANTHROPIC,
                                   base_url="https://b.example", model_names=["x"])
    client = client_as(personas.owner)
    org = personas.org.uuid
    for name in ("edit", "delete", "set_enabled"):
        url = reverse(f"benchmark_target_{name}", args=[org, theirs.uuid])
        assert client.get(url).status_code in (404, 405)
        assert client.post(url, {"enabled": "false"}).status_code == 404
    assert client.get(f"/orgs/{org}/benchmarks/targets/not-a-uuid/edit/").status_code == 404
    assert Target.objects.filter(pk=theirs.pk, is_enabled=True).exists()
