"""Serializer fields that take only the JSON types the API schema declares.

DRF's fields coerce: BooleanField takes 0, 1, "true" and "on"; CharField takes 4.3e212 and
stores "4.3e+212"; IntegerField takes "5"; ChoiceField takes 1 for "1"; UUIDField takes an
integer. The OpenAPI schema (drf-spectacular) says boolean, string, integer — so a client that
sends the wrong type gets a 400 naming the field, never a silently converted value.

These fields are for JSON request bodies. Query parameters arrive as strings whatever their
declared type, so the serializers that read them keep DRF's parsing fields.

Choices made here, and why:
- Integers: a JSON integer, or a number with no fractional part (5.0). JSON Schema, which the
  OpenAPI document and schema-driven clients follow, counts 5.0 as an integer, and ingestion
  (costs/ingestion.py) takes it too. Never a boolean, never a string.
- Decimals (money): a decimal string only, as the schema documents
  (`type: string, format: decimal`). A JSON number is a binary float, and 0.1 + 0.2 is not an
  amount of money anyone meant.
- Floats: a JSON number (int or float), never a boolean or a string.

Subclasses of DRF's fields, so drf-spectacular documents them exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import models
from rest_framework import serializers
from rest_framework.relations import MANY_RELATION_KWARGS


def _is_integral(data: object) -> bool:
    if isinstance(data, bool):
        return False
    return isinstance(data, int) or (isinstance(data, float) and data.is_integer())


class StrictBooleanField(serializers.BooleanField):
    """true or false, nothing else (not 0/1, not "true")."""

    def to_internal_value(self, data: object) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class StrictStringMixin:
    """Only a JSON string; every other type is "Not a valid string." (DRF's own message)."""

    # Its own key: "invalid" is the subclass's message for a malformed string (an email...).
    default_error_messages = {"not_a_string": "Not a valid string."}

    def to_internal_value(self, data: object) -> object:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictCharField(StrictStringMixin, serializers.CharField):
    pass


class StrictEmailField(StrictStringMixin, serializers.EmailField):
    pass


class StrictURLField(StrictStringMixin, serializers.URLField):
    pass


class StrictRegexField(StrictStringMixin, serializers.RegexField):
    pass


class StrictSlugField(StrictStringMixin, serializers.SlugField):
    pass


class StrictUUIDField(serializers.UUIDField):
    """A UUID as a string (DRF also takes an integer and makes a UUID of it)."""

    def to_internal_value(self, data: object) -> object:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (or an integral number such as 5.0, which JSON Schema calls an integer)."""

    def to_internal_value(self, data: object) -> int:
        if not _is_integral(data):
            self.fail("invalid")
        return super().to_internal_value(int(data))


class StrictFloatField(serializers.FloatField):
    """A JSON number; not a boolean, not a string."""

    def to_internal_value(self, data: object) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictDecimalField(serializers.DecimalField):
    """A decimal string, as the schema says (`type: string, format: decimal`)."""

    default_error_messages = {"not_a_string": "A decimal number as a string, e.g. \"12.50\"."}

    def to_internal_value(self, data: object) -> object:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictChoiceMixin:
    """DRF looks a choice up by `str(data)`, so 1 picks "1" and true picks "True". Here the
    value must also have the choice's JSON type: a string for a string choice, an integer for
    an integer one."""

    def strict_choice(self, data: object) -> object:
        if data == "" and self.allow_blank:
            return ""
        value = self.choice_strings_to_values.get(str(data)) if isinstance(data, str | int) else None
        if value is None or not _same_json_type(data, value):
            self.fail("invalid_choice", input=data)
        return value


def _same_json_type(data: object, choice: object) -> bool:
    if isinstance(choice, str):
        return isinstance(data, str)
    if isinstance(choice, bool):
        return isinstance(data, bool)
    if isinstance(choice, int):
        return isinstance(data, int) and not isinstance(data, bool)
    return False  # choices of other types are not used by the API


class StrictChoiceField(StrictChoiceMixin, serializers.ChoiceField):
    def to_internal_value(self, data: object) -> object:
        return self.strict_choice(data)


class StrictMultipleChoiceField(StrictChoiceMixin, serializers.MultipleChoiceField):
    """A JSON array of choices (DRF takes any iterable, a JSON object's keys included)."""

    def to_internal_value(self, data: object) -> set:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if not self.allow_empty and not data:
            self.fail("empty")
        return {self.strict_choice(item) for item in data}


class StrictListField(serializers.ListField):
    """A JSON array (DRF also takes a query-dict-like mapping); its child decides item types and
    must be strict itself."""

    def to_internal_value(self, data: object) -> list:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class StrictManyRelatedField(serializers.ManyRelatedField):
    """many=True of a strict related field: a JSON array (DRF takes any iterable, so a JSON
    object would pass as the list of its keys)."""

    def to_internal_value(self, data: object) -> list:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class StrictSlugRelatedField(serializers.SlugRelatedField):
    """An object by its slug (here: uuid) as a string; an integer is not a uuid."""

    @classmethod
    def many_init(cls, *args: object, **kwargs: object) -> StrictManyRelatedField:
        # DRF's RelatedField.many_init, with the strict list around the child.
        list_kwargs = {key: value for key, value in kwargs.items() if key in MANY_RELATION_KWARGS}
        return StrictManyRelatedField(child_relation=cls(*args, **kwargs), **list_kwargs)

    def to_internal_value(self, data: object) -> object:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """Only for completeness of StrictModelSerializer's mapping: the API exposes objects by uuid,
    so a model serializer that falls back to primary keys takes integers, not "5"."""

    def to_internal_value(self, data: object) -> object:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("incorrect_type", data_type=type(data).__name__)
        return super().to_internal_value(data)


# The field classes a request body may use. tests/config/test_strict_api.py checks every
# writable field of every serializer against this tuple.
STRICT_FIELDS: tuple[type[serializers.Field], ...] = (
    StrictBooleanField, StrictCharField, StrictEmailField, StrictURLField, StrictRegexField, StrictSlugField,
    StrictUUIDField, StrictIntegerField, StrictFloatField, StrictDecimalField, StrictChoiceField,
    StrictMultipleChoiceField, StrictListField, StrictSlugRelatedField, StrictManyRelatedField,
    StrictPrimaryKeyRelatedField,
)


class StrictModelSerializer(serializers.ModelSerializer):
    # A ModelSerializer whose generated fields are the strict ones above; fields a subclass
    # declares must be strict too (tests/config/test_strict_api.py). A comment, not a docstring:
    # drf-spectacular would show a docstring as every subclass's schema description.

    serializer_field_mapping: Mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.BooleanField: StrictBooleanField,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.EmailField: StrictEmailField,
        models.URLField: StrictURLField,
        models.SlugField: StrictSlugField,
        models.UUIDField: StrictUUIDField,
        models.IntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.PositiveBigIntegerField: StrictIntegerField,
        models.FloatField: StrictFloatField,
        models.DecimalField: StrictDecimalField,
    }
    serializer_related_field = StrictPrimaryKeyRelatedField
    serializer_choice_field = StrictChoiceField
