"""Filters of the operation list."""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from rest_framework.exceptions import ValidationError

from config.api.filters import AwareDateTimeFilter, NonEmptyCharFilter, StrictChoiceFilter
from operations.choices import OperationType, state_from_param
from operations.models import Operation


class OrderingFilter(filters.OrderingFilter):
    """django-filter's, refusing empty terms: ``ordering=,,,`` was taken as no ordering at
    all, though the schema (an array of the field names) forbids it."""

    def filter(self, qs: QuerySet[Operation], value: list[str] | None) -> QuerySet[Operation]:
        if value and not all(value):
            raise ValidationError({"ordering": ["an empty term between commas; use e.g. -created_at,state"]})
        return super().filter(qs, value)


class OperationFilterSet(filters.FilterSet):
    state = NonEmptyCharFilter(
        method="filter_state", help_text="The integer (e.g. 50) or the name (DISPATCHED)."
    )
    operation_type = StrictChoiceFilter(choices=OperationType.choices)
    created_after = AwareDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = AwareDateTimeFilter(field_name="created_at", lookup_expr="lt")
    ordering = OrderingFilter(fields=("created_at", "state", "updated_at"))
    parent = filters.UUIDFilter(field_name="parent_id", help_text="The runs of this RECURRING operation.")

    class Meta:
        model = Operation
        fields: list[str] = []

    def filter_state(self, queryset: QuerySet[Operation], name: str, value: str) -> QuerySet[Operation]:
        state = state_from_param(value)
        if state is None:
            raise ValidationError(
                {"state": [f"unknown state {value[:40]!r}; use an integer such as 50 or a name"]}
            )
        return queryset.filter(state=state)
