"""Query-string filters that the apps' FilterSets share.

A filter whose schema is an enum or a timestamp refuses an empty value (``?state=``,
``?created_after=``) with a 400 naming it: the published document says the value is one of
the enum's or a ``date-time``, and an empty string is neither, so the server must not answer
it as if the parameter were absent (schemathesis found it did). Leave a parameter out for no
filter. Free-text filters (``os``, ``name``) take an empty string as absent, as their schema
(any string) allows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import ChoiceField

from config.api.fields import valid_values
from config.timestamps import TimestampError, parse_aware


class AwareDateTimeFormField(forms.Field):
    """A timestamp in a query string, read as every other timestamp of a request is
    (``config.timestamps``): django-filter's ``IsoDateTimeField`` takes one without an
    offset in the server's zone, which the contract (section 1) refuses."""

    def to_python(self, value: Any) -> dt.datetime | None:
        if value is None:  # the parameter is absent
            return None
        refuse_empty(value)
        try:
            return parse_aware(value)
        except TimestampError as error:
            raise forms.ValidationError(str(error), code="invalid") from None


class AwareDateTimeFilter(filters.DateTimeFilter):
    """``created_after``, ``last_seen_before``...: ISO 8601 with a UTC offset (a subclass of
    ``DateTimeFilter``, so the OpenAPI document still says ``date-time``)."""

    field_class = AwareDateTimeFormField


#: Why an empty value of an enum or timestamp filter is refused.
EMPTY_VALUE = "is empty; give a value or leave the parameter out for no filter"


def refuse_empty(value: Any) -> None:
    """A ``ValidationError`` (400 naming the filter) for a value given empty."""
    if isinstance(value, str) and not value.strip():
        raise forms.ValidationError(EMPTY_VALUE, code="invalid")


class NonEmptyChoiceField(ChoiceField):
    """django-filter's choice field, which took an empty value as no filter; an unknown value
    is refused naming the valid ones, as the serializers' (``config.api.fields``)."""

    def clean(self, value: Any) -> Any:
        refuse_empty(value)
        return super().clean(value)

    def validate(self, value: Any) -> None:
        try:
            super().validate(value)
        except forms.ValidationError as refused:
            if getattr(refused, "code", None) != "invalid_choice":
                raise
            valid = valid_values(value, (key for key, _ in self.choices))
            raise forms.ValidationError(
                f"{value!r} is not one of the available choices; {valid}.", code="invalid_choice"
            ) from None


class NonEmptyCharField(forms.CharField):
    """A free string that is an enum in all but its schema (an operation's ``state``: a name or
    a number), so an empty one is refused as an enum's is."""

    def clean(self, value: Any) -> Any:
        refuse_empty(value)
        return super().clean(value)


class StrictChoiceFilter(filters.ChoiceFilter):
    """An enum filter (the schema lists the choices) that refuses an empty value."""

    field_class = NonEmptyChoiceField


class NonEmptyCharFilter(filters.CharFilter):
    """A string filter that refuses an empty value (see :class:`NonEmptyCharField`)."""

    field_class = NonEmptyCharField
