"""The one definition of a date or moment Pulse accepts from outside (query parameters, filter
forms, event timestamps), so that no later step can overflow.

Python's `datetime` stops at year 1 and year 9999: `date.max + 1 day`, or
`0001-01-01T00:00+14:00` converted to UTC, raise OverflowError, and every range computation
after parsing (the day after `To`, local midnight in the organization's time zone, the previous
period of the same length, the month of a forecast) is another chance to. Rather than guard each
of them, input is limited to years 1900–9000: far from both ends, and far wider than any LLM
call or report. Out of range is a validation error: a 400 with a per-field message on the API,
a form error on pages.

- `check_day(day)` / `check_moment(moment)`: the rule, for code that parses by hand;
- `DayField` (Django forms), `DayParam` and `MomentParam` (DRF): fields that apply it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django import forms
from rest_framework import serializers

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9000, 12, 31)
FIRST_MOMENT = datetime(1900, 1, 1, tzinfo=UTC)
END_OF_MOMENTS = datetime(9001, 1, 1, tzinfo=UTC)  # exclusive
OUT_OF_RANGE = f"Must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}."


class OutOfRange(ValueError):
    """A date or moment outside the range Pulse accepts (`OUT_OF_RANGE` says which)."""

    def __init__(self) -> None:
        super().__init__(OUT_OF_RANGE)


def check_day(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise OutOfRange
    return day


def check_moment(moment: datetime) -> datetime:
    """`moment` in UTC (a naive one is taken as UTC), or OutOfRange. Converting an offset near
    year 1 or 9999 to UTC overflows; that is out of range too, not a crash."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise OutOfRange from None
    if not FIRST_MOMENT <= moment < END_OF_MOMENTS:
        raise OutOfRange
    return moment


class DayField(forms.DateField):
    """A form's date in the accepted range (otherwise a form error)."""

    def to_python(self, value: object) -> date | None:
        day = super().to_python(value)
        if day is None:
            return None
        try:
            return check_day(day)
        except OutOfRange:
            raise forms.ValidationError(OUT_OF_RANGE, code="out_of_range") from None


class DayParam(serializers.DateField):
    """A DRF date (YYYY-MM-DD) in the accepted range (otherwise a 400 for that field)."""

    default_error_messages = {"out_of_range": OUT_OF_RANGE}

    def to_internal_value(self, value: object) -> date:
        if isinstance(value, datetime):  # DRF refuses these itself; keep its message
            return super().to_internal_value(value)
        day = super().to_internal_value(value)
        try:
            return check_day(day)
        except OutOfRange:
            self.fail("out_of_range")


class MomentParam(serializers.DateTimeField):
    """A DRF date-time (ISO 8601) in the accepted range, returned in UTC."""

    default_error_messages = {"out_of_range": OUT_OF_RANGE}

    def to_internal_value(self, value: object) -> datetime:
        moment = super().to_internal_value(value)
        try:
            return check_moment(moment)
        except OutOfRange:
            self.fail("out_of_range")
