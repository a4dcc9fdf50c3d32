"""Private targets cannot reach the operator's own network in production: refused with a field
error when saved (page and API), and refused where the run connects (lib/egress.py), with an
error kind of its own and no byte of the internal answer in the result."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from benchmarks import discovery, execution
from benchmarks.models import BenchmarkResult, Model, Provider, ProviderKind, Run, Target
from benchmarks.providers import ErrorKind, StreamRequest
from benchmarks.runner import RunTarget, run_targets_sync
from benchmarks.simulator import SimulatedProvider
from tests.conftest import client_as, make_user
from tests.local_server import INTERNAL_SECRET, PUBLIC_STAND_IN, InternalService, rebinding_dns

API = "/api/v1/benchmarks"
INSIDE = [
    "http://127.0.0.1:8000/v1", "http://169.254.169.254/latest", "http://[::ffff:127.0.0.1]/v1", "http://0.0.0.0/v1",
    "http://10.0.0.1/v1", "http://[fd00::1]/v1", "http://localhost:11434/v1",
]


@pytest.fixture
def internal():
    with InternalService(status=500) as service:  # an error page: the old runner quoted its body
        yield service


def target_body(personas, **overrides: object) -> dict:
    return {
        "organization": str(personas.org.uuid), "name": "Inside", "kind": "openai_compatible",
        "base_url": "https://llm.acme.example/v1", "model_names": ["m"], "interval_minutes": 30,
    } | overrides


def run_target(organization, base_url: str, kind: str = ProviderKind.OPENAI_COMPATIBLE, models=("m",)) -> list[BenchmarkResult]:
    """Store a target as if it had been saved (a name that resolved publicly then, say), and
    press Run now: the real planner, runner and aiohttp client."""
    target = Target(
        organization=organization, name=f"t-{Target.objects.count()}", kind=kind, base_url=base_url, model_names=list(models)
    )
    target.api_key = "sk-sim"  # what the simulator expects (encrypted by the field)
    target.save()
    run = execution.start_run(name="now", triggered_by=Run.Trigger.MANUAL, organization=organization, target=target)
    execution.execute_run(run)
    return list(BenchmarkResult.objects.filter(run=run).order_by("model_name"))


# ---------------------------------------------------------------------------------------------
# When saved
# ---------------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("base_url", INSIDE)
def test_the_api_refuses_a_private_base_url_with_a_field_error(private_refused, personas, api_as, base_url):
    response = api_as("member").post(f"{API}/targets", target_body(personas, base_url=base_url), format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["base_url"]
    assert "Pulse does not send requests there" in response.json()["base_url"][0]
    assert not Target.objects.filter(name="Inside").exists()


@pytest.mark.django_db
def test_the_api_refuses_changing_a_base_url_to_a_private_one(private_refused, personas, api_as):
    target = Target.objects.create(organization=personas.org, name="Ours", kind=ProviderKind.OPENAI_COMPATIBLE,
                                   base_url="https://llm.acme.example/v1", model_names=["m"])

    response = api_as("member").patch(f"{API}/targets/{target.uuid}", {"base_url": "http://127.0.0.1/v1"}, format="json")

    assert response.status_code == 400 and list(response.json()) == ["base_url"]
    target.refresh_from_db()
    assert target.base_url == "https://llm.acme.example/v1"


@pytest.mark.django_db
def test_the_page_refuses_a_private_base_url_on_its_field(private_refused, personas):
    url = reverse("benchmark_target_create", args=[personas.org.uuid])
    form = {"name": "Inside", "kind": "openai_compatible", "base_url": "http://localhost:8000/v1",
            "model_names": "m", "prompt": "Hi", "max_tokens": "16", "interval_minutes": "30"}

    response = client_as(personas.member).post(url, form)

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["base_url"]
    assert errors["base_url"][0].startswith("localhost resolves to a private, local or reserved address")
    assert "127.0.0.1" not in errors["base_url"][0]  # what a name resolves to stays server-side
    assert not Target.objects.filter(name="Inside").exists()


@pytest.mark.django_db
def test_an_allowed_organization_may_save_a_private_base_url_but_never_a_metadata_one(private_refused, personas, api_as):
    personas.org.allow_private_egress = True
    personas.org.save()

    ours = api_as("member").post(f"{API}/targets", target_body(personas, base_url="http://10.0.0.5:8000/v1"), format="json")
    metadata = api_as("member").post(
        f"{API}/targets", target_body(personas, name="Meta", base_url="http://169.254.169.254/v1"), format="json"
    )

    assert ours.status_code == 201, ours.content
    assert metadata.status_code == 400 and "cloud metadata address" in metadata.json()["base_url"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("base_url", ["http://169.254.169.123/v1", "http://169.254.10.10:8000/v1", "http://[fe80::1]:8000/v1"])
def test_an_allowed_organization_may_never_save_a_link_local_base_url(private_refused, personas, api_as, base_url):
    personas.org.allow_private_egress = True
    personas.org.save()

    response = api_as("member").post(f"{API}/targets", target_body(personas, base_url=base_url), format="json")

    assert response.status_code == 400, response.content
    assert "a link-local address" in response.json()["base_url"][0]


@pytest.mark.django_db
def test_the_switch_is_for_operators_only(personas, api_as):
    """Neither the organization API nor its settings page can switch the guard off."""
    api = api_as("owner").patch(
        f"/api/v1/organizations/{personas.org.uuid}", {"name": "Acme API", "allow_private_egress": True}, format="json"
    )
    page = client_as(personas.owner).post(
        reverse("organization_settings", args=[personas.org.uuid]),
        {"name": "Acme page", "time_zone": "UTC", "allow_private_egress": "on"},
    )

    assert api.status_code == 200 and "allow_private_egress" not in api.json()
    assert page.status_code == 302
    personas.org.refresh_from_db()
    assert personas.org.name == "Acme page"  # both writes went through, without the switch
    assert personas.org.allow_private_egress is False


@pytest.mark.django_db
def test_operators_switch_it_in_the_admin(client, personas):
    client.force_login(make_user("ops@pulse.example", is_staff=True, is_superuser=True))

    page = client.get(reverse("admin:accounts_organization_change", args=[personas.org.pk]))

    assert page.status_code == 200
    assert "allow_private_egress" in page.context["adminform"].form.fields


# ---------------------------------------------------------------------------------------------
# When run: the real runner
# ---------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)  # results are stored from the runner's thread
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_running_a_target_at_a_local_service_is_refused_and_quotes_nothing(private_refused, personas, internal, host):
    [result] = run_target(personas.org, internal.url("/v1", host=host))

    assert (result.success, result.error_kind) == (False, ErrorKind.EGRESS_REFUSED)
    assert result.error_message.endswith("a private, local or reserved address; Pulse does not send requests there.")
    assert INTERNAL_SECRET not in result.error_message and result.status_code is None
    assert internal.hits == []


@pytest.mark.django_db(transaction=True)
def test_a_target_name_that_rebinds_after_the_save_is_refused_at_connect_time(private_refused, personas, internal, monkeypatch):
    with rebinding_dns(monkeypatch, "llm.attacker.example", [PUBLIC_STAND_IN, "127.0.0.1"]):
        saved = client_as(personas.member).post(
            reverse("benchmark_target_create", args=[personas.org.uuid]),
            {"name": "Rebinds", "kind": "openai_compatible", "base_url": internal.url("/v1", host="llm.attacker.example"),
             "model_names": "m", "prompt": "Hi", "max_tokens": "16", "interval_minutes": "30"},
        )
        assert saved.status_code == 302  # the save-time lookup saw a public address
        target = Target.objects.get(name="Rebinds")
        run = execution.start_run(name="now", triggered_by=Run.Trigger.MANUAL, organization=personas.org, target=target)
        execution.execute_run(run)

    result = BenchmarkResult.objects.get(run=run)
    assert result.error_kind == ErrorKind.EGRESS_REFUSED
    assert result.error_message.startswith("llm.attacker.example resolves to a private, local or reserved")
    assert "127.0.0.1" not in result.error_message
    assert internal.hits == []


@pytest.mark.django_db(transaction=True)
def test_what_the_guard_prevents_an_allowed_organization_reaches_its_own_service(private_refused, personas, internal):
    """With the admin's switch on, the same target reaches the service (and, since it answers an
    error page, the result quotes it: exactly what a tenant must not get from the operator's)."""
    personas.org.allow_private_egress = True
    personas.org.save()

    [result] = run_target(personas.org, internal.url("/v1"))

    assert internal.hits == ["POST /v1/chat/completions"]
    assert result.error_kind == ErrorKind.SERVER_ERROR and INTERNAL_SECRET in result.error_message


@pytest.mark.django_db(transaction=True)
def test_an_allowed_organization_benchmarks_its_private_endpoint(private_refused, personas):
    with SimulatedProvider() as simulator:
        base_url = simulator.base_url_for("openai_compatible")
        [refused] = run_target(personas.org, base_url, models=["sim-fast"])
        personas.org.allow_private_egress = True
        personas.org.save()
        [measured] = run_target(personas.org, base_url, models=["sim-fast"])

    assert refused.error_kind == ErrorKind.EGRESS_REFUSED
    assert measured.success and measured.ttft_ms is not None and measured.error_kind == ""


@pytest.mark.django_db(transaction=True)
def test_operators_public_providers_still_reach_private_addresses(private_refused):
    """Public benchmarks are the operator's own configuration (the demo simulator is local)."""
    with SimulatedProvider() as simulator:
        provider = Provider.objects.create(name="Local", kind=ProviderKind.OPENAI_COMPATIBLE,
                                           base_url=simulator.base_url_for("openai_compatible"))
        provider.api_key = "sk-sim"
        provider.save()
        Model.objects.create(provider=provider, name="sim-fast", is_active=True)
        run = execution.start_run(name="public", triggered_by=Run.Trigger.MANUAL)
        execution.execute_run(run)

    assert BenchmarkResult.objects.get(run=run).success


def test_one_run_keeps_each_targets_own_policy():
    """The runner measures many targets at once; a tenant's never rides an operator's client."""
    with SimulatedProvider() as simulator:
        request = StreamRequest(base_url=simulator.base_url_for("openai_compatible"), api_key="sk-sim",
                                model="sim-fast", prompt="Hi", max_tokens=16)
        results = run_targets_sync([
            RunTarget(key="operator", kind="openai_compatible", request=request, allow_private=True),
            RunTarget(key="tenant", kind="openai_compatible", request=request),  # allow_private defaults to False
        ])

    outcomes = {target.key: (m.success, m.error_kind) for target, m in results}
    assert outcomes == {"operator": (True, None), "tenant": (False, ErrorKind.EGRESS_REFUSED)}


@pytest.mark.django_db
def test_model_discovery_goes_through_the_guard(private_refused, internal):
    """Providers are operators' own: a local one is listed, a metadata address never."""
    Provider.objects.create(name="Metadata", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="http://169.254.169.254/v1")
    Provider.objects.create(name="Local", kind=ProviderKind.OPENAI_COMPATIBLE, base_url=internal.url("/v1"))

    report = {sync.provider: sync.error for sync in discovery.sync_models().providers}

    assert "169.254.169.254 is a cloud metadata address" in report["Metadata"]
    assert report["Local"].startswith("HTTP 500")  # reached (it answers an error page), and not quoted
    assert internal.hits == ["GET /v1/models"]


@pytest.mark.django_db
def test_a_malformed_url_is_a_field_error_from_full_clean_not_a_crash(private_refused, personas):
    target = Target(organization=personas.org, name="Broken", kind=ProviderKind.OPENAI_COMPATIBLE,
                    base_url="http://[::1/v1", model_names=["m"])

    with pytest.raises(ValidationError) as error:
        target.full_clean()

    assert list(error.value.message_dict) == ["base_url"]
