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
