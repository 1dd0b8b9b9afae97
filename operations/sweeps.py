"""Periodic sweeps of operations (``CELERY_BEAT_SCHEDULE``): windows opening and closing,
and operations whose last report settled without moving them on.

Each is one set-based move (``commands.services.move_and_settle``): idempotent, and safe
when two run at once because rows another sweep has locked are skipped, never moved twice.
:func:`run_all` runs the delivery sweeps of ``commands.sweeps`` first, in the order that
keeps each command's story consistent.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from commands import counting
from commands import sweeps as delivery
from commands.choices import CommandState
from commands.followers import Moved
from commands.models import CommandStatus
from commands.services import move_and_settle
from operations import aborts, progress, waves
from operations.choices import HOLDING_STATES, TERMINAL_STATES, OperationState
from operations.models import Operation
from operations.windows import Window

C = CommandState


def held(states: Iterable[OperationState] = HOLDING_STATES) -> Q:
    """Commands of an operation in ``states``: by default those that hand nothing out (paused:
    its commands wait as they are; stopped: its stop moves them), which no sweep queues
    again or releases."""
    holding = Operation.objects.filter(pk=OuterRef("operation_id"), state__in=sorted(states))
    return Q(Exists(holding))


def open_windows(now: dt.datetime | None = None, operation_id: Any = None) -> int:
    """Release scheduled commands whose window has opened; their operation is dispatched."""
    now = now or timezone.now()
    due = CommandStatus.objects.filter(state=C.SCHEDULED, not_before__lte=now).exclude(held())
    if operation_id is not None:
        due = due.filter(operation_id=operation_id)
    return move_and_settle(due, C.QUEUED, "window opened", after=_mark_dispatched)


def _mark_dispatched(moved: list[Moved]) -> None:
    for operation_id in {group.operation_id for group in moved if group.operation_id is not None}:
        progress.dispatch(operation_id, only_from=OperationState.SCHEDULED)


def close_windows(now: dt.datetime | None = None) -> dict[str, int]:
    """Commands still queued when their daily window closes wait for the next window, or
    time out if there is none before the operation's end."""
    now = now or timezone.now()
    # A stopped operation's commands are its stop's; a paused one's still follow their windows.
    stopped = held(TERMINAL_STATES)
    closed = CommandStatus.objects.filter(state=C.QUEUED, window_closes_at__lte=now).exclude(stopped)
    return reschedule(closed, now)


def reschedule(
    closed: QuerySet[CommandStatus], now: dt.datetime, reason: str = "window closed"
) -> dict[str, int]:
    """Send queued window commands back to Scheduled for their next window (per device
    zone), or to TimeOut when no window is left."""
    groups = (
        closed.exclude(operation=None)
        .values_list("operation_id", "device__timezone")
        .distinct()
        .order_by("operation_id")
    )
    counts: dict[str, int] = defaultdict(int)
    windows: dict[Any, Window] = {}
    for operation_id, zone in groups:
        if operation_id not in windows:
            windows[operation_id] = Window.from_args(Operation.objects.get(pk=operation_id).schedule_args)
        opening = windows[operation_id].next_opening(zone, now)
        subset = closed.filter(operation_id=operation_id, device__timezone=zone)
        if opening is None:
            counts["timed_out"] += move_and_settle(subset, C.TIMEOUT, f"{reason}; no later window")
        else:
            counts["rescheduled"] += move_and_settle(
                subset,
                C.SCHEDULED,
                f"{reason}; waiting for the next window",
                extra={"not_before": opening[0], "window_closes_at": opening[1]},
            )
    return dict(counts)


def complete_finished_operations() -> int:
    """Operations whose every command is finished but that are still open move on.

    A report commits its row and counters in one statement and moves the operation on
    right after; a process that died in between leaves this for the sweep to finish.
    """
    stuck = (
        Operation.objects.filter(
            state__in=progress.sources_of(OperationState.COMPLETED),
            resolved_count__gt=0,
            resolved_count__lte=counting.finished(),
        )
        .filter(progress.MAY_COMPLETE)
        .values_list("pk", flat=True)
    )
    count = 0
    for operation_id in stuck:
        progress.advance(operation_id)
        count += 1
    return count


def settle_rollouts() -> int:
    """A rollout's steps that a report takes right after its statement (an abort, closing a
    wave): taken here too, for a process that died in between. Each is a conditional UPDATE,
    so taking it twice does nothing. Returns how many running rollouts were looked at."""
    running = Operation.objects.filter(rollout__isnull=False).exclude(state__in=TERMINAL_STATES)
    count = 0
    for operation_id, current_wave in running.values_list("pk", "current_wave"):
        if not aborts.abort_if_met(operation_id, None):
            waves.close_if_finished(operation_id, current_wave)
        count += 1
    return count


def run_all() -> dict[str, Any]:
    """Every sweep once, in the order that keeps each command's story consistent."""
    now = timezone.now()
    return {
        "timed_out": delivery.time_out_overdue(now),
        "in_progress_timed_out": delivery.time_out_in_progress(now),
        "redelivery": delivery.redeliver_unacknowledged(now, exclude=held()),
        "closed": close_windows(now),
        "opened": open_windows(now),
        "rollouts": settle_rollouts(),
        "completed": complete_finished_operations(),
    }
