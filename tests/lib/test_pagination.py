"""lib.pagination: `?page=` is an integer from 1, as the API schema says; anything else is 404."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

URL = "/api/v1/projects"


@pytest.mark.parametrize("page", ["", "last", "0", "-1", "abc", "2"])
def test_a_page_the_schema_does_not_allow_or_past_the_end_is_not_found(api_as, page):
    response = api_as("owner").get(URL, {"page": page})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_no_page_or_page_one_is_the_first_page(api_as, personas):
    client = api_as("owner")
    first = client.get(URL).json()
    assert first["count"] == 1 and first["results"][0]["uuid"] == str(personas.project.uuid)
    assert client.get(URL, {"page": "1"}).json() == first


def test_the_schema_says_pages_start_at_one(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    page = next(p for p in schema["paths"][URL]["get"]["parameters"] if p["name"] == "page")
    assert page["schema"] == {"type": "integer", "minimum": 1}
