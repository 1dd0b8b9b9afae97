"""Filters of ``/commands/v0/status/`` (seed 002)."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters
from rest_framework.exceptions import ValidationError

from commands.choices import BY_LABEL
from commands.models import CommandStatus
from config.api.filters import StrictChoiceFilter
from inventory.models import Device

MAX_LIST_VALUES = 1000


def _values(field: str, raw: str) -> list[str]:
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if len(values) > MAX_LIST_VALUES:
        raise ValidationError({field: [f"at most {MAX_LIST_VALUES} comma-separated values"]})
    return values


class StrictBooleanField(forms.Field):
    """``true`` or ``false`` (any case; ``1`` and ``0`` too, as before), as the schema's
    boolean says. django-filter's widget took anything else (``699258333846731751424``,
    ``yes``, an empty value) as "no filter", answering as if the parameter were not there."""

    _VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value: Any) -> bool | None:
        if value is None:
            return None
        parsed = self._VALUES.get(str(value).strip().lower())
        if parsed is None:
            raise forms.ValidationError(f"must be true or false, got {str(value)[:40]!r}")
        return parsed

    def validate(self, value: Any) -> None:
        """Absent is fine (no filter); anything present was checked by :meth:`to_python`."""


class StrictBooleanFilter(filters.BooleanFilter):
    """A boolean filter (so the schema says boolean) that refuses what is no boolean."""

    field_class = StrictBooleanField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["widget"] = forms.TextInput  # the raw string, not the boolean widget's guess
        super().__init__(*args, **kwargs)


class CommandStatusFilterSet(filters.FilterSet):
    request = filters.CharFilter(
        method="filter_request", help_text="Operation (request) ids, comma-separated."
    )
    device = filters.CharFilter(method="filter_device", help_text="Device ids, comma-separated.")
    state = StrictChoiceFilter(choices=[(label, label) for label in BY_LABEL], method="filter_state")
    exclude_internal_commands = StrictBooleanFilter(method="filter_internal")

    class Meta:
        model = CommandStatus
        fields: list[str] = []

    def filter_request(
        self, queryset: QuerySet[CommandStatus], name: str, value: str
    ) -> QuerySet[CommandStatus]:
        """An operation's id matches ``operation_id``, anything else ``request_ref`` (what an
        internal command's issuer wrote, never a UUID). Asked separately, not ORed over both
        columns: an OR of two columns cannot walk the (operation, id) index in key order, and
        the first page of a million-row operation took 2.9 s (issue 17)."""
        values = _values("request", value)
        ids = []
        refs = []
        for v in values:
            try:
                ids.append(uuid.UUID(v))
            except ValueError:
                refs.append(v)
        if ids and refs:
            return queryset.filter(Q(operation_id__in=ids) | Q(request_ref__in=refs))
        if len(ids) == 1:
            # Ordered by (operation, id), which is the list's key order for one operation: the
            # planner can then only walk the (operation, id) index. Ordered by id alone, with ten
            # million rows of ten operations, it walked the primary key from the start through
            # the other operations' rows (2.5 s for a first page, bench/lists.py).
            return queryset.filter(operation_id=ids[0]).order_by("operation_id", "id")
        if ids:
            return queryset.filter(operation_id__in=ids)
        return queryset.filter(request_ref__in=refs)

    def filter_device(
        self, queryset: QuerySet[CommandStatus], name: str, value: str
    ) -> QuerySet[CommandStatus]:
        """The devices' keys are looked up first (the tenant's unique index), then the commands
        by key (the (device, id) index): a join to the device table let the planner walk every
        command in key order looking for the device's (1.4 s at a million, issue 17)."""
        principal = getattr(self.request, "auth", None)
        tenant_id = getattr(principal, "tenant_id", None)
        devices = Device.objects.filter(device_id__in=_values("device", value))
        if tenant_id is not None:
            devices = devices.filter(tenant_id=tenant_id)
        keys = list(devices.values_list("pk", flat=True)[:MAX_LIST_VALUES])
        if len(keys) == 1:  # the (device, id) index gives this order: see filter_request
            return queryset.filter(device_id=keys[0]).order_by("device_id", "id")
        return queryset.filter(device_id__in=keys)

    def filter_state(
        self, queryset: QuerySet[CommandStatus], name: str, value: str
    ) -> QuerySet[CommandStatus]:
        return queryset.filter(state=BY_LABEL[value])

    def filter_internal(
        self, queryset: QuerySet[CommandStatus], name: str, value: bool
    ) -> QuerySet[CommandStatus]:
        return queryset.filter(is_internal=False) if value else queryset
