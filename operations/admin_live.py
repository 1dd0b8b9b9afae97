"""An operation's page in the console: the live view and the per-device command list.

The live view is one set of data (:func:`live_data`) that the page is first drawn from and
that ``<id>/progress/`` answers with every poll, so the state, the reason, the counts and
the bar can never contradict each other: before, the page drew its fields once (CREATED,
"0 of 0") while the box above them followed the fan-out (DISPATCHED, 5 pending).

A rollout's panel (:func:`rollout_data`: each wave with its own bar and state, each abort
rule with how close the operation is to it, the rate) is part of the same data; the page and
each poll draw it with one template (``ROLLOUT_TEMPLATE``).

The command list (:func:`command_page`) pages an operation's command statuses by key, never
counting them: an operation may have a million.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import QueryDict

from commands.admin import console_time, scheduled_for
from commands.choices import CommandState
from commands.counting import COUNTERS
from commands.models import CommandStatus
from inventory.models import Device
from operations import waves
from operations.choices import (
    PAUSABLE_STATES,
    TERMINAL_STATES,
    OperationState,
    ScheduleType,
    TargetSelection,
    TimeType,
)
from operations.models import Operation
from operations.rollouts import Rollout
from operations.windows import Window

#: The bar's segments, in the order drawn: (key, label, the counter or None for pending).
#: ``dispatch_failed_count`` counts the commands that timed out before the device got them;
#: a timeout after delivery is a device failure (``commands.counting``).
SEGMENTS = (
    ("success", "succeeded", "success_count"),
    ("failed", "failed", "failed_count"),
    ("pending", "pending", None),
    ("cancelled", "cancelled", "cancelled_count"),
    ("timed_out", "timed out", "dispatch_failed_count"),
)

#: A wave's bar, in the order drawn: (key, label, the key in ``waves.status``'s wave).
WAVE_SEGMENTS = (
    ("success", "succeeded", "success"),
    ("failed", "failed", "failed"),
    ("cancelled", "cancelled", "cancelled"),
    ("pending", "pending", "pending"),
)
#: The reason ``operations.aborts.abort_if_met`` gives an operation it aborted.
_ABORTED = re.compile(
    r"abort: (?P<type>\w+) (?P<rate>[0-9.]+)% >= (?P<threshold>[0-9.e+-]+)% "
    r"after (?P<finished>[0-9]+) devices"
)
#: Draws the rollout panel, in the page and in each poll's answer (``rollout_html``).
ROLLOUT_TEMPLATE = "admin/operations/operation/rollout.html"

#: Command statuses per page of the per-device list.
COMMANDS_PER_PAGE = 50


def retryable(operation: Operation) -> bool:
    """Whether "Re-run failed devices" applies: final, with devices that failed or timed out
    (``failed_count``: the re-run's default outcomes, FAILED and TIMED_OUT)."""
    return operation.state in TERMINAL_STATES and operation.failed_count > 0


def closable(operation: Operation) -> bool:
    """Whether "Close" applies: a continuous operation devices may still join."""
    return (
        operation.target_selection == TargetSelection.CONTINUOUS
        and operation.continuous_closed_at is None
        and operation.state not in TERMINAL_STATES
    )


def _share(count: int, total: int) -> str:
    """A percentage as a string: the templates write it into a style attribute, where
    "33,33" (a localised float) would be no width at all."""
    return f"{100 * count / total:.2f}" if total else "0"


def live_data(operation: Operation) -> dict[str, Any]:
    """Everything the live view shows, from one read of the operation's row."""
    total = operation.resolved_count
    bar = []
    for key, label, counter in SEGMENTS:
        count = operation.pending_count if counter is None else int(getattr(operation, counter))
        percent = _share(count, total)
        bar.append({"key": key, "label": label, "count": count, "percent": percent})
    return {
        "state": operation.state_name,
        "terminal": operation.state in TERMINAL_STATES,
        "retryable": retryable(operation),
        "closable": closable(operation),
        "pausable": operation.state in PAUSABLE_STATES,
        "paused": operation.state == OperationState.PAUSED,
        "reason": operation.reason,
        "updated_at": console_time(operation.updated_at),
        "resolved": total,
        "dispatched": operation.dispatched_count,
        "bar": bar,
        "counts": operation.counts(),
        "rollout": rollout_data(operation),
    }


def rollout_data(operation: Operation) -> dict[str, Any] | None:
    """The rollout panel: the API's ``rollout_status`` (``waves.status``) with a bar per wave,
    each abort rule measured on the operation's exact counters as ``Rollout.tripped`` measures
    it, the rate, retries and timeout. None without a rollout."""
    rollout = Rollout.from_json(operation.rollout)
    status = waves.status(operation)
    if rollout is None or status is None:
        return None
    current = status["current_wave"]
    wave_rows = [
        {
            **wave,
            "current": wave["wave"] == current and wave["state"] == "OPEN",
            "bar": [
                {
                    "key": key,
                    "label": label,
                    "count": wave[name],
                    "percent": _share(wave[name], wave["devices"]),
                }
                for key, label, name in WAVE_SEGMENTS
            ],
        }
        for wave in status["waves"]
    ]
    counts = {name: int(getattr(operation, name)) for name in COUNTERS}
    finished = operation.finished_count
    # An abort cancels the unfinished commands, which then count as finished and dilute the
    # rate: the rule that aborted is shown as the abort's reason measured it.
    aborted = _ABORTED.fullmatch(operation.reason) if operation.state == OperationState.CANCELLED else None
    rules = []
    for rule in rollout.abort:
        failures = rule.count(counts)
        rate = 100.0 * failures / finished if finished else 0.0
        armed = finished >= rule.min_executed
        shown = {
            "failure_type": rule.failure_type,
            "threshold": f"{rule.threshold_percent:g}",
            "min_executed": rule.min_executed,
            "failures": failures,
            "finished": finished,
            "rate": f"{rate:.1f}",
            # How far along the way to the threshold the measured rate is (100: reached).
            "closeness": f"{min(100.0, 100 * rate / rule.threshold_percent):.2f}",
            "armed": armed,
            "met": armed and failures * 100 >= rule.threshold_percent * finished,
            "text": f"{rule.failure_type} {rate:.1f}% of {rule.threshold_percent:g}% after "
            f"{rule.min_executed} devices, {finished} finished",
        }
        if aborted and (aborted["type"], aborted["threshold"]) == (rule.failure_type, shown["threshold"]):
            shown.update(
                rate=aborted["rate"],
                finished=int(aborted["finished"]),
                closeness="100.00",
                armed=True,
                met=True,
                text=f"{rule.failure_type} {aborted['rate']}% of {shown['threshold']}% after "
                f"{rule.min_executed} devices, {aborted['finished']} finished: aborted the operation",
            )
            aborted = None  # one rule aborts
        rules.append(shown)
    rate_limit = None
    if rollout.max_per_minute is not None:
        last_minute = int(status["handed_out_last_minute"] or 0)
        rate_limit = {
            "max": rollout.max_per_minute,
            "last_minute": last_minute,
            "percent": _share(min(last_minute, rollout.max_per_minute), rollout.max_per_minute),
        }
    return {
        "current_wave": current,
        "waves": wave_rows,
        "planned": [f"{percent:g}%" for percent in rollout.waves] if not wave_rows else [],
        "wave_success_percent": f"{rollout.wave_success_percent:g}",
        "abort": rules,
        "rate": rate_limit,
        "retries": [
            {"failure_type": retry.failure_type, "max_attempts": retry.max_attempts}
            for retry in rollout.retries
        ],
        "in_progress_timeout_minutes": rollout.in_progress_timeout_minutes,
    }


def schedule_summary(operation: Operation) -> str:
    """An operation's window in words, its times written as the rest of the page writes them.

    ``schedule_args`` keeps the datetimes as the client sent them (any UTC offset); shown raw
    they were the one place on the page with another format. A window in device time is wall
    clock in each device's own zone, so it has no instant to convert: it says so instead.
    """
    args = operation.schedule_args or {}
    if operation.target_selection == TargetSelection.CONTINUOUS:
        return f"{_snapshot_summary(operation, args)}; {continuous_summary(operation)}"
    return _snapshot_summary(operation, args)


def continuous_summary(operation: Operation) -> str:
    """A continuous operation's life in words: open to devices that come to match, until when."""
    if operation.continuous_closed_at is not None:
        return f"continuous, closed {console_time(operation.continuous_closed_at)}: no device joins any more"
    until = (
        f"until {console_time(operation.continuous_until)}" if operation.continuous_until else "until closed"
    )
    return f"continuous: devices that come to match later join, {until}"


def _snapshot_summary(operation: Operation, args: dict[str, Any]) -> str:
    if operation.schedule_type != ScheduleType.WINDOW:
        return "now (immediate)"
    try:
        window = Window.from_args(args)
    except (KeyError, TypeError, ValueError):
        return json.dumps(args)
    days = ", ".join(args.get("days") or ()) or "every day"
    daily = f"{str(args.get('window_start_time', ''))[:5]} to {str(args.get('window_end_time', ''))[:5]}"
    if window.time_type == TimeType.DEVICE:
        wall = "%Y-%m-%d %H:%M:%S"
        return (
            f"from {window.start:{wall}} to {window.end:{wall}} in each device's own time, "
            f"daily {daily}, {days}"
        )
    return (
        f"from {console_time(window.start)} to {console_time(window.end)}, "
        f"daily {daily} {window.console_zone}, {days}"
    )


def activity_counts(counts: dict[str, int]) -> str:
    """An activity row's counts (``Operation.counts()`` at that moment) as labelled numbers."""
    names = (
        ("success_device_count", "succeeded"),
        ("failed_device_count", "failed"),
        ("pending_device_count", "pending"),
        ("cancelled_device_count", "cancelled"),
        ("dispatch_failed_count", "timed out"),
        ("resolved_device_count", "of"),
    )
    return ", ".join(f"{label} {counts[name]}" for name, label in names if name in counts)


@dataclass
class CommandRow:
    """One line of the per-device list."""

    pk: int
    device_pk: int
    device_id: str
    state: str
    reason: str
    updated: str
    window_opens: str


@dataclass
class CommandPage:
    """One page of an operation's command statuses, and the filters that chose it."""

    rows: list[CommandRow]
    state: str
    device: str
    after: int | None
    next_after: int | None
    states: list[tuple[int, str]]


def _filtered(operation: Operation, state: str, device: str) -> QuerySet[CommandStatus]:
    commands = CommandStatus.objects.filter(operation=operation)
    if state:
        commands = commands.filter(state=int(state))
    if device:
        # The device first (its tenant's unique device id), then the (operation, device)
        # unique index: one row at most, whatever the size of the operation.
        pks = Device.objects.filter(tenant_id=operation.tenant_id, device_id=device).values("pk")
        commands = commands.filter(device_id__in=pks)
    return commands


def command_page(operation: Operation, query: QueryDict) -> CommandPage:
    """The page of command statuses ``query`` asks for: ``cmd_state`` (a state's number),
    ``cmd_device`` (an exact device id) and ``cmd_after`` (the last device key of the page
    before).

    Ordered by the device's key and cut there (``device_id > after``): that is the order of
    the unique (operation, device) index, so a page is one index range scan, whatever the
    size of the operation or where its rows lie in the table. Ordered by ``id``, PostgreSQL
    walks the primary key and filters: 150 ms for a small operation written after a big one,
    against 0.05 ms (EXPLAIN ANALYZE, 1,040,000 rows). One more row than shown says whether
    there is a next page, so nothing is ever counted. Unknown values are ignored, as the
    admin's filters do.
    """
    states = [(int(state), state.label) for state in CommandState]
    state = query.get("cmd_state", "")
    if not state.isdigit() or int(state) not in dict(states):
        state = ""
    device = query.get("cmd_device", "").strip()[:128]
    after_text = query.get("cmd_after", "")
    after = int(after_text) if after_text.isdigit() and len(after_text) < 19 else None
    commands = _filtered(operation, state, device).select_related("device").order_by("device_id")
    if after is not None:
        commands = commands.filter(device_id__gt=after)
    found = list(commands[: COMMANDS_PER_PAGE + 1])
    shown = found[:COMMANDS_PER_PAGE]
    rows = [
        CommandRow(
            pk=command.pk,
            device_pk=command.device_id,
            device_id=command.device.device_id,
            state=command.get_state_display(),
            reason=command.reason,
            updated=console_time(command.updated_on),
            window_opens=scheduled_for(command),
        )
        for command in shown
    ]
    next_after = shown[-1].device_id if len(found) > COMMANDS_PER_PAGE else None
    return CommandPage(
        rows=rows, state=state, device=device, after=after, next_after=next_after, states=states
    )
