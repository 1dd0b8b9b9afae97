"""Query-string filters that the apps' FilterSets share."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django_filters import rest_framework as filters

from config.timestamps import TimestampError, parse_aware


class AwareDateTimeFormField(forms.Field):
    """A timestamp in a query string, read as every other timestamp of a request is
    (``config.timestamps``): django-filter's ``IsoDateTimeField`` takes one without an
    offset in the server's zone, which the contract (section 1) refuses."""

    def to_python(self, value: Any) -> dt.datetime | None:
        if value in self.empty_values:
            return None
        try:
            return parse_aware(value)
        except TimestampError as error:
            raise forms.ValidationError(str(error), code="invalid") from None


class AwareDateTimeFilter(filters.DateTimeFilter):
    """``created_after``, ``last_seen_before``...: ISO 8601 with a UTC offset (a subclass of
    ``DateTimeFilter``, so the OpenAPI document still says ``date-time``)."""

    field_class = AwareDateTimeFormField
