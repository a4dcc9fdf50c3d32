"""lib/strict_fields.py: each field takes its JSON type and refuses every other, with DRF's
usual bounds and messages still applied."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from rest_framework import serializers

from lib import strict_fields as strict


def run(field: serializers.Field, value: object) -> object:
    return field.run_validation(value)


def refused(field: serializers.Field, value: object) -> str:
    with pytest.raises(serializers.ValidationError) as error:
        run(field, value)
    return str(error.value.detail[0])


@pytest.mark.parametrize("value", [0, 1, "true", "false", "on", "1", [], {}])
def test_boolean_takes_only_true_and_false(value):
    assert "valid boolean" in refused(strict.StrictBooleanField(), value)


def test_boolean_values():
    assert run(strict.StrictBooleanField(), True) is True
    assert run(strict.StrictBooleanField(), False) is False
    assert run(strict.StrictBooleanField(allow_null=True), None) is None
    assert "may not be null" in refused(strict.StrictBooleanField(), None)


@pytest.mark.parametrize("value", [4.379273499382433e212, 7, True, ["x"], {"a": "b"}])
@pytest.mark.parametrize(
    "field",
    [strict.StrictCharField(), strict.StrictEmailField(), strict.StrictURLField(), strict.StrictRegexField(r"."),
     strict.StrictSlugField()],
    ids=lambda field: type(field).__name__,
)
def test_string_fields_take_only_strings(field, value):
    assert refused(field, value) == "Not a valid string."


def test_string_fields_keep_their_own_rules():
    assert run(strict.StrictCharField(), "  hi  ") == "hi"
    assert "valid email" in refused(strict.StrictEmailField(), "not an email")
    assert "valid URL" in refused(strict.StrictURLField(), "nope")
    assert "no more than 3" in refused(strict.StrictCharField(max_length=3), "long")


@pytest.mark.parametrize("value", ["5", "5.0", True, False, 5.5, float("inf"), float("nan"), None, [5]])
def test_integer_takes_only_integers(value):
    field = strict.StrictIntegerField(allow_null=False)
    message = refused(field, value)
    assert "valid integer" in message or "may not be null" in message


def test_integer_takes_integral_numbers_and_keeps_its_bounds():
    field = strict.StrictIntegerField(min_value=1, max_value=10)
    assert run(field, 5) == 5
    result = run(field, 5.0)  # JSON Schema's integer: a number with no fractional part
    assert result == 5 and type(result) is int
    assert "less than or equal to 10" in refused(field, 1e300)
    assert "greater than or equal to 1" in refused(field, 0)


@pytest.mark.parametrize("value", ["1.5", True, None, [1.5], float("inf")])
def test_float_takes_only_finite_numbers(value):
    message = refused(strict.StrictFloatField(), value)
    assert "valid number" in message or "may not be null" in message


def test_float_values():
    assert run(strict.StrictFloatField(), 2) == 2.0
    assert run(strict.StrictFloatField(), 2.5) == 2.5


@pytest.mark.parametrize("value", [500, 500.5, True, None, ["1"]])
def test_decimal_takes_only_a_decimal_string(value):
    message = refused(strict.StrictDecimalField(max_digits=10, decimal_places=2), value)
    assert "as a string" in message or "may not be null" in message


def test_decimal_values_and_bounds():
    field = strict.StrictDecimalField(max_digits=6, decimal_places=2)
    assert run(field, "12.50") == Decimal("12.50")
    assert "valid number" in refused(field, "12.5.0")
    assert "decimal places" in refused(field, "1.234")


def test_uuid_takes_only_strings():
    value = uuid.uuid4()
    assert run(strict.StrictUUIDField(), str(value)) == value
    for wrong in [5, value.int, True, [str(value)]]:
        assert "valid UUID" in refused(strict.StrictUUIDField(), wrong)


def test_choice_matches_the_choices_json_type():
    strings = strict.StrictChoiceField(choices=["1", "a"])
    assert run(strings, "1") == "1"
    for wrong in [1, True, 1.0, ["1"], None]:
        refused(strings, wrong)
    numbers = strict.StrictChoiceField(choices=[(1, "one"), (2, "two")])
    assert run(numbers, 1) == 1
    for wrong in ["1", True, 1.0]:
        assert "valid choice" in refused(numbers, wrong)


def test_choice_blank_only_when_allowed():
    assert run(strict.StrictChoiceField(choices=["a"], allow_blank=True), "") == ""
    refused(strict.StrictChoiceField(choices=["a"]), "")


def test_multiple_choice_takes_a_list_of_choices():
    field = strict.StrictMultipleChoiceField(choices=["read", "write"], allow_empty=False)
    assert run(field, ["read", "write"]) == {"read", "write"}
    for wrong in [{"read": 1}, "read", [1], [True], []]:
        refused(field, wrong)


def test_list_takes_a_list_and_its_child_decides_item_types():
    field = strict.StrictListField(child=strict.StrictCharField())
    assert run(field, ["a"]) == ["a"]
    for wrong in [[1], {"0": "a"}, "a", [None]]:
        refused(field, wrong)


def test_slug_related_takes_only_strings():
    field = strict.StrictSlugRelatedField(slug_field="uuid", queryset=[])
    for wrong in [5, True, ["x"]]:
        assert "Invalid value" in refused(field, wrong)


def test_model_serializer_generates_strict_fields():
    # A real model of the project (a stand-in model would join the app registry of every test).
    from alerts.models import AlertRule, Budget

    class BudgetSerializer(strict.StrictModelSerializer):
        class Meta:
            model = Budget
            fields = ["name", "amount", "currency", "is_enabled", "forecast_alerts"]

    class RuleSerializer(strict.StrictModelSerializer):
        class Meta:
            model = AlertRule
            fields = ["threshold", "window_results"]

    fields = {**BudgetSerializer().fields, **RuleSerializer().fields}
    expected = {
        "name": strict.StrictCharField, "amount": strict.StrictDecimalField, "currency": strict.StrictChoiceField,
        "is_enabled": strict.StrictBooleanField, "forecast_alerts": strict.StrictBooleanField,
        "threshold": strict.StrictFloatField, "window_results": strict.StrictIntegerField,
    }
    assert {name: type(field) for name, field in fields.items()} == expected
    serializer = BudgetSerializer(data={"name": 4.3e212, "amount": 1.5, "currency": 1, "is_enabled": 0})
    assert not serializer.is_valid()
    assert set(serializer.errors) == {"name", "amount", "currency", "is_enabled"}
