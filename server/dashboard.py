"""The figures of the console's front page, each scoped like every other console screen.

The top floor: it reads the models of every app, so the console's site (``config.console``,
plumbing) finds it by name in the settings (``CONSOLE_DASHBOARD``) instead of importing it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.http import HttpRequest
from django.utils import timezone

from commands.choices import CommandState
from commands.models import CommandHistory
from inventory.fleet import figures
from inventory.scoping import scope_of, scope_queryset
from operations.admin import progress_bar, state_badge
from operations.choices import TERMINAL_STATES, OperationState
from operations.models import Operation

#: Active operations listed on the page; the rest are one click away in the operations list.
ACTIVE_SHOWN = 10
#: Finished operations over which the success and failure rates are counted.
RATE_DAYS = 7
#: How an operation can end, as the rates card names them: every way, so that cancelled and
#: timed-out operations count against the rate instead of vanishing from it.
OUTCOMES = [
    ("success", OperationState.SUCCESS, "succeeded"),
    ("failure", OperationState.FAILURE, "failed"),
    ("cancelled", OperationState.CANCELLED, "cancelled"),
    ("timeout", OperationState.TIMEOUT, "timed out"),
    ("denied", OperationState.APPROVAL_DENIED, "denied or expired approval"),
]
#: The command states a command ends in: the chart always has a series for each (even when
#: none happened in the last 24 hours), so a timed-out or cancelled hour shows, and the legend
#: names every outcome.
COMMAND_OUTCOMES = [CommandState.SUCCESS, CommandState.FAILURE, CommandState.TIMEOUT, CommandState.CANCELLED]


def dashboard(request: HttpRequest) -> dict[str, Any]:
    scope = scope_of(request)
    if scope.nothing:
        return {"dashboard": None}
    now = timezone.now()
    operations = scope_queryset(Operation.objects.all(), scope, "tenant")
    # Exact up to COUNT_ESTIMATE_THRESHOLD devices, estimated (and said so) beyond: counting a
    # million devices was most of this page's time (inventory.fleet, issue 26).
    fleet = figures(None if scope.everything else scope.tenant_id)
    active = operations.exclude(state__in=TERMINAL_STATES).order_by("-created_at")
    finished = operations.filter(
        state__in=TERMINAL_STATES, updated_at__gte=now - dt.timedelta(days=RATE_DAYS)
    ).aggregate(**{name: Count("pk", filter=Q(state=state)) for name, state, _ in OUTCOMES})
    done = sum(finished.values())
    return {
        "dashboard": {
            "device_total": fleet.total,
            "devices_by_state": fleet.by_state,
            "devices_by_os": [(os or "unknown", n) for os, n in fleet.by_os],
            "devices_estimated": fleet.estimated,
            "estimate_threshold": settings.COUNT_ESTIMATE_THRESHOLD,
            "active_operations": [
                {"operation": op, "state": state_badge(op), "progress": progress_bar(op)}
                for op in active[:ACTIVE_SHOWN]
            ],
            "active_total": active.count(),
            # The approvals queue's length: what waits for a second admin (operations.approvals).
            "awaiting_approval": operations.filter(state=OperationState.WAITING_FOR_APPROVAL).count(),
            "rate_days": RATE_DAYS,
            "success": finished["success"],
            "failure": finished["failure"],
            "success_rate": round(100 * finished["success"] / done, 1) if done else None,
            "failure_rate": round(100 * finished["failure"] / done, 1) if done else None,
            "finished": done,
            "outcomes": [
                {
                    "name": name,
                    "label": label,
                    "count": finished[name],
                    "rate": round(100 * finished[name] / done, 1),
                }
                for name, _, label in OUTCOMES
            ]
            if done
            else [],
            "chart": command_chart(request, now),
        }
    }


def command_chart(request: HttpRequest, now: dt.datetime) -> dict[str, Any]:
    """Command state changes per hour over the last 24 hours, one series per state entered,
    and one per outcome (Success, Failure, TimeOut, Cancelled) even when there was none.

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
    for outcome in COMMAND_OUTCOMES:
        series.setdefault(outcome, [0] * 24)
    # The way there (queued, acknowledged, ...) first, then the outcomes, always in one order.
    order = sorted(state for state in series if state not in COMMAND_OUTCOMES) + COMMAND_OUTCOMES
    return {
        "labels": [hour.strftime("%H:00") for hour in hours],
        "datasets": [
            {
                "label": CommandState(state).label,
                "data": series[state],
                "state": int(state),
                "outcome": state in COMMAND_OUTCOMES,
            }
            for state in order
        ],
    }
