"""Every request is read as UTF-8, whatever charset its Content-Type declares.

Django decodes the query string (and form bodies) with the charset a request declares, if
Python knows the codec. `GET /…/activity/?model=%2B2AA-` sent with `Content-Type: text/plain;
charset=utf-7` — a header a GET does not need, but any client can send — gave a query value
holding a lone surrogate ("+2AA-" is UTF-7 for U+D800), which no page, response or database
query can encode: a 500. Pulse's pages and API are UTF-8 only (form bodies in another charset
are refused by Django, JSON bodies by lib/json_parser.py with a 415), so the declared charset
is ignored here, before anything reads request.GET or request.POST.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class UTF8RequestsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Django sets request.encoding only to a charset codecs.lookup() knows.
        if request.encoding is not None and codecs.lookup(request.encoding).name != "utf-8":
            request.encoding = "utf-8"  # also drops any GET/POST decoded so far
        return self.get_response(request)
