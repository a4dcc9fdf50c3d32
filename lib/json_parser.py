"""The API's one request parser (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]): JSON only, bounded.

- Only `application/json`: a form-encoded or multipart body is refused by DRF with a 415 and a
  JSON message before anything reads it (no API endpoint takes forms or files).
- At most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (a JSON 413 above): DRF reads the request stream
  itself, so Django's own limit (enforced only on `request.body` and forms) never applied to
  JSON bodies.
- At most MAX_DEPTH levels of nesting (a 400): Python's decoder recurses, so `[[[[…]]]]` 2,000
  deep raised RecursionError (a 500), and a body just under that limit would make the next
  recursive step — rendering it back, storing it in a JSONField — fail instead.
- UTF-8 only (RFC 8259 §8.1: JSON exchanged between systems is UTF-8). A body declaring any
  other charset (`application/json; charset=utf-7`) is a 415. Decoding by the declared charset
  let `"+2AA-"` (UTF-7) or `"\\ud800"` (raw_unicode_escape) become a lone surrogate with no
  `\\u` escape in the decoded text, past the check below, into an error message and a 500.
- No lone UTF-16 surrogate (`"\\ud800"`, a 400): JSON lets a client write one, Python decodes it
  into a string that no database or response can encode (a 500 at the INSERT). Serializers
  cannot forget to check, because they never see one. An endpoint that validates text itself,
  item by item (costs ingestion: one bad event must not fail the batch), sets
  `refuse_lone_surrogates = False` on a subclass and checks with `lib.text.unstorable`.
  Subclasses keep the charset rule and the size limit.

The depth walk costs more than the parse itself on a 1,000-event batch (2.5-4.5 ms measured),
so the ingestion endpoints, whose validation neither recurses nor echoes values, skip it too
(`max_depth = None`); a body too deep for the decoder itself is still a 400 there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import IO

from django.conf import settings
from django.utils.http import parse_header_parameters
from rest_framework import exceptions, parsers, status
from rest_framework.utils import json

MAX_DEPTH = 32
# Spellings of UTF-8's name in a `charset` parameter; no charset at all means UTF-8 too.
UTF8_NAMES = frozenset({"utf-8", "utf8"})
# A surrogate can only come from an escape (strict UTF-8 decoding refuses encoded ones), so a
# body without one is not walked. Pairs decode to one character; what survives is lone.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self) -> None:
        super().__init__(too_large_message())


def too_large_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"The request body is larger than {limit:,} bytes; send less per request (e.g. smaller batches)."


def body_too_large(content_length: str | None) -> bool:
    """Whether a declared Content-Length is over the limit (a malformed one is left to the parser)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        return limit is not None and int(content_length or 0) > limit
    except ValueError:
        return False


def refuse_other_charsets(media_type: str | None) -> None:
    """A 415 unless the Content-Type declares UTF-8 or no charset."""
    _, params = parse_header_parameters(media_type or "")
    charset = params.get("charset")
    if charset is not None and charset.strip().lower() not in UTF8_NAMES:
        raise exceptions.UnsupportedMediaType(
            media_type, detail=f"JSON must be encoded as UTF-8, not {charset[:40]!r}; send charset=utf-8 or no charset."
        )


def too_deep(data: object, limit: int = MAX_DEPTH) -> bool:
    """Whether `data` nests containers more than `limit` deep (iterative: no recursion to exhaust)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, Mapping) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def strings_in(data: object) -> Iterator[str]:
    """Every string of `data`, keys included (iterative)."""
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def has_lone_surrogate(data: object) -> bool:
    for text in strings_in(data):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


class JSONParser(parsers.JSONParser):
    refuse_lone_surrogates = True
    max_depth: int | None = MAX_DEPTH

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: dict | None = None) -> object:
        refuse_other_charsets(media_type)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge
        try:
            text = raw.decode("utf-8")  # strictly: encoded surrogates and stray bytes are a 400
            data = json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deep.") from None
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        if self.max_depth is not None and isinstance(data, dict | list) and too_deep(data, self.max_depth):
            raise exceptions.ParseError(f"JSON parse error - nested more than {self.max_depth} levels deep.")
        if self.refuse_lone_surrogates and SURROGATE_ESCAPE.search(text) and has_lone_surrogate(data):
            raise exceptions.ParseError("JSON parse error - a string holds a lone UTF-16 surrogate (e.g. \\ud800); text must be valid Unicode.")
        return data
