"""The API's one JSON renderer (REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"]).

DRF's renderer writes non-ASCII characters as they are (UNICODE_JSON) and then encodes the
text as UTF-8, which a lone UTF-16 surrogate cannot be: if one reaches a response — quoted back
in a validation message, read from a row stored before the parser refused them — rendering
raised UnicodeEncodeError and the client got a 500 instead of the answer. The parser keeps
surrogates out of request data (lib/json_parser.py), but a response must not depend on every
path into it doing so. Such a response is rendered again with every non-ASCII character as a
`\\uXXXX` escape: the same JSON value, and pure ASCII, so it always encodes.
"""

from __future__ import annotations

from typing import Any

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: dict | None = None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:  # only a lone surrogate cannot be encoded as UTF-8
            return _EscapedJSONRenderer().render(data, accepted_media_type, renderer_context)


class _EscapedJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True
