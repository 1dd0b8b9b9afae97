"""The figures of the console's front page, each scoped like every other console screen."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.http import HttpRequest
from django.utils import timezone

from commands.choices import CommandState
from commands.models import CommandHistory
from inventory.models import Device
from inventory.scoping import scope_of, scope_queryset
from operations.admin import progress_bar
from operations.choices import TERMINAL_STATES, OperationState
from operations.models import Operation

#: Active operations listed on the page; the rest are one click away in the operations list.
ACTIVE_SHOWN = 10
#: Finished operations over which the success and failure rates are counted.
RATE_DAYS = 7


def dashboard(request: HttpRequest) -> dict[str, Any]:
    scope = scope_of(request)
    if scope.nothing:
        return {"dashboard": None}
    now = timezone.now()
    devices = scope_queryset(Device.objects.all(), scope, "tenant")
    operations = scope_queryset(Operation.objects.all(), scope, "tenant")

    by_state = dict(devices.values_list("state").annotate(n=Count("pk")).order_by())
    by_os = sorted(
        ((os or "unknown", n) for os, n in devices.values_list("os").annotate(n=Count("pk")).order_by()),
        key=lambda pair: -pair[1],
    )
    active = operations.exclude(state__in=TERMINAL_STATES).order_by("-created_at")
    finished = operations.filter(
        state__in=[OperationState.SUCCESS, OperationState.FAILURE],
        updated_at__gte=now - dt.timedelta(days=RATE_DAYS),
    ).aggregate(
        success=Count("pk", filter=Q(state=OperationState.SUCCESS)),
        failure=Count("pk", filter=Q(state=OperationState.FAILURE)),
    )
    done = finished["success"] + finished["failure"]
    return {
        "dashboard": {
            "device_total": sum(by_state.values()),
            "devices_by_state": sorted(by_state.items()),
            "devices_by_os": by_os,
            "active_operations": [
                {"operation": op, "state": op.state_name, "progress": progress_bar(op)}
                for op in active[:ACTIVE_SHOWN]
            ],
            "active_total": active.count(),
            "rate_days": RATE_DAYS,
            "success": finished["success"],
            "failure": finished["failure"],
            "success_rate": round(100 * finished["success"] / done, 1) if done else None,
            "failure_rate": round(100 * finished["failure"] / done, 1) if done else None,
            "chart": command_chart(request, now),
        }
    }


def command_chart(request: HttpRequest, now: dt.datetime) -> dict[str, Any]:
    """Command state changes per hour over the last 24 hours, one series per state entered.

    Counts ``CommandHistory`` rows (one per accepted change), so a command that went
    Queued → Success in the hour counts once under each state it entered.
    """
    end = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    start = end - dt.timedelta(hours=24)
    history = scope_queryset(CommandHistory.objects.all(), scope_of(request), "command__tenant")
    rows = (
        history.filter(created_at__gte=start)
        .annotate(hour=TruncHour("created_at", tzinfo=dt.UTC))
        .values_list("hour", "to_state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    hours = [start + dt.timedelta(hours=i) for i in range(24)]
    index = {hour: i for i, hour in enumerate(hours)}
    series: dict[int, list[int]] = {}
    for hour, state, n in rows:
        slot = index.get(hour)
        if slot is not None:
            series.setdefault(state, [0] * 24)[slot] += n
    return {
        "labels": [hour.strftime("%H:00") for hour in hours],
        "datasets": [
            {"label": CommandState(state).label, "data": data, "state": int(state)}
            for state, data in sorted(series.items())
        ],
    }
