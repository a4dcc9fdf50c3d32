"""lib/request_charset.py: a declared charset other than UTF-8 cannot turn a query value into a
lone surrogate (UTF-7's "+2AA-" is U+D800), which no page, response or query can encode."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory

from lib.request_charset import UTF8RequestsMiddleware
from tests.conftest import client_as

UTF7 = "text/plain; charset=utf-7"


def seen_by_view(content_type: str) -> dict:
    seen = {}

    def view(request):
        seen.update(request.GET.dict())
        return HttpResponse("ok")

    request = RequestFactory().get("/x?model=%2B2AA-&raw=+2AA-&name=caf%C3%A9", CONTENT_TYPE=content_type)
    UTF8RequestsMiddleware(view)(request)
    return seen


@pytest.mark.parametrize("content_type", [UTF7, "text/plain; charset=raw_unicode_escape", "application/json; charset=latin-1"])
def test_query_strings_are_decoded_as_utf8_whatever_charset_is_declared(content_type):
    assert seen_by_view(content_type) == {"model": "+2AA-", "raw": " 2AA-", "name": "caf\u00e9"}


@pytest.mark.parametrize("content_type", ["", "text/plain; charset=utf-8", "text/plain; charset=bogus"])
def test_utf8_or_no_charset_reads_as_before(content_type):
    assert seen_by_view(content_type) == {"model": "+2AA-", "raw": " 2AA-", "name": "caf\u00e9"}


def test_it_runs_before_anything_reads_the_query_or_a_form():
    middleware = settings.MIDDLEWARE
    assert middleware.index("lib.request_charset.UTF8RequestsMiddleware") < middleware.index(
        "django.middleware.csrf.CsrfViewMiddleware"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["model=%2B2AA-", "provider=%2B2AA-", "tag=%2B2AA-"])
def test_the_activity_page_with_a_utf7_query_is_not_a_500(personas, query):
    client = client_as(personas.owner)
    client.raise_request_exception = False

    page = client.get(f"/projects/{personas.project.uuid}/activity/?{query}", CONTENT_TYPE=UTF7)
    export = client.get(f"/projects/{personas.project.uuid}/activity/export.csv?{query}", CONTENT_TYPE=UTF7)

    assert page.status_code < 500 and export.status_code < 500
    assert "\ud800" not in page.content.decode()
