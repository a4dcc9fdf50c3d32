"""Every error under /api/ and /v1/ is JSON, like the API's own errors.

DRF views already answer their errors in JSON (through `accounts.api_errors`). What reaches a
client from outside them does not: Django's 404 for an unknown URL, the 500 page of an uncaught
exception, a bare 405 from a plain Django view, a 413 for a body over the size limit. This
middleware rewrites any non-JSON error response on those path prefixes as `{"detail": "…"}`
with the same status, headers (Allow, Retry-After, the security headers set below) and cookies;
the rest of the site keeps its HTML error pages. It also refuses a body whose declared size is
over DATA_UPLOAD_MAX_MEMORY_SIZE before anything reads it.

It sits right after SecurityMiddleware (its responses still get the security headers) and
before everything else (it sees the 500 that Django made of an exception anywhere below).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from .json_parser import body_too_large, too_large_message

API_PREFIXES = ("/api/", "/v1/")
# Headers that describe the body being replaced; every other header is kept.
BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "content-disposition"})
# DRF's wording where DRF has one, so an error reads the same from a view or from here.
DETAILS = {
    400: "Bad request.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    413: "The request body is too large.",
    500: "A server error occurred.",
}


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def is_json(response: HttpResponse) -> bool:
    content_type = response.get("Content-Type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def json_error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def detail_for(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return DETAILS.get(status, f"{phrase}.")


class JSONErrorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_path(request.path_info):
            return self.get_response(request)
        if body_too_large(request.META.get("CONTENT_LENGTH")):
            return json_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large_message())
        response = self.get_response(request)
        if response.status_code < 400 or is_json(response):
            return response
        replacement = json_error(response.status_code, detail_for(response.status_code))
        for header, value in response.items():
            if header.lower() not in BODY_HEADERS:
                replacement[header] = value
        replacement.cookies = response.cookies
        return replacement


# Django's error handlers (set in config/urls.py). Under the API prefixes they answer JSON
# themselves instead of rendering the HTML error page first: rendering a page needs templates
# and static files, and if that fails (a missing static manifest, a broken context processor)
# Django turns an unknown API URL into a 500.
def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request.path_info):
        return json_error(HTTPStatus.BAD_REQUEST, detail_for(HTTPStatus.BAD_REQUEST))
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request.path_info):
        return json_error(HTTPStatus.FORBIDDEN, detail_for(HTTPStatus.FORBIDDEN))
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_path(request.path_info):
        return json_error(HTTPStatus.NOT_FOUND, detail_for(HTTPStatus.NOT_FOUND))
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if is_api_path(request.path_info):
        return json_error(HTTPStatus.INTERNAL_SERVER_ERROR, detail_for(HTTPStatus.INTERNAL_SERVER_ERROR))
    return defaults.server_error(request)
