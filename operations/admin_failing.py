"""The console's "Failing now" page: every failed or timed-out command of the last hours, fleet
wide (the console user's tenant), grouped (:mod:`operations.failing`), each group linking to
its devices (the device list, filtered) and to its operation's failing devices.

Two clicks from the dashboard: its "Failing now" card (or the sidebar), then a group.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from commands.admin import console_time
from operations.failing import FAILING_STATES, HOURS_CHOICES, FailingGroup, failing_now
from operations.models import Operation


class HoursForm(forms.Form):
    hours = forms.TypedChoiceField(
        label="in the last",
        choices=[(hours, f"{hours} hours" if hours > 1 else "hour") for hours in HOURS_CHOICES],
        coerce=int,
        required=False,
        empty_value=str(HOURS_CHOICES[0]),
    )


def device_list_url(group: FailingGroup) -> str:
    """The device list, filtered to this group's devices (``DeviceAdmin.lookup_allowed``)."""
    query = {
        "commands__operation": str(group.operation_id),
        "commands__wave": str(group.wave),
        "commands__state__in": ",".join(str(int(state)) for state in FAILING_STATES),
        "os__exact": group.os,
        "model": group.model,
    }
    return reverse("admin:inventory_device_changelist") + "?" + urlencode(query)


def operation_failing_url(group: FailingGroup) -> str:
    """The operation's page, its failing devices of this wave at the top."""
    page = reverse("admin:operations_operation_change", args=[group.operation_id])
    return f"{page}?{urlencode({'fail_wave': group.wave})}#failing-devices"


class FailingNowMixin:
    """The page, for ``OperationAdmin`` (whose queryset is the user's tenant's)."""

    admin_site: Any
    model: type[Operation]

    if TYPE_CHECKING:

        def get_queryset(self, request: HttpRequest) -> Any: ...

        def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool: ...

    def failing_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [path("failing/", wrap(self.failing_view), name="operations_operation_failing")]

    def failing_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = HoursForm(request.GET or None)
        hours = int(form.cleaned_data["hours"]) if form.is_valid() else HOURS_CHOICES[0]
        status = 200 if form.is_bound is False or form.is_valid() else 400
        since = timezone.now() - dt.timedelta(hours=hours)
        found = failing_now(self.get_queryset(request), since)
        rows = [
            {
                "group": group,
                "devices_url": device_list_url(group),
                "operation_url": operation_failing_url(group),
            }
            for group in found.groups
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Failing now",
            "opts": self.model._meta,
            "form": form,
            "hours": hours,
            "since": console_time(since),
            "found": found,
            "rows": rows,
        }
        return TemplateResponse(request, "admin/operations/operation/failing.html", context, status=status)
