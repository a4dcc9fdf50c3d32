"""Every response under /api/ and /v1/ is JSON, errors included (issue 10, §2): 400, 404 (an
unknown URL too), 405, 413, 415, 429 and 500, from DRF views and from outside them. Pages keep
their HTML error pages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts.api_errors import exception_handler
from accounts.models import ApiToken
from accounts.throttling import ApiTokenRateThrottle
from lib.json_errors import is_api_path
from tests.conftest import PROJECT_ROOT, database_url_of_test_database
from tests.costs.test_durability import free_port

pytestmark = pytest.mark.django_db


def crash(request):
    raise RuntimeError("boom")


class CrashingApiView(APIView):
    permission_classes = []

    def get(self, request):
        raise RuntimeError("boom")


class SurrogateEchoApiView(APIView):
    """Quotes a lone surrogate in a validation message, as DRF's own fields do with bad input."""

    permission_classes = []

    def get(self, request):
        raise ValidationError({"kind": ['"\ud800" is not a valid choice.']})


@require_POST
def post_only(request):
    return HttpResponse("ok")


# A URLconf with views that fail, around the real one (the test module is its own URLconf).
urlpatterns = [
    path("api/v1/test-crash", crash),
    path("api/v1/test-drf-crash", CrashingApiView.as_view()),
    path("api/v1/test-post-only", post_only),
    path("api/v1/test-surrogate", SurrogateEchoApiView.as_view()),
    path("v1/test-crash", crash),
    path("test-crash/", crash),
    path("", include("config.urls")),
]
with_failing_views = pytest.mark.urls(__name__)


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.parametrize("url", ["/api/nope", "/api/v1/nope", "/api/v1/events/", "/api/v1/projects/not-a-uuid/x", "/v1/models", "/v1/"])
def test_an_unknown_url_under_the_api_is_a_json_404(url):
    assert assert_json_error(Client().get(url), 404)["detail"] == "Not found."


def test_an_api_404_never_renders_a_page_so_a_broken_page_cannot_make_it_a_500(monkeypatch):
    """Found on a production server without its static manifest: rendering the HTML 404 page
    failed, so an unknown API URL was a 500. The API's 404 is JSON without rendering anything."""
    def broken_page(request, exception):
        raise ValueError("Missing staticfiles manifest entry")
    monkeypatch.setattr("django.views.defaults.page_not_found", broken_page)
    for url in ("/api/v1/nope", "/v1/chat/completions"):
        assert assert_json_error(Client(raise_request_exception=False).get(url), 404)["detail"] == "Not found."


def test_an_unknown_page_is_still_an_html_404():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@with_failing_views
@pytest.mark.parametrize("url", ["/api/v1/test-crash", "/api/v1/test-drf-crash", "/v1/test-crash"])
def test_an_uncaught_exception_under_the_api_is_a_json_500(url):
    response = Client(raise_request_exception=False).get(url)
    assert assert_json_error(response, 500)["detail"] == "A server error occurred."
    assert b"boom" not in response.content  # nothing of the exception leaks


@with_failing_views
def test_a_lone_surrogate_quoted_in_an_error_is_rendered_not_a_500():
    response = APIClient().get("/api/v1/test-surrogate")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"kind": ['"\ud800" is not a valid choice.']}


@with_failing_views
def test_an_uncaught_exception_on_a_page_is_still_the_html_500():
    response = Client(raise_request_exception=False).get("/test-crash/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


@with_failing_views
def test_a_plain_django_405_under_the_api_is_json_and_keeps_its_allow_header():
    response = Client().get("/api/v1/test-post-only")
    assert_json_error(response, 405)
    assert response["Allow"] == "POST"
    # The headers set by the middleware below (clickjacking, CSP) are kept too.
    assert response["X-Frame-Options"] == "DENY"
    assert any(header.startswith("Content-Security-Policy") for header in response.headers)


@pytest.mark.parametrize("method,url", [("delete", "/api/v1/me"), ("put", "/api/v1/costs/summary"), ("post", "/api/schema/"),
                                        ("post", "/api/docs/")])
def test_a_wrong_method_is_a_json_405(api_as, method, url):
    response = getattr(api_as("owner"), method)(url)
    assert_json_error(response, 405)
    assert response["Allow"]


def test_malformed_json_is_a_json_400(api_as):
    response = api_as("owner").generic("POST", "/api/v1/projects", b'{"name": ', content_type="application/json")
    assert "JSON parse error" in assert_json_error(response, 400)["detail"]


def test_a_bad_host_header_under_the_api_is_a_json_400():
    assert_json_error(Client().get("/api/v1/me", HTTP_HOST="evil example"), 400)


@pytest.mark.parametrize("url", ["/api/v1/projects", "/api/v1/events/batch", "/api/v1/nope", "/v1/chat/completions"])
def test_a_declared_body_over_the_limit_is_a_json_413_before_anything_reads_it(api_as, settings, url):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api_as("owner").generic("POST", url, b"{" + b" " * 2000 + b"}", content_type="application/json")
    assert "1,000 bytes" in assert_json_error(response, 413)["detail"]


def test_a_form_post_over_the_limit_to_a_page_keeps_djangos_behaviour(personas, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = Client()
    client.force_login(personas.owner)
    response = client.post("/settings/", {"x": "y" * 2000})
    assert response.status_code == 400  # Django's RequestDataTooBig, as before
    assert response["Content-Type"].startswith("text/html")


def test_the_api_exception_handler_answers_djangos_too_big_error_with_413():
    response = exception_handler(RequestDataTooBig("too big"), {})
    assert response.status_code == 413
    assert "bytes" in response.data["detail"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain",
                                          "application/xml"])
@pytest.mark.parametrize("url", ["/api/v1/projects", "/api/v1/events?project={project}", "/api/v1/benchmarks/targets?project={project}"])
def test_a_non_json_body_anywhere_in_the_api_is_a_json_415(api_as, personas, content_type, url):
    url = url.format(project=personas.project.uuid)
    response = api_as("owner").generic("POST", url, b"name=x", content_type=content_type)
    assert "Unsupported media type" in assert_json_error(response, 415)["detail"]


def test_too_many_requests_is_a_json_429_with_retry_after(token_client, monkeypatch):
    monkeypatch.setattr(ApiTokenRateThrottle, "THROTTLE_RATES", {**ApiTokenRateThrottle.THROTTLE_RATES, "api_token": "2/min"})
    client, _token = token_client(["read"])
    statuses = [client.get("/api/v1/projects").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = client.get("/api/v1/projects")
    assert_json_error(response, 429)
    assert int(response["Retry-After"]) > 0


def test_unauthenticated_is_json(api_client):
    response = api_client.get("/api/v1/projects")
    assert_json_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_only_the_api_prefixes_count():
    assert is_api_path("/api/v1/x") and is_api_path("/v1/models")
    assert not is_api_path("/apiary/") and not is_api_path("/v10/") and not is_api_path("/projects/")


def test_the_api_docs_page_is_still_html():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db(transaction=True)
def test_a_live_server_answers_json_413_404_and_415(personas):
    """Through gunicorn, as a client sees it: the 413 is sent before the body is read, and the
    client gets it (not a reset connection) even while still sending."""
    _, raw = ApiToken.issue(project=personas.project, name="exporter", scopes=["ingest"], by=personas.owner)
    port = free_port()
    env = {**os.environ, "PULSE_ENV": "test", "DATABASE_URL": database_url_of_test_database(),
           "REDIS_URL": settings.REDIS_URL, "DATA_UPLOAD_MAX_MEMORY_SIZE": "100000"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=PROJECT_ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {raw}"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        too_big = httpx.post(f"{base}/api/v1/events/batch", content=b'{"events": [' + b" " * 5_000_000 + b"]}",
                             headers={**auth, "Content-Type": "application/json"}, timeout=30)
        unknown = httpx.get(f"{base}/api/v1/no-such-thing", headers=auth, timeout=10)
        form = httpx.post(f"{base}/api/v1/events", content=b"model=m", timeout=10,
                          headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    for response, status in ((too_big, 413), (unknown, 404), (form, 415)):
        assert response.status_code == status, response.text[:300]
        assert response.headers["content-type"] == "application/json"
        assert response.json()["detail"]
    assert "100,000 bytes" in too_big.json()["detail"]


@pytest.mark.parametrize("header", ["Bearer pk_live_\x00aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Bearer pk_live_\xe9" + "a" * 40,
                                    "Bearer " + "pk_live_" + "a" * 10_000, "Bearer \x00", "\x00"])
def test_a_malformed_authorization_header_is_a_json_401(api_client, header):
    response = api_client.get("/api/v1/projects", HTTP_AUTHORIZATION=header)
    assert_json_error(response, 401)
