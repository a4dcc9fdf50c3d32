"""lib.dates: the one accepted range of dates and moments, and the fields that apply it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from django import forms
from rest_framework import serializers

from lib.dates import (
    END_OF_MOMENTS,
    FIRST_DAY,
    FIRST_MOMENT,
    LAST_DAY,
    DayField,
    DayParam,
    MomentParam,
    OutOfRange,
    check_day,
    check_moment,
)


def test_the_range_is_far_enough_from_pythons_limits_for_every_computation_after_it():
    # The day after the last day, local midnight anywhere, and a previous period of a year
    # before the first day all stay inside datetime's range.
    assert datetime.combine(LAST_DAY + timedelta(days=2), datetime.min.time(), tzinfo=timezone(timedelta(hours=-14)))
    assert (datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=timezone(timedelta(hours=14))) - timedelta(days=800)).astimezone(UTC)


@pytest.mark.parametrize("day", [FIRST_DAY, LAST_DAY, date(2026, 11, 29)])
def test_days_in_range_are_kept(day):
    assert check_day(day) == day


@pytest.mark.parametrize("day", [date.min, date.max, FIRST_DAY - timedelta(days=1), LAST_DAY + timedelta(days=1)])
def test_days_out_of_range_are_refused(day):
    with pytest.raises(OutOfRange, match="between 1900-01-01 and 9000-12-31"):
        check_day(day)


def test_moments_come_back_in_utc_and_naive_ones_are_utc():
    assert check_moment(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))) == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert check_moment(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert check_moment(FIRST_MOMENT) == FIRST_MOMENT


@pytest.mark.parametrize("moment", [
    datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),  # overflows on conversion to UTC
    datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))),
    datetime.min, datetime.max, END_OF_MOMENTS, FIRST_MOMENT - timedelta(microseconds=1),
])
def test_moments_out_of_range_are_refused_not_an_overflow(moment):
    with pytest.raises(OutOfRange):
        check_moment(moment)


class Filter(forms.Form):
    day = DayField(required=False)


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "1899-12-31"])
def test_the_form_field_reports_out_of_range_as_a_form_error(value):
    form = Filter({"day": value})
    assert not form.is_valid()
    assert "between 1900-01-01" in form.errors["day"][0]


def test_the_form_field_keeps_djangos_own_errors_and_blanks():
    assert Filter({"day": "2026-02-30"}).errors["day"] == ["Enter a valid date."]
    assert Filter({"day": ""}).is_valid()


class Params(serializers.Serializer):
    day = DayParam(required=False)
    moment = MomentParam(required=False)


@pytest.mark.parametrize("data,field", [
    ({"day": "9999-12-31"}, "day"), ({"day": "0001-01-01"}, "day"),
    ({"moment": "0001-01-01T00:00:00+14:00"}, "moment"), ({"moment": "9999-12-31T23:59:59-14:00"}, "moment"),
    ({"moment": "9999-12-31T23:59:59Z"}, "moment"), ({"moment": "1000-01-01T00:00:00"}, "moment"),
])
def test_the_api_fields_report_out_of_range_per_field(data, field):
    params = Params(data=data)
    assert not params.is_valid()
    assert list(params.errors) == [field]


def test_the_api_fields_parse_in_range_values():
    params = Params(data={"day": "2026-11-29", "moment": "2026-11-29T10:00:00+01:00"})
    assert params.is_valid(), params.errors
    assert params.validated_data == {"day": date(2026, 11, 29), "moment": datetime(2026, 11, 29, 9, tzinfo=UTC)}
