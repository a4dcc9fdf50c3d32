"""One provider registry: each adapter owns its kind, label, auth headers, model listing,
genai-prices ids and simulator prefix, and everything else reads the registry. A provider
registered at runtime (as a new file in benchmarks/providers/ would be) shows up in the kind
choices of models, forms and the API, in model discovery, in pricing and in the simulator's URLs,
with nothing else edited."""

from __future__ import annotations

import json

import httpx
import pytest
from django.core.exceptions import ValidationError

from benchmarks import discovery
from benchmarks.api import TargetSerializer
from benchmarks.forms import TargetForm
from benchmarks.models import Model, Provider, ProviderKind, Target
from benchmarks.providers import (
    ADAPTERS,
    DEFAULT_PRICING_KIND,
    ProviderAdapter,
    StreamRequest,
    adapter_for,
    kind_for_pricing_provider,
    register,
)
from benchmarks.providers.listing import get_json
from benchmarks.simulator import base_url_for
from costs.pricing import adopt_bundled_model

pytestmark = pytest.mark.django_db

API = "/api/v1/benchmarks"


class CarrierPigeonAdapter(ProviderAdapter):
    """What a new provider file holds: its identity, its headers and its models API (streaming
    is not exercised here; test_measurement covers `stream()` for every registered format)."""

    kind = "carrier_pigeon"
    label = "Carrier Pigeon"
    pricing_provider_ids = ("deepseek",)
    simulator_prefix = "/carrier"

    def api_headers(self, api_key: str) -> dict[str, str]:
        return {"x-pigeon-key": api_key, "x-pigeon-version": "1"} if api_key else {"x-pigeon-version": "1"}

    def list_models(self, client: httpx.Client, base_url: str, api_key: str) -> list[str]:
        body = get_json(client, f"{base_url.rstrip('/')}/roost", self.api_headers(api_key))
        return [bird["name"] for bird in body["birds"]]


@pytest.fixture
def pigeon():
    adapter = register(CarrierPigeonAdapter())
    yield adapter
    ADAPTERS.pop(adapter.kind)


def test_the_built_in_kinds_are_the_registry_and_keep_their_stored_values():
    assert set(ProviderKind.values) == set(ADAPTERS) == {"openai_compatible", "anthropic", "gemini"}
    assert ProviderKind.ANTHROPIC.label == adapter_for("anthropic").label == "Anthropic"
    assert list(Target._meta.get_field("kind").choices) == list(Provider._meta.get_field("kind").choices)
    with pytest.raises(ValueError, match="Unknown provider kind 'carrier_pigeon'"):
        adapter_for("carrier_pigeon")


def test_a_registered_provider_is_a_kind_choice_of_models_forms_and_the_api(pigeon, personas, api_as):
    assert ("carrier_pigeon", "Carrier Pigeon") in Provider._meta.get_field("kind").choices
    assert ("carrier_pigeon", "Carrier Pigeon") in Target._meta.get_field("kind").choices
    assert ("carrier_pigeon", "Carrier Pigeon") in list(TargetForm(organization=personas.org).fields["kind"].choices)
    assert "carrier_pigeon" in TargetSerializer().fields["kind"].choices

    target = Target(organization=personas.org, name="Coop", kind="carrier_pigeon",
                    base_url="https://coop.example", model_names=["pigeon-1"])
    target.full_clean(exclude=["base_url"])  # the kind is valid (base_url rules are not this test's)
    assert target.get_kind_display() == "Carrier Pigeon"

    body = {"organization": str(personas.org.uuid), "name": "Coop", "kind": "carrier_pigeon",
            "base_url": "https://coop.example/v1", "model_names": ["pigeon-1"]}
    response = api_as("owner").post(f"{API}/targets", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    assert Target.objects.get(uuid=response.json()["uuid"]).kind == "carrier_pigeon"


def test_an_unregistered_kind_is_refused_everywhere(personas, api_as):
    target = Target(organization=personas.org, name="Coop", kind="carrier_pigeon",
                    base_url="https://coop.example", model_names=["pigeon-1"])
    with pytest.raises(ValidationError) as error:
        target.full_clean(exclude=["base_url"])
    assert "kind" in error.value.message_dict
    body = {"organization": str(personas.org.uuid), "name": "Coop", "kind": "carrier_pigeon",
            "base_url": "https://coop.example/v1", "model_names": ["pigeon-1"]}
    response = api_as("owner").post(f"{API}/targets", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and list(response.json()) == ["kind"], response.content


def test_discovery_lists_a_registered_providers_models_with_its_own_headers(pigeon):
    provider = Provider.objects.create(name="Pigeon Post", kind="carrier_pigeon", base_url="https://coop.example/api",
                                       api_key="sk-pigeon")
    seen: list[httpx.Request] = []

    def roost(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"birds": [{"name": "pigeon-1"}, {"name": "pigeon-2"}]})

    with httpx.Client(transport=httpx.MockTransport(roost)) as client:
        report = discovery.sync_models(client=client)

    assert [str(r.url) for r in seen] == ["https://coop.example/api/roost"]
    assert seen[0].headers["x-pigeon-key"] == "sk-pigeon" and seen[0].headers["x-pigeon-version"] == "1"
    assert report.providers[0].new == ["pigeon-1", "pigeon-2"] and report.errors == 0
    assert set(Model.objects.filter(provider=provider).values_list("name", flat=True)) == {"pigeon-1", "pigeon-2"}


def test_discovery_reports_a_provider_whose_kind_is_no_longer_registered():
    Provider.objects.create(name="Orphan", kind="carrier_pigeon", base_url="https://coop.example")

    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        report = discovery.sync_models(client=client)

    assert report.errors == 1 and "Unknown provider kind 'carrier_pigeon'" in report.providers[0].error


def test_pricing_adopts_models_with_the_kind_of_the_adapter_that_claims_their_provider(pigeon):
    assert kind_for_pricing_provider("deepseek") == "carrier_pigeon"
    assert adopt_bundled_model("deepseek", "deepseek-chat").provider.kind == "carrier_pigeon"


def test_pricing_kinds_of_the_built_in_providers():
    assert kind_for_pricing_provider("anthropic") == "anthropic"
    assert kind_for_pricing_provider("google") == kind_for_pricing_provider("google-gla") == "gemini"
    # Nobody claims DeepSeek: most APIs speak the OpenAI wire format.
    assert kind_for_pricing_provider("deepseek") == DEFAULT_PRICING_KIND == "openai_compatible"
    assert adopt_bundled_model("deepseek", "deepseek-chat").provider.kind == "openai_compatible"
    assert adopt_bundled_model("anthropic", "claude-3-5-haiku-latest").provider.kind == "anthropic"


def test_the_simulator_serves_each_kind_below_its_adapters_prefix(pigeon):
    assert base_url_for("http://127.0.0.1:8765/", "carrier_pigeon") == "http://127.0.0.1:8765/carrier"
    assert base_url_for("http://sim", "openai_compatible") == "http://sim/openai/v1"
    assert base_url_for("http://sim", "anthropic") == "http://sim/anthropic"


@pytest.mark.parametrize("kind", ["openai_compatible", "anthropic", "gemini"])
def test_streaming_and_model_listing_send_the_same_auth_headers(kind):
    adapter = adapter_for(kind)
    streamed = adapter.headers(StreamRequest(base_url="https://x.example", api_key="sk-1", model="m", prompt="p"))
    listed: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        listed.append(request)
        return httpx.Response(200, json={"data": [{"id": "m"}], "models": [{"name": "models/m"}]})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert adapter.list_models(client, "https://x.example", "sk-1") == ["m"]
    auth = adapter.api_headers("sk-1")
    assert auth and "sk-1" in "".join(auth.values())
    assert all(streamed[name] == value and listed[0].headers[name] == value for name, value in auth.items())
    # Without a key (a local vLLM or Ollama) no auth header is sent at all, only the version.
    assert not any("sk" in value or value.startswith("Bearer") for value in adapter.api_headers("").values())
    if kind == "anthropic":
        assert adapter.api_headers("") == {"anthropic-version": "2023-06-01"}


def test_the_registry_refuses_a_taken_kind_or_one_the_database_cannot_store(pigeon):
    with pytest.raises(ValueError, match="already registered"):
        register(CarrierPigeonAdapter())

    class TooLong(CarrierPigeonAdapter):
        kind = "x" * 33

    class Nameless(CarrierPigeonAdapter):
        kind, label = "nameless", ""

    for adapter in (TooLong(), Nameless()):
        with pytest.raises(ValueError, match="needs a kind"):
            register(adapter)
    assert set(ADAPTERS) == {"openai_compatible", "anthropic", "gemini", "carrier_pigeon"}
