"""The console's form for a new operation.

It only turns what the operator picked into the API's request body: the body is then
validated by the API's ``OperationCreateSerializer`` and created by
``operations.services.create_operation``, so the console accepts and refuses exactly what
``POST /v0/operations/`` does, with the same messages.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

from django import forms
from django.db.models import QuerySet

from config.api.parsers import JSONRefused, loads
from inventory.models import Group, Tenant
from inventory.models.devices import available_timezones
from operations.choices import OperationType, ScheduleType, TimeType
from operations.device_query import DEVICE_TYPES
from operations.windows import DAYS

_SEPARATORS = re.compile(r"[\s,;]+")


def split_list(text: str) -> list[str]:
    return [item for item in _SEPARATORS.split(text or "") if item]


def device_query(data: Any) -> dict[str, Any]:
    """The ``operation_device_query`` the fields describe (raw form data: the live preview
    calls it while the rest of the form is still being filled in)."""
    query: dict[str, Any] = {"device_type": data.get("device_type") or "active"}
    devices = split_list(data.get("devices", ""))
    if devices:
        query["devices"] = devices
    groups = data.getlist("groups") if hasattr(data, "getlist") else data.get("groups") or []
    if groups:
        query["groups"] = list(groups)
    filters: dict[str, Any] = {}
    systems = data.getlist("os") if hasattr(data, "getlist") else data.get("os") or []
    if systems:
        filters["os__in"] = list(systems)
    tags = [tag for tag in re.split(r"\s*,\s*", (data.get("tags") or "").strip()) if tag]
    if tags:
        filters["tags__contains"] = tags
    if filters:
        query["filters"] = filters
    if data.get("all_devices") in ("on", "true", "1", True):
        query["all"] = True
    return query


class OperationForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none())
    operation_type = forms.ChoiceField(choices=OperationType.choices, initial=OperationType.REBOOT)
    groups = forms.MultipleChoiceField(
        required=False, widget=forms.SelectMultiple(attrs={"size": 6}), help_text="devices in any of these"
    )
    os = forms.MultipleChoiceField(
        required=False, label="OS", widget=forms.SelectMultiple(attrs={"size": 6}), help_text="any of these"
    )
    tags = forms.CharField(required=False, help_text="devices carrying all of these tags, comma-separated")
    devices = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="explicit device ids, separated by commas, spaces or new lines",
    )
    device_type = forms.ChoiceField(choices=[(t, t) for t in DEVICE_TYPES], initial="active")
    all_devices = forms.BooleanField(
        required=False, label="Whole fleet", help_text="every device of the tenant"
    )
    schedule_type = forms.ChoiceField(
        choices=ScheduleType.choices, initial=ScheduleType.IMMEDIATE, widget=forms.RadioSelect
    )
    start = forms.DateTimeField(
        required=False, label="Window start", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        required=False, label="Window end", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    days = forms.MultipleChoiceField(
        required=False,
        choices=[(day, day) for day in DAYS],
        widget=forms.CheckboxSelectMultiple,
        help_text="none: every day",
    )
    time_type = forms.ChoiceField(
        choices=[
            (TimeType.CONSOLE, "console time (the zone below)"),
            (TimeType.DEVICE, "each device's own time"),
        ],
        initial=TimeType.CONSOLE,
        widget=forms.RadioSelect,
    )
    timezone = forms.CharField(initial="UTC", help_text="IANA zone of the window in console time")
    arguments = forms.CharField(
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="JSON object",
    )

    def __init__(self, *args: Any, tenants: QuerySet[Tenant], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = tenants  # type: ignore[attr-defined]
        if len(tenants) == 1:
            self.fields["tenant"].initial = tenants[0]
        many = len(tenants) > 1
        groups = Group.objects.filter(tenant__in=tenants).select_related("tenant").order_by("tenant", "name")
        self.fields["groups"].choices = [  # type: ignore[attr-defined]
            (str(g.pk), f"{g.tenant.slug}: {g.name}" if many else g.name) for g in groups
        ]
        from inventory.models import Device

        systems = (
            Device.objects.filter(tenant__in=tenants)
            .exclude(os="")
            .order_by("os")  # not Device's default ordering by id, which would defeat DISTINCT
            .values_list("os", flat=True)
            .distinct()
        )
        self.fields["os"].choices = [(os, os) for os in sorted(systems)]  # type: ignore[attr-defined]

    def clean_arguments(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("arguments") or "").strip() or "{}"
        try:
            value = loads(text)  # the API's limits: nesting, non-finite numbers, surrogates
        except JSONRefused as refused:
            if refused.where is None:
                raise forms.ValidationError(f"not valid JSON: {refused.reason}") from None
            raise forms.ValidationError(f"{refused.field('arguments')}: {refused.reason}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        return value

    def clean_timezone(self) -> str:
        zone = (self.cleaned_data.get("timezone") or "UTC").strip()
        if zone not in available_timezones():
            raise forms.ValidationError("is not an IANA time zone name (for example 'Europe/Berlin')")
        return zone

    def api_data(self) -> dict[str, Any]:
        """The body ``POST /v0/operations/`` would get (call after ``is_valid``)."""
        data = self.cleaned_data
        body: dict[str, Any] = {
            "operation_type": data["operation_type"],
            "schedule_type": data["schedule_type"],
            "operation_device_query": device_query(self.data),
            "arguments": data["arguments"],
        }
        if data["schedule_type"] == ScheduleType.WINDOW:
            args: dict[str, Any] = {"time_type": data["time_type"]}
            zone = zoneinfo.ZoneInfo(data["timezone"]) if data["time_type"] == TimeType.CONSOLE else dt.UTC
            if data["time_type"] == TimeType.CONSOLE:
                args["timezone"] = data["timezone"]
            for name, field in (("start_datetime", "start"), ("end_datetime", "end")):
                if data.get(field):
                    # The browser sends a wall-clock time; in device time only the wall clock counts.
                    args[name] = data[field].replace(tzinfo=None).replace(tzinfo=zone).isoformat()
            if data.get("days"):
                args["days"] = data["days"]
            body["schedule_args"] = args
        return body
