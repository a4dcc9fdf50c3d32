"""What drf-spectacular cannot see from the code, told to the OpenAPI schema in one place
(`AutoSchema`, the project's DEFAULT_SCHEMA_CLASS):

- The errors any operation can answer with, whatever the view's own `@extend_schema` says:
  401 (no or a bad token), 403 (a missing scope or too weak a role), 429 (throttled), 404 (an
  object, a page or a project not among those you can see), 400 (bad parameters or body:
  messages per field) and 415 (a body in a content type the parsers do not read), each with the
  JSON body the exception handler (`accounts.api_errors.exception_handler`) really sends; a code
  a view documented without a body gets that body too.
- Request strings: DRF's CharField refuses NUL characters.
- Update requests: the serializer's fields as they are for an existing object (the organization
  of an object never changes, so PUT/PATCH do not ask for it).
- A request serializer whose view refuses unknown fields (`rejects_unknown_fields`) says so.

test_schema_fuzz.py holds the schema to the server's real answers.
"""

from __future__ import annotations

import functools

from django.core.validators import RegexValidator
from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """An error about the request as a whole."""

    detail = serializers.CharField(help_text="What went wrong, in words.")


class FieldErrorsSerializer(serializers.Serializer):
    """Its keys are the fields, so FieldErrorsSchema writes its schema out."""


class FieldErrorsSchema(OpenApiSerializerExtension):
    target_class = FieldErrorsSerializer

    def map_serializer(self, auto_schema: openapi.AutoSchema, direction: str) -> dict:
        return {
            "type": "object",
            "description": "Bad input: a list of messages per field (`non_field_errors` for the body as a "
            "whole; objects for nested fields and list items). A body that cannot be parsed gets `detail`.",
            "properties": {"detail": {"type": "string"}},
            # Messages are lists of strings, or objects for nested fields and list items.
            "additionalProperties": {
                "anyOf": [{"type": "array"}, {"type": "object"}, {"type": "string"}],
            },
        }


NO_NUL_CHARACTER = r"^[^\u0000]*$"
# Text that is more than white space (what a stripped, non-blank field needs), without NUL.
# White space spelled out as exactly what Python's str.strip() (DRF's trim_whitespace, ingestion)
# removes: regex engines disagree on `\s` (ECMA's leaves out \x1c-\x1f and \x85 and adds
# \ufeff), and a schema-driven client must see the server's own definition.
PYTHON_WHITESPACE = r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"^[^\u0000]*[^\u0000{PYTHON_WHITESPACE}][^\u0000]*$"
ALWAYS = {
    "401": "Not authenticated: no credentials, or an invalid, expired or revoked API token.",
    "403": "A token without the scope this needs, or too weak a role.",
    "429": "Too many requests; retry after the number of seconds in `detail`.",
}
NOT_FOUND = "Not found among what you can see (an object, a `?project=`, or a page past the last)."
BAD_INPUT = "Bad parameters or body: messages per field."
UNSUPPORTED_MEDIA_TYPE = "The body's content type is not one the operation reads."
TOO_LARGE = "The body is over the size limit (DATA_UPLOAD_MAX_MEMORY_SIZE); send less per request."


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, plus the error responses every operation can give."""

    def get_operation(self, path: str, path_regex: str, path_prefix: str, method: str, registry: object) -> dict | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is not None:
            self._document_errors(operation)
        return operation

    def get_request_serializer(self) -> object:
        serializer = super().get_request_serializer()
        # An object never moves between tenants: on PUT/PATCH its serializer ignores the
        # organization (OwnedByVisibleOrganization), so the request schema must not ask for it.
        if self.method in {"PUT", "PATCH"} and getattr(serializer, "organization_fixed_after_creation", False):
            return update_variant(type(serializer))(context=getattr(serializer, "context", {}))
        return serializer

    def _get_format_parameters(self) -> list[dict]:
        parameters = super()._get_format_parameters()
        for parameter in parameters:
            # DRF reads an empty ?format= as none given: the first renderer (JSON) answers.
            parameter["schema"]["enum"] = [*parameter["schema"]["enum"], ""]
        return parameters

    def _map_serializer_field(self, field: serializers.Field, direction: str, bypass_extensions: bool = False) -> dict:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # DRF's CharField refuses NUL characters (ProhibitNullCharactersValidator, which also
        # keeps them away from PostgreSQL); say so wherever no pattern or format says more.
        if (
            direction == "request" and isinstance(field, serializers.CharField) and schema.get("type") == "string"
            and not schema.keys() & {"pattern", "format", "enum"}
            and not any(isinstance(validator, RegexValidator) for validator in field.validators)
        ):
            schema["pattern"] = NO_NUL_CHARACTER
        return schema

    def _map_basic_serializer(self, serializer: serializers.Serializer, direction: str) -> dict:
        schema = super()._map_basic_serializer(serializer, direction)
        # DRF ignores fields it does not know; a serializer whose view refuses them says so.
        if direction == "request" and getattr(serializer, "rejects_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema

    def _document_errors(self, operation: dict) -> None:
        responses = operation["responses"]
        for code, description in self._possible_errors(operation).items():
            responses.setdefault(code, {"description": description})
        for code, response in responses.items():
            if code >= "400" and "content" not in response:
                serializer = FieldErrorsSerializer if code == "400" else ErrorSerializer
                ref = self.resolve_serializer(serializer, "response").ref
                response["content"] = {"application/json": {"schema": ref}}

    def _possible_errors(self, operation: dict) -> dict[str, str]:
        errors = dict(ALWAYS)
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        # `page` past the end, an unknown `format` and a `project` you cannot see are 404s too.
        if "{" in self.path or query & {"page", "format", "project"}:
            errors["404"] = NOT_FOUND
        if "requestBody" in operation or query - {"page", "format"}:
            errors["400"] = BAD_INPUT
        if "requestBody" in operation:
            errors["413"] = TOO_LARGE
            errors["415"] = UNSUPPORTED_MEDIA_TYPE
        return errors


@functools.cache  # one class per serializer, so the schema has one component for it
def update_variant(serializer_class: type[serializers.ModelSerializer]) -> type[serializers.ModelSerializer]:
    """`serializer_class` with its fields as they are for an existing object (the organization
    read-only, and whatever else the serializer relaxes on an update), for the schema only."""

    def get_fields(self: serializers.ModelSerializer) -> dict:
        self.instance = serializer_class.Meta.model()  # an unsaved stand-in: get_fields only tests it
        try:
            return super(variant, self).get_fields()
        finally:
            self.instance = None

    name = serializer_class.__name__.removesuffix("Serializer") + "UpdateSerializer"
    variant = type(name, (serializer_class,), {"get_fields": get_fields, "__module__": serializer_class.__module__})
    return variant
