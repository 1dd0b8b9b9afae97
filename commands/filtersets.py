"""Filters of ``/commands/v0/status/`` (seed 002)."""

from __future__ import annotations

import contextlib
import uuid

from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters
from rest_framework.exceptions import ValidationError

from commands.choices import BY_LABEL
from commands.models import CommandStatus

MAX_LIST_VALUES = 1000


def _values(field: str, raw: str) -> list[str]:
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if len(values) > MAX_LIST_VALUES:
        raise ValidationError({field: [f"at most {MAX_LIST_VALUES} comma-separated values"]})
    return values


class CommandStatusFilterSet(filters.FilterSet):
    request = filters.CharFilter(
        method="filter_request", help_text="Operation (request) ids, comma-separated."
    )
    device = filters.CharFilter(method="filter_device", help_text="Device ids, comma-separated.")
    state = filters.ChoiceFilter(choices=[(label, label) for label in BY_LABEL], method="filter_state")
    exclude_internal_commands = filters.BooleanFilter(method="filter_internal")

    class Meta:
        model = CommandStatus
        fields: list[str] = []

    def filter_request(
        self, queryset: QuerySet[CommandStatus], name: str, value: str
    ) -> QuerySet[CommandStatus]:
        values = _values("request", value)
        ids = []
        for v in values:
            with contextlib.suppress(ValueError):
                ids.append(uuid.UUID(v))
        return queryset.filter(Q(operation_id__in=ids) | Q(request_ref__in=values))

    def filter_device(
        self, queryset: QuerySet[CommandStatus], name: str, value: str
    ) -> QuerySet[CommandStatus]:
        return queryset.filter(device__device_id__in=_values("device", value))

    def filter_state(
        self, queryset: QuerySet[CommandStatus], name: str, value: str
    ) -> QuerySet[CommandStatus]:
        return queryset.filter(state=BY_LABEL[value])

    def filter_internal(
        self, queryset: QuerySet[CommandStatus], name: str, value: bool
    ) -> QuerySet[CommandStatus]:
        return queryset.filter(is_internal=False) if value else queryset
