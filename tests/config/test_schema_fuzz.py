"""The OpenAPI schema tells the truth: schemathesis generates requests for every operation of
/api/schema/ and sends them, with an owner's all-scope API token, to a live server on the test
PostgreSQL and Redis. Each operation is its own test (a new endpoint is covered without a line
here), on freshly seeded data, so a DELETE in one cannot starve another.

Checked on every response: no 5xx, the status code is documented, the content type is the
documented one, the body matches the documented schema, and invalid data is refused.
"""

from __future__ import annotations

import json
import os

import pytest
import requests
import schemathesis
from celery.app.task import Task
from hypothesis import HealthCheck, settings

from . import schema_fuzz

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

# Generated examples per operation (besides schemathesis's boundary-value "coverage" cases): with
# about 75 operations the file stays within ~3 minutes on two busy cores. Raise it locally
# (PULSE_FUZZ_EXAMPLES=100) to dig deeper.
EXAMPLES = int(os.environ.get("PULSE_FUZZ_EXAMPLES", "8"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


def served_schema() -> dict:
    """/api/schema/ as SpectacularAPIView serves it, generated at collection so that every
    operation becomes a test of its own (no server or database needed to generate it)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(served_schema())


@pytest.fixture
def seeded(live_server, monkeypatch) -> schema_fuzz.Seeded:
    # Tasks (run now, webhook deliveries, budget checks) are recorded, not queued: no worker
    # consumes them here, and none may reach a real endpoint.
    monkeypatch.setattr(Task, "apply_async", lambda self, *args, **kwargs: None)
    return schema_fuzz.seed()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_operation_keeps_to_the_schema(case, seeded, live_server):
    case.call_and_validate(base_url=live_server.url, checks=CHECKS)


def test_the_fuzzed_schema_is_the_one_served(live_server):
    """The operations above come from the generator at collection time; /api/schema/ must serve
    exactly that document, or the fuzz would test something the clients never see."""
    response = requests.get(f"{live_server.url}/api/schema/?format=json", timeout=30)
    assert response.status_code == 200
    assert response.json() == served_schema()
