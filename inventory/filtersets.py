"""Filters of the device and group lists."""

from __future__ import annotations

import contextlib
import uuid

from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters

from config.api.filters import AwareDateTimeFilter, StrictChoiceFilter
from inventory.models import Device, DeviceState, Group


def tags_contain(queryset: QuerySet[Device], tag: str) -> QuerySet[Device]:
    """Devices whose tags include ``tag``: JSONB containment (``@>``, index-friendly)."""
    return queryset.filter(tags__contains=[tag])


class DeviceFilterSet(filters.FilterSet):
    state = StrictChoiceFilter(choices=DeviceState.choices)
    os = filters.CharFilter(field_name="os", lookup_expr="iexact")
    os_version = filters.CharFilter()
    model = filters.CharFilter()
    serial = filters.CharFilter()
    timezone = filters.CharFilter()
    name = filters.CharFilter(lookup_expr="icontains")
    tag = filters.CharFilter(method="filter_tag")
    group = filters.CharFilter(method="filter_group", help_text="A group id or name.")
    last_seen_after = AwareDateTimeFilter(field_name="last_seen", lookup_expr="gte")
    last_seen_before = AwareDateTimeFilter(field_name="last_seen", lookup_expr="lt")

    class Meta:
        model = Device
        fields: list[str] = []

    def filter_tag(self, queryset: QuerySet[Device], name: str, value: str) -> QuerySet[Device]:
        return tags_contain(queryset, value)

    def filter_group(self, queryset: QuerySet[Device], name: str, value: str) -> QuerySet[Device]:
        condition = Q(groups__name=value)
        with contextlib.suppress(ValueError):
            condition |= Q(groups__pk=uuid.UUID(value))
        return queryset.filter(condition).distinct()


class GroupFilterSet(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Group
        fields: list[str] = []
