"""Errors from domain methods become clear JSON 4xx responses instead of 500s.

This is the API's one exception handler (REST_FRAMEWORK["EXCEPTION_HANDLER"]); errors that
happen outside DRF views under /api/ and /v1/ are made JSON by `lib.json_errors`."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from lib.json_parser import RequestTooLarge


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": " ".join(exc.messages)}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, RequestDataTooBig):
        # Django's own limit, met when something reads `request.body` (Django would answer a
        # bare 400): the same 413 as the JSON parser's.
        exc = RequestTooLarge()
    return drf_exception_handler(exc, context)
