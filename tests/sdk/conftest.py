"""Fixtures for the SDK's and the CLI's tests: a live Pulse on the test database and a project
with tokens to talk to it.

    def test_track(pulse):
        client = pulse_sdk.Client(api_key=pulse.ingest_key, base_url=pulse.url)
        ...
        assert pulse.events().count() == 1

`pulse` serves pytest-django's live server (Django in a thread of the test process, on the real
PostgreSQL test database), so data the server writes is committed and a test reads it back with
the ORM. The SDK's config file and environment are isolated per test (`_isolated_sdk_config`),
so nothing here reads or writes the developer's own `pulse login`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from pulse_sdk import delivery as delivery_module

from accounts.models import ApiToken, Project, Role
from costs.models import CostEvent, CostEventQuerySet
from tests.conftest import Personas


@dataclass
class LivePulse:
    url: str  # the server's root, e.g. http://localhost:51234 (what PULSE_BASE_URL holds)
    personas: Personas
    ingest_key: str  # a project token with ingest and read scopes for personas.project
    ingest_token: ApiToken

    @property
    def project(self) -> Project:
        return self.personas.project

    def issue_token(self, scopes: Sequence[str], project: Project | None = None) -> tuple[ApiToken, str]:
        project = project or self.project
        owner = project.organization.memberships.filter(role=Role.OWNER).first().user
        return ApiToken.issue(project=project, name="sdk test", scopes=list(scopes), by=owner)

    def events(self, project: Project | None = None) -> CostEventQuerySet:
        return CostEvent.objects.filter(project=project or self.project)


@pytest.fixture(autouse=True)
def _isolated_sdk_config(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_CONFIG_DIR", str(tmp_path / "pulse-config"))
    for name in ("PULSE_API_KEY", "PULSE_BASE_URL", "PULSE_PROJECT", "PULSE_GATEWAY_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _close_leftover_clients() -> Iterator[None]:
    """A test that fails half-way leaves its client open: closed here, so that its threads do
    not retry into the next test, nor try to deliver at the end of the session."""
    before = set(delivery_module._live)
    yield
    for delivery in list(delivery_module._live):
        if delivery not in before:
            delivery.close(0)


@pytest.fixture
def pulse(live_server, transactional_db: None, personas: Personas) -> LivePulse:
    owner = personas.owner
    token, raw = ApiToken.issue(project=personas.project, name="sdk", scopes=["ingest", "read"], by=owner)
    return LivePulse(url=live_server.url, personas=personas, ingest_key=raw, ingest_token=token)
