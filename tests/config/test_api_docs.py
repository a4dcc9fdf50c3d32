from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_openapi_schema_documents_the_api_and_token_auth(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    for path in ["/api/v1/me", "/api/v1/organizations", "/api/v1/projects", "/api/v1/projects/{project_uuid}/tokens",
                 "/api/v1/organizations/{organization_uuid}/members", "/api/v1/organizations/{organization_uuid}/invitations"]:
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"


def test_swagger_ui_is_served_from_our_own_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn." not in html and "unpkg" not in html


# ---------------------------------------------------------------------------------------------
# The schema tells the truth (issue 10 §3); test_schema_fuzz.py checks it against live answers.
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def schema(client) -> dict:
    return client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def error_schema_of(response: dict) -> str:
    return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_every_operation_documents_the_errors_any_view_can_answer(schema):
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        label = f"{method.upper()} {path}"
        for code in ("401", "403", "429"):
            assert error_schema_of(responses[code]) == "Error", (label, code)
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if "{" in path or "page" in query:
            assert error_schema_of(responses["404"]) == "Error", label
        if "requestBody" in operation:
            assert error_schema_of(responses["400"]) in {"FieldErrors", "BatchRefused"}, label
            assert "415" in responses, label
        for code, response in responses.items():
            if code >= "400":
                assert "application/json" in response.get("content", {}), (label, code)
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]


def test_the_events_list_documents_the_activity_filters(schema):
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert {"project", "range", "since", "until", "provider", "model", "token", "tag", "status", "source",
            "unpriced", "page"} <= set(parameters)
    assert parameters["source"]["enum"] == ["api", "sdk", "gateway", "import"]
    assert parameters["status"]["enum"] == ["success", "failed"]


def test_nullable_references_and_blank_values_are_declared(schema):
    components = schema["components"]["schemas"]
    assert components["Run"]["properties"]["target"]["nullable"] is True
    assert components["Run"]["properties"]["organization"]["nullable"] is True
    for name in ("provider", "model", "target"):
        assert components["Result"]["properties"][name]["nullable"] is True, name
    assert "format" not in components["Provider"]["properties"]["base_url"]  # may be ""
    assert "#/components/schemas/BlankEnum" in str(components["Result"]["properties"]["error_kind"])


def test_recommendations_are_one_object_not_a_page(schema):
    ok = schema["paths"]["/api/v1/costs/recommendations"]["get"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert ref == "Recommendations"
    assert set(schema["components"]["schemas"][ref]["properties"]) == {"results"}
    share = next(p for p in schema["paths"]["/api/v1/costs/recommendations"]["get"]["parameters"] if p["name"] == "share")
    assert (share["schema"]["minimum"], share["schema"]["maximum"]) == (0.05, 1)


def test_a_refused_batch_is_either_a_batch_result_or_field_errors(schema):
    refused = schema["components"]["schemas"]["BatchRefused"]
    assert [ref["$ref"].rsplit("/", 1)[-1] for ref in refused["oneOf"]] == ["BatchResult", "FieldErrors"]


def test_updates_do_not_ask_for_the_organization_they_ignore(schema):
    """An object never moves between tenants: PUT/PATCH ignore `organization`, so their request
    schemas leave it out, while creating one requires it."""
    components = schema["components"]["schemas"]
    for path in ["/api/v1/benchmarks/targets", "/api/v1/projects", "/api/v1/budgets", "/api/v1/webhooks",
                 "/api/v1/alert-rules"]:
        create = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert "organization" in components[create.rsplit("/", 1)[-1]]["required"], path
        for method in ("put", "patch"):
            body = schema["paths"][f"{path}/{{uuid}}"][method]["requestBody"]["content"]["application/json"]
            assert "organization" not in components[body["schema"]["$ref"].rsplit("/", 1)[-1]]["properties"]
    assert "url" not in components["WebhookUpdateRequest"]["required"]  # a change may keep the URL


def test_request_bodies_are_json_only_and_anything_else_is_a_415(schema, api_as):
    for path, method, operation in operations(schema):
        if "requestBody" in operation:
            assert set(operation["requestBody"]["content"]) == {"application/json"}, (method, path)
    response = api_as("owner").post("/api/v1/projects", "name=X", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and "detail" in response.json()
