"""Hostile input on the ingestion endpoints and the date filters: every one of these was a 500
once (issue 10, §2). Each is a clear 4xx now; in a batch, the bad item gets its own error and
the good items are stored, exactly once, also when the client retries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from costs.ingestion import MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS
from costs.models import CostEvent, CostRollup
from tests.conftest import client_as

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"
BATCH_URL = "/api/v1/events/batch"


def event(**overrides) -> dict:
    return {"provider": "acme-ai", "model": "acme-large", "input_tokens": 1000, "output_tokens": 200} | overrides


@pytest.fixture
def ingest_client(token_client):
    client, _token = token_client(["ingest", "read"])
    return client


def post_raw(client, url: str, body: str, content_type: str = "application/json", **headers):
    """Post `body` exactly as written (a JSON escape like \\ud800 stays an escape on the wire)."""
    return client.generic("POST", url, body.encode(), content_type=content_type, **headers)


def raw_event(**fields: str) -> str:
    """An event's JSON with `fields` written verbatim (raw JSON values: 1e400, "\\ud800"…)."""
    fields = {"provider": '"acme-ai"', "model": '"acme-large"'} | fields
    return "{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}"


def stored(personas) -> int:
    return CostEvent.objects.dangerously_unscoped().filter(project=personas.project).count()


def rolled_up_requests(personas) -> int:
    rows = CostRollup.objects.dangerously_unscoped().filter(
        project=personas.project, granularity=CostRollup.Granularity.DAY, tag_key=""
    )
    return rows.aggregate(n=Sum("requests"))["n"] or 0


# ----------------------------------------------------------------------------- one bad value, one event


@pytest.mark.parametrize("field", ["model", "provider", "idempotency_key"])
def test_nul_character_in_a_text_field_is_a_400(ingest_client, personas, field):
    response = ingest_client.post(URL, event(**{field: "m\u0000x"}), format="json")
    assert response.status_code == 400, response.content
    assert "NUL" in response.json()[field][0]
    assert stored(personas) == 0


@pytest.mark.parametrize("tags", [{"fe\u0000ature": "chat"}, {"feature": "ch\u0000at"}])
def test_nul_character_in_tags_is_a_400(ingest_client, personas, tags):
    response = ingest_client.post(URL, event(tags=tags), format="json")
    assert response.status_code == 400, response.content
    assert "tags" in response.json()
    assert stored(personas) == 0


@pytest.mark.parametrize("field,value", [
    ("model", '"m\\ud800"'), ("provider", '"\\udfffx"'), ("idempotency_key", '"\\udc00"'),
    ("tags", '{"k\\udfff": "v"}'), ("tags", '{"k": "\\ud800v"}'), ("unknown\\ud800", "1"),
])
def test_lone_surrogate_is_a_400_with_a_json_body(ingest_client, personas, field, value):
    body = raw_event(**{field: value})
    response = post_raw(ingest_client, URL, body)
    assert response.status_code == 400, response.content
    errors = json.loads(response.content.decode("utf-8"))  # the error itself is valid UTF-8 JSON
    assert len(errors) == 1
    assert stored(personas) == 0


def test_a_valid_surrogate_pair_is_an_ordinary_character(ingest_client, personas):
    response = post_raw(ingest_client, URL, '{"provider": "acme-ai", "model": "smile-\\ud83d\\ude00"}')
    assert response.status_code == 202, response.content
    assert CostEvent.objects.dangerously_unscoped().get().model == "smile-\U0001f600"


def test_a_provider_name_that_lower_casing_lengthens_past_the_column_is_a_400(ingest_client, personas):
    response = ingest_client.post(URL, event(provider="\u0130" * 64), format="json")  # "İ".lower() is 2 characters
    assert response.status_code == 400, response.content
    assert "provider" in response.json()
    assert stored(personas) == 0


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "1e300", "-1", "2.5", "true", "false", '"12"', "[]", "{}",
                                 "100000000000000000000000000000000", "-0.5"])
def test_bad_token_counts_are_a_400(ingest_client, personas, raw):
    body = raw_event(input_tokens=raw)
    response = post_raw(ingest_client, URL, body)
    assert response.status_code == 400, response.content
    assert "input_tokens" in response.json()
    assert stored(personas) == 0


@pytest.mark.parametrize("url", [URL, BATCH_URL])
def test_an_integer_too_long_for_python_to_parse_is_a_400(ingest_client, personas, url):
    body = raw_event(input_tokens="1" * 5000)
    response = post_raw(ingest_client, url, body if url == URL else '{"events": [' + body + "]}")
    assert response.status_code == 400  # the JSON parser refuses the whole body (over 4,300 digits)
    assert response.json()["detail"].startswith("JSON parse error")


def test_a_whole_float_token_count_is_accepted(ingest_client, personas):
    assert ingest_client.post(URL, event(input_tokens=12.0), format="json").status_code == 202
    assert CostEvent.objects.dangerously_unscoped().get().input_tokens == 12


@pytest.mark.parametrize("source", [[], {}, 1, True, "nope"])
def test_source_of_the_wrong_type_is_a_400(ingest_client, personas, source):
    response = ingest_client.post(URL, event(source=source), format="json")
    assert response.status_code == 400, response.content
    assert "source" in response.json()


@pytest.mark.parametrize("field", ["cost_usd", "latency_ms", "status_code"])
@pytest.mark.parametrize("raw", ["1e400", "-1e400", "[]", '"NaN"', '"Infinity"'])
def test_non_finite_numbers_elsewhere_are_a_400(ingest_client, personas, field, raw):
    body = raw_event(**{field: raw})
    response = post_raw(ingest_client, URL, body)
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize("value", [1e400, float("nan")])
def test_non_finite_tag_values_are_a_400(ingest_client, personas, value):
    body = json.dumps(event(tags={"score": value}), allow_nan=True).replace("Infinity", "1e400")
    response = post_raw(ingest_client, URL, body)
    assert response.status_code == 400, response.content


@pytest.mark.parametrize("content_type,body", [
    ("application/x-www-form-urlencoded", "provider=acme-ai&model=acme-large"),
    ("multipart/form-data; boundary=XX", '--XX\r\nContent-Disposition: form-data; name="model"\r\n\r\nm\r\n--XX--\r\n'),
    ("text/plain", '{"provider": "acme-ai", "model": "acme-large"}'),
])
@pytest.mark.parametrize("url", [URL, BATCH_URL])
def test_a_non_json_body_is_a_415_with_a_json_message(ingest_client, personas, content_type, body, url):
    response = post_raw(ingest_client, url, body, content_type=content_type)
    assert response.status_code == 415, response.content
    assert response["Content-Type"].startswith("application/json")
    assert "Unsupported media type" in response.json()["detail"]
    assert stored(personas) == 0


def test_a_form_body_to_any_api_write_is_a_415(api_as, personas):
    response = api_as("owner").generic("POST", "/api/v1/projects", b"name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["detail"]


@pytest.mark.parametrize("timestamp", [
    "0001-01-01T00:00:00+14:00",  # overflows on conversion to UTC
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59.999999+23:59",
    "2026-02-30T00:00:00Z",
    "2026-01-01T00:00:00+25:00",
])
def test_out_of_range_timestamps_are_a_400(ingest_client, personas, timestamp):
    response = ingest_client.post(URL, event(timestamp=timestamp), format="json")
    assert response.status_code == 400, response.content
    assert "timestamp" in response.json()


@pytest.mark.parametrize("seconds", ["1e400", "-1e400", "1e20", "-62135596801", "253402300800"])
def test_out_of_range_unix_timestamps_are_a_400(ingest_client, personas, seconds):
    response = post_raw(ingest_client, URL, raw_event(timestamp=seconds))
    assert response.status_code == 400, response.content
    assert "timestamp" in response.json()


@pytest.mark.parametrize("url", [URL, BATCH_URL])
@pytest.mark.parametrize("depth", [2000, 100_000])
def test_json_nested_deeper_than_the_parser_allows_is_a_400(ingest_client, personas, url, depth):
    response = post_raw(ingest_client, url, "[" * depth + "]" * depth)
    assert response.status_code == 400, response.content
    assert "nested" in response.json()["detail"]


@pytest.mark.parametrize("depth", [33, 500])
def test_nesting_under_the_decoders_limit_is_an_item_error(ingest_client, personas, depth):
    nested = "[" * depth + "]" * depth
    response = post_raw(ingest_client, URL, raw_event(tags=f'{{"k": {nested}}}'))
    assert response.status_code == 400
    assert "tags" in response.json()
    batch = post_raw(ingest_client, BATCH_URL, '{"events": [%s, %s]}' % (json.dumps(event()), nested))  # noqa: UP031
    assert batch.status_code == 202
    assert (batch.json()["accepted"], batch.json()["rejected"]) == (1, 1)


@pytest.mark.parametrize("depth", [33, 500])
def test_nesting_deeper_than_32_elsewhere_in_the_api_is_a_400(api_as, depth):
    nested = "[" * depth + "]" * depth
    body = '{"name": "x", "time_zone": %s}' % nested  # noqa: UP031
    response = api_as("owner").generic("POST", "/api/v1/organizations", body.encode(), content_type="application/json")
    assert response.status_code == 400
    assert "nested more than 32" in response.json()["detail"]


def test_nested_tags_within_the_limit_are_an_item_error(ingest_client, personas):
    response = post_raw(ingest_client, URL, '{"provider": "acme-ai", "model": "m", "tags": {"k": [[[1]]]}}')
    assert response.status_code == 400
    assert "tags" in response.json()


@pytest.mark.parametrize("body", ["", "null", "[]", '"text"', "1", "{", '{"a": }', "\ufeff{}"])
def test_bodies_that_are_not_an_event_are_a_400(ingest_client, personas, body):
    response = post_raw(ingest_client, URL, body)
    assert response.status_code == 400, response.content
    assert response.json()


def test_invalid_utf8_is_a_400(ingest_client, personas):
    response = ingest_client.generic("POST", URL, b'{"provider": "acme-ai", "model": "\xff\xfe"}', content_type="application/json")
    assert response.status_code == 400
    assert response.json()


def test_a_nul_in_the_idempotency_key_header_is_a_400(ingest_client, personas):
    response = ingest_client.post(BATCH_URL, {"events": [event()]}, format="json", HTTP_IDEMPOTENCY_KEY="k\x00")
    assert response.status_code == 400, response.content
    assert "Idempotency-Key" in response.json()
    assert stored(personas) == 0


# ----------------------------------------------------------------------------- batches: per-item errors


NASTY_ITEMS = {
    "nul_model": event(model="m\u0000"),
    "nul_tag_key": event(tags={"k\u0000": "v"}),
    "nul_tag_value": event(tags={"k": "v\u0000"}),
    "nul_key": event(idempotency_key="k\u0000"),
    "infinite_tokens": "INF",  # replaced by a raw 1e400 literal below
    "source_list": event(source=[]),
    "timestamp_overflow": event(timestamp="0001-01-01T00:00:00+14:00"),
    "not_an_object": [],
    "bool_tokens": event(output_tokens=True),
}


def batch_body(items: list) -> str:
    parts = ['{"provider": "acme-ai", "model": "acme-large", "input_tokens": 1e400}' if item == "INF" else json.dumps(item)
             for item in items]
    return '{"events": [' + ", ".join(parts) + "]}"


@pytest.mark.parametrize("name", list(NASTY_ITEMS))
def test_a_bad_item_in_a_batch_gets_its_own_error_and_the_good_items_are_stored(ingest_client, personas, name):
    items = [event(idempotency_key="good-0"), NASTY_ITEMS[name], event(idempotency_key="good-2")]
    response = post_raw(ingest_client, BATCH_URL, batch_body(items))
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 1)
    assert {error["index"] for error in body["errors"]} == {1}
    assert stored(personas) == 2


def test_a_lone_surrogate_item_in_a_batch_gets_its_own_error(ingest_client, personas):
    items = [json.dumps(event()), raw_event(model='"m\\ud800"'), raw_event(tags='{"\\udfff": "1"}')]
    body = '{"events": [' + ", ".join(items) + "]}"
    response = post_raw(ingest_client, BATCH_URL, body)
    assert response.status_code == 202, response.content
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (1, 2)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, "model"), (2, "tags")]


def test_a_batch_of_only_bad_items_is_a_400_in_the_batch_result_shape(ingest_client, personas):
    response = post_raw(ingest_client, BATCH_URL, batch_body(["INF", event(source=[])]))
    assert response.status_code == 400
    assert set(response.json()) == {"accepted", "duplicates", "rejected", "errors"}


def test_a_full_batch_with_one_nul_item_stores_the_other_999_once_and_a_retry_counts_nothing_twice(ingest_client, personas):
    items = [event(idempotency_key=f"evt-{i}", tags={"feature": f"f{i % 7}"}) for i in range(1000)]
    items[500] = event(idempotency_key="evt-500", model="bad\u0000model")
    first = ingest_client.post(BATCH_URL, {"events": items}, format="json")
    assert first.status_code == 202, first.content
    assert (first.json()["accepted"], first.json()["rejected"]) == (999, 1)
    assert first.json()["errors"][0]["index"] == 500

    retry = ingest_client.post(BATCH_URL, {"events": items}, format="json")
    assert retry.status_code == 202, retry.content
    assert (retry.json()["accepted"], retry.json()["duplicates"], retry.json()["rejected"]) == (0, 999, 1)

    assert stored(personas) == 999
    assert rolled_up_requests(personas) == 999


def test_a_retried_batch_with_the_header_key_and_a_bad_item_is_idempotent(ingest_client, personas):
    items = [event(), event(model="x\u0000"), event()]
    for _ in range(2):
        response = ingest_client.post(BATCH_URL, {"events": items}, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
        assert response.status_code == 202
    assert stored(personas) == 2
    assert rolled_up_requests(personas) == 2


# ----------------------------------------------------------------------------- the request size limit


def biggest_batch() -> dict:
    """The documented maximum: 1,000 events, each with every field at its longest and the most
    tags, the longest keys and values; tag keys and values escaped as JSON makes them longest
    ("\\u0001" is six bytes for one character), which the limit must still allow."""
    def tags(i: int) -> dict:
        return {f"{n:02d}".ljust(MAX_TAG_KEY, "k"): "\u00e9" * MAX_TAG_VALUE for n in range(MAX_TAGS)}

    return {"events": [
        {
            "provider": "p" * 64, "model": "m" * 128, "input_tokens": 10**9, "output_tokens": 10**9,
            "cached_tokens": 10**9, "reasoning_tokens": 10**9, "cost_usd": "999999.9999999999",
            "latency_ms": 3599999.999999, "status_code": 200, "success": True,
            "timestamp": "2026-11-23T14:05:00.000000+00:00", "tags": tags(i),
            "idempotency_key": f"{i:04d}".ljust(128, "i"), "source": "import",
        }
        for i in range(1000)
    ]}


def test_the_documented_maximum_batch_fits_the_request_size_limit(settings):
    body = json.dumps(biggest_batch(), ensure_ascii=True, indent=2).encode()  # escaped and pretty: the largest form
    assert len(body) <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    # ...with headroom for clients that format differently.
    assert len(body) * 1.2 <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def test_the_maximum_batch_is_accepted_over_http(ingest_client, personas):
    batch = biggest_batch()
    for item in batch["events"]:
        item.pop("timestamp")
    body = json.dumps(batch, ensure_ascii=True, indent=2)
    response = post_raw(ingest_client, BATCH_URL, body)
    assert response.status_code == 202, response.content[:500]
    assert response.json()["accepted"] == 1000


@pytest.mark.parametrize("url", [URL, BATCH_URL])
def test_a_body_over_the_limit_is_a_json_413(ingest_client, personas, settings, url):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"events": [event(model="m" * 100) for _ in range(200)]})
    response = post_raw(ingest_client, url, body)
    assert response.status_code == 413, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert "10,000" in response.json()["detail"]
    assert stored(personas) == 0


# ----------------------------------------------------------------------------- dates on pages and the API


@pytest.mark.parametrize("params", [
    {"end": "9999-12-31"}, {"start": "9999-12-31"}, {"start": "0001-01-01"}, {"end": "0001-01-01"},
    {"start": "0001-01-01", "end": "9999-12-31"},
])
@pytest.mark.parametrize("page", ["cost_activity", "cost_activity_export"])
def test_out_of_range_dates_on_the_activity_log_are_a_form_error(personas, params, page):
    from django.urls import reverse

    response = client_as(personas.owner).get(reverse(page, args=[personas.project.uuid]), params)
    assert response.status_code in (200, 400), response.status_code
    if page == "cost_activity":
        assert response.status_code == 200
        assert b"This filter was ignored" in response.content


@pytest.mark.parametrize("params", [{"end": "9999-12-31"}, {"start": "0001-01-01"}, {"start": "9999-12-31"}])
def test_out_of_range_dates_on_the_alert_history_are_a_form_error(personas, params):
    from django.urls import reverse

    # Far east and far west zones push midnight conversions out of range at each end.
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):
        personas.org.time_zone = zone
        personas.org.save(update_fields=["time_zone"])
        response = client_as(personas.owner).get(reverse("alert_history", args=[personas.org.uuid]), params)
        assert response.status_code == 200
        assert b"This filter was ignored" in response.content


@pytest.mark.parametrize("params", [
    {"from": "0001-01-01", "to": "0001-01-05"}, {"from": "0001-01-01", "to": "0001-01-01"},
    {"from": "9999-12-31", "to": "9999-12-31"}, {"from": "1899-12-31", "to": "1900-01-05"},
])
@pytest.mark.parametrize("url", ["/api/v1/costs/summary", "/api/v1/costs/tokens"])
def test_out_of_range_dates_on_the_cost_summary_are_a_400_per_field(api_as, personas, params, url):
    response = api_as("owner").get(url, {"project": personas.project.uuid, **params})
    assert response.status_code == 400, response.content
    assert set(response.json()) & {"from", "to"}


@pytest.mark.parametrize("query,accept", [("", None), ("", "text/csv"), ("&format=csv", None), ("&format=csv", "text/csv")])
def test_options_on_the_summary_answers_json_even_when_csv_is_asked_for(token_client, personas, query, accept):
    client, _token = token_client(["read"])
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = client.options(f"/api/v1/costs/summary?project={personas.project.uuid}{query}", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["name"]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_wrong_method_on_the_summary_with_accept_csv_is_a_json_405(api_as, personas, method):
    response = getattr(api_as("owner"), method)(f"/api/v1/costs/summary?project={personas.project.uuid}", HTTP_ACCEPT="text/csv")
    assert response.status_code == 405
    assert response.json()["detail"]


@pytest.mark.parametrize("accept", ["text/csv", "text/csv, application/json", "application/xml", "*/*", "text/html"])
@pytest.mark.parametrize("url", ["/api/v1/costs/summary", "/api/v1/costs/tokens"])
def test_the_summary_answers_any_accept_header(token_client, personas, accept, url):
    client, _token = token_client(["read"])
    response = client.get(url, {"project": personas.project.uuid}, HTTP_ACCEPT=accept)
    assert response.status_code in (200, 406), response.content[:300]
    if response.status_code == 406:
        assert response.json()["detail"]


def test_the_summary_csv_is_streamed_for_a_signed_in_browser(personas):
    client = Client()
    client.force_login(personas.owner)
    response = client.get("/api/v1/costs/summary", {"project": personas.project.uuid}, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert b"".join(response.streaming_content).strip()


# ----------------------------------------------------------------------------- a sweep of every GET

NASTY_QUERY_VALUES = [
    "\x00", "-1", "99999999999999999999999999", "1e400", "[]", "x" * 5000, "9999-12-31", "0001-01-01",
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "\u202e\ufffd",
]
# Parameters some view might read without declaring them.
UNDECLARED_PARAMS = ["project", "page", "format", "range", "tag"]
# Ranges only fail as a pair (from=0001-01-01 alone is "give both").
RANGE_PAIRS = [("from", "to"), ("since", "until"), ("start", "end")]


def api_get_operations() -> list[tuple[str, list[str]]]:
    """Every GET of the OpenAPI schema: (path template, its query parameters)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (path, [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method == "get"
    ]


def nasty_queries(params: list[str]) -> list[dict]:
    """Each parameter alone with each nasty value, and each range pair with it at both ends."""
    queries = [{param: value} for param in params for value in NASTY_QUERY_VALUES]
    for first, last in RANGE_PAIRS:
        if first in params:
            queries += [{first: value, last: value} for value in NASTY_QUERY_VALUES]
            queries += [{first: "0001-01-01", last: "0001-01-05"}, {first: "1900-01-01", last: "9999-12-31"}]
    return queries


def test_no_query_parameter_of_any_api_get_gives_a_5xx(api_as, personas):
    client = api_as("owner")
    real = {"organization_uuid": personas.org.uuid, "project_uuid": personas.project.uuid, "uuid": personas.project.uuid}
    failures = []
    operations = api_get_operations()
    assert len(operations) > 20
    for template, declared in operations:
        url = template
        for name, value in real.items():
            url = url.replace(f"{{{name}}}", str(value))
        for query in nasty_queries(sorted(set(declared) | set(UNDECLARED_PARAMS))):
            query.setdefault("project", personas.project.uuid)
            response = client.get(url, query)
            if response.status_code >= 500 or not response["Content-Type"].startswith(("application/json", "text/csv")):
                failures.append((url, query, response.status_code))
    assert failures == []


@pytest.mark.parametrize("value", ["\x00", "not-a-uuid", "0" * 5000, "%ff", "1e400", "..", "00000000-0000-0000-0000-000000000000"])
def test_no_path_parameter_of_any_api_get_gives_a_5xx(api_as, personas, value):
    client = api_as("owner")
    failures = []
    for template, _declared in api_get_operations():
        if "{" not in template:
            continue
        url = template.replace("{organization_uuid}", str(personas.org.uuid)).replace("{project_uuid}", str(personas.project.uuid))
        url = url.replace("{uuid}", value)
        response = client.get(url)
        if response.status_code >= 500 or response["Content-Type"] != "application/json":
            failures.append((url, response.status_code))
    assert failures == []


def filtered_pages(personas) -> dict[str, list[str]]:
    """The pages that read query parameters, with the parameters each reads."""
    from django.urls import reverse

    project, org = personas.project.uuid, personas.org.uuid
    activity = ["range", "start", "end", "provider", "model", "token", "tag", "status", "unpriced", "page"]
    return {
        reverse("project_dashboard", args=[project]): ["range"],
        reverse("cost_activity", args=[project]): activity,
        reverse("cost_activity_export", args=[project]): activity,
        reverse("alert_history", args=[org]): ["kind", "severity", "budget", "rule", "start", "end", "page"],
        reverse("budget_create", args=[org]): ["scope"],
        reverse("organization_benchmarks", args=[org]): ["range", "kind"],
        reverse("leaderboard"): ["range", "kind"],
    }


def test_no_query_parameter_of_a_filtered_page_gives_a_5xx(personas):
    client = client_as(personas.owner)
    failures = []
    for url, params in filtered_pages(personas).items():
        for query in nasty_queries(params):
            status = client.get(url, query).status_code
            if status >= 500:
                failures.append((url, query, status))
    assert failures == []


# ----------------------------------------------------------------------------- random JSON


NASTY_CHARACTERS = st.sampled_from(["\x00", "\u0130", "\ud800", "\udfff", "\u202e", "\U0001f600", "\\", '"', " "])
nasty_text = st.text(alphabet=st.one_of(st.characters(), NASTY_CHARACTERS), max_size=140)
nasty_number = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 10**9, 10**9 + 1, 1.5, 12.0, 1e308]),
)
nasty_scalar = st.one_of(st.none(), st.booleans(), nasty_number, nasty_text)


def containers_of(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3)


nasty_json = st.recursive(nasty_scalar, containers_of, max_leaves=8)
recent_timestamp = st.integers(min_value=-400 * 86400, max_value=0).map(
    lambda seconds: (timezone.now() + timedelta(seconds=seconds)).isoformat()
)
storable_text = st.text(alphabet=st.characters(exclude_characters="\x00"), min_size=1, max_size=40).filter(str.strip)
valid_event = st.fixed_dictionaries(
    {"provider": st.sampled_from(["acme-ai", "openai", "Anthropic"]), "model": storable_text},
    optional={
        "input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**6), "latency_ms": st.floats(0, 10**5),
        "status_code": st.integers(100, 599), "timestamp": recent_timestamp, "idempotency_key": storable_text,
        "tags": st.dictionaries(st.text(min_size=1, max_size=64).filter(lambda k: "\x00" not in k), storable_text, max_size=4),
        "source": st.sampled_from(["api", "sdk", "import"]), "cost_usd": st.decimals(0, 1000, places=6).map(str),
    },
)
EVENT_FIELDS = ["provider", "model", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd",
                "latency_ms", "status_code", "success", "timestamp", "tags", "idempotency_key", "source", "unknown"]
one_bad_value = st.builds(
    lambda item, name, value: item | {name: value}, valid_event, st.sampled_from(EVENT_FIELDS), nasty_json,
)
# Valid events, valid ones with one hostile value, and anything at all.
random_event = st.one_of(valid_event, one_bad_value, nasty_json)


def encode(value: object) -> str:
    """JSON as a hostile client may write it: NaN and Infinity literals, lone surrogates escaped."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def assert_parse_error_only_for_non_json(body: dict, sent: str) -> None:
    """A whole-request error only for what is not JSON at all: NaN and Infinity literals."""
    if "detail" in body:
        assert body["detail"].startswith("JSON parse error"), body
        assert "NaN" in sent or "Infinity" in sent


def assert_every_stored_event_is_readable(client, personas) -> None:
    for event_uuid in CostEvent.objects.dangerously_unscoped().filter(project=personas.project).values_list("uuid", flat=True):
        response = client.get(f"{URL}/{event_uuid}")
        assert response.status_code == 200, response.content
        assert response.json()["id"] == str(event_uuid)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=random_event)
def test_random_json_to_the_single_event_endpoint_is_never_a_5xx(ingest_client, personas, item):
    before = stored(personas)
    sent = encode(item)
    response = post_raw(ingest_client, URL, sent)
    assert response.status_code in (202, 400), response.content[:500]
    body = response.json()
    if response.status_code == 202:
        assert stored(personas) == before + (0 if body["duplicate"] else 1)
        read = ingest_client.get(f"{URL}/{body['id']}")
        assert read.status_code == 200, read.content
        if not body["duplicate"]:  # (a duplicate answers with the event stored first)
            assert read.json()["model"] == item["model"].strip()
            assert set(read.json()["tags"]) == set(item.get("tags") or {})
    else:
        assert_parse_error_only_for_non_json(body, sent)
        assert stored(personas) == before


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(random_event, min_size=1, max_size=6))
def test_random_json_to_the_batch_endpoint_is_never_a_5xx_and_nothing_accepted_is_lost(ingest_client, personas, items):
    before = stored(personas)
    sent = encode({"events": items})
    response = post_raw(ingest_client, BATCH_URL, sent)
    assert response.status_code in (202, 400), response.content[:500]
    body = response.json()
    if "detail" in body:
        assert_parse_error_only_for_non_json(body, sent)
        assert stored(personas) == before
        return
    assert body["accepted"] + body["duplicates"] + body["rejected"] == len(items)
    assert stored(personas) == before + body["accepted"]
    assert rolled_up_requests(personas) == stored(personas)
    assert_every_stored_event_is_readable(ingest_client, personas)


# ----------------------------------------------------------------------------- every other write

NASTY_BODY_VALUES = [
    "x\u0000y", "\ud800", "m\udfff", 10**30, -(10**30), 1e308, -1, [], {}, ["\u0000"], ["\ud800"], {"\ud800": 1},
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "x" * 10_000, True, None,
]


def api_write_operations() -> list[tuple[str, str, list[str]]]:
    """Every POST/PUT/PATCH of the schema with a JSON body: (method, path, body properties)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            name = content.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
            if method in ("post", "put", "patch") and name in components:
                found.append((method, path, list(components[name].get("properties", {}))))
    return found


def test_no_hostile_value_in_any_api_write_gives_a_5xx(api_as, personas):
    client = api_as("owner")
    real = {"organization_uuid": personas.org.uuid, "project_uuid": personas.project.uuid, "uuid": personas.project.uuid}
    base = {"organization": str(personas.org.uuid), "project": str(personas.project.uuid), "name": "n"}
    failures, operations = [], api_write_operations()
    assert len(operations) > 15
    for method, template, properties in operations:
        url = template
        for name, value in real.items():
            url = url.replace(f"{{{name}}}", str(value))
        for prop in properties:
            for value in NASTY_BODY_VALUES:
                body = json.dumps({**base, prop: value}, ensure_ascii=True)  # a lone surrogate stays an escape
                response = client.generic(method.upper(), url, body.encode(), content_type="application/json")
                if response.status_code >= 500 or response["Content-Type"] != "application/json":
                    failures.append((method, url, prop, repr(value)[:30], response.status_code))
    assert failures == []


@pytest.mark.parametrize("url,body", [
    ("/api/v1/projects", '{"name": "p\\ud800", "organization": "%s"}'),
    ("/api/v1/organizations", '{"name": "\\udfff"}'),
    ("/api/v1/budgets", '{"organization": "%s", "name": "b", "amount": "1", "extra_emails": ["a\\ud800@example.com"]}'),
])
def test_a_lone_surrogate_anywhere_else_in_the_api_is_a_400(api_as, personas, url, body):
    response = api_as("owner").generic("POST", url, body.replace("%s", str(personas.org.uuid)).encode(), content_type="application/json")
    assert response.status_code == 400, response.content
    assert "surrogate" in response.json()["detail"]


# ----------------------------------------------------------------------------- JSON is UTF-8 (RFC 8259)

# Bodies that decode to a lone surrogate with no \u escape in the decoded text, if decoded by the
# charset they declare: the surrogate check never ran, DRF quoted the value in its error message
# and rendering that message was a 500.
SURROGATE_BY_CHARSET = [
    ("utf-7", b'"+2AA-"'),
    ("raw_unicode_escape", b'"\\ud800"'),
    ("UTF-16", '"x"'.encode("utf-16")),
    ("latin-1", b'"caf\xe9"'),
]


@pytest.mark.parametrize("charset,value", SURROGATE_BY_CHARSET)
def test_a_json_body_in_another_charset_than_utf8_is_a_json_415(api_as, personas, charset, value):
    body = b'{"organization": "%s", "name": "t", "kind": %s, "base_url": "https://llm.example.com/v1", "model_names": ["m"]}' % (
        str(personas.org.uuid).encode(), value,
    )
    response = api_as("owner").generic(
        "POST", "/api/v1/benchmarks/targets", body, content_type=f"application/json; charset={charset}"
    )
    assert response.status_code == 415, response.content
    assert response["Content-Type"] == "application/json"
    assert "UTF-8" in response.json()["detail"]


@pytest.mark.parametrize("url", [URL, BATCH_URL])
@pytest.mark.parametrize("charset", ["utf-7", "raw_unicode_escape", "latin-1", "utf-16", "bogus"])
def test_ingestion_refuses_other_charsets_with_a_415_too(ingest_client, personas, url, charset):
    body = event(model="+2AA-") if url == URL else {"events": [event(model="+2AA-")]}
    response = post_raw(ingest_client, url, json.dumps(body), content_type=f"application/json; charset={charset}")
    assert response.status_code == 415, response.content
    assert response["Content-Type"] == "application/json"
    assert stored(personas) == 0


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8",
    "application/json;charset=UTF8", 'application/json; charset="utf-8"',
])
def test_utf8_declared_or_not_is_accepted(ingest_client, personas, content_type):
    response = post_raw(ingest_client, URL, json.dumps(event(model="caf\u00e9"), ensure_ascii=False), content_type=content_type)
    assert response.status_code == 202, response.content
    assert CostEvent.objects.dangerously_unscoped().get().model == "caf\u00e9"


@pytest.mark.parametrize("raw", [b"caf\xe9", b"\xed\xa0\x80", b"\xff\xfe"])  # latin-1, an encoded surrogate, a stray byte
def test_bytes_that_are_not_utf8_are_a_400_whatever_the_endpoint(api_as, ingest_client, personas, raw):
    body = b'{"provider": "acme-ai", "model": "%s"}' % raw
    assert ingest_client.generic("POST", URL, body, content_type="application/json").status_code == 400
    response = api_as("owner").generic("POST", "/api/v1/organizations", b'{"name": "%s"}' % raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert stored(personas) == 0
