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


def _percent(value: float) -> str:
    """A rate as a sentence writes it: "50", "66.7" (one decimal, none when it is whole)."""
    return f"{value:.1f}".removesuffix(".0")


def _share(count: int, total: int) -> str:
    """A percentage as a string: the templates write it into a style attribute, where
    "33,33" (a localised float) would be no width at all."""
    return f"{100 * count / total:.2f}" if total else "0"


def settled(operation: Operation) -> bool:
    """Whether nothing about the operation will move any more: final, and a stop's worker done
    with its unfinished commands. The state alone is not enough: a cancel makes the operation
    CANCELLED at once and leaves its commands to a worker (``operations.stopping``), so the page
    that stopped polling on the state showed "pending 20, cancelled 0" until a reload."""
    return operation.state in TERMINAL_STATES and operation.commands_stop != "in_progress"


def handed_out(operation: Operation, waves_shown: list[dict[str, Any]] | None) -> tuple[int, int]:
    """(commands the devices may fetch, commands that wait): a rollout's commands in waves not
    yet open wait for their wave, an operation's scheduled ones for their window. The counter
    ``dispatched_count`` alone said "dispatched 20" of a paused rollout with 4 handed out."""
    if waves_shown:
        released = sum(wave["devices"] for wave in waves_shown if wave["opened"])
        return released, operation.resolved_count - released
    return operation.dispatched_count, max(operation.resolved_count - operation.dispatched_count, 0)


def live_data(operation: Operation) -> dict[str, Any]:
    """Everything the live view shows, from one read of the operation's row (and its waves)."""
    total = operation.resolved_count
    bar = []
    for key, label, counter in SEGMENTS:
        count = operation.pending_count if counter is None else int(getattr(operation, counter))
        percent = _share(count, total)
        bar.append({"key": key, "label": label, "count": count, "percent": percent})
    rollout = rollout_data(operation)
    released, waiting = handed_out(operation, rollout["waves"] if rollout else None)
    stopping = operation.commands_stop == "in_progress"
    return {
        "state": operation.state_name,
        "terminal": operation.state in TERMINAL_STATES,
        "settled": settled(operation),
        "stopping": stopping,
        "retryable": retryable(operation),
        "closable": closable(operation),
        "pausable": operation.state in PAUSABLE_STATES,
        "paused": operation.state == OperationState.PAUSED,
        "reason": operation.reason,
        "updated_at": console_time(operation.updated_at),
        "resolved": total,
        "dispatched": operation.dispatched_count,
        "handed_out": released,
        "waiting": waiting,
        "failing": operation.failed_count + operation.dispatch_failed_count,
        "bar": bar,
        "counts": operation.counts(),
        "rollout": rollout,
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
    rows = {row.wave: row for row in operation.waves.all()}
    wave_rows = []
    for wave in status["waves"]:
        row = rows.get(wave["wave"])
        opened = row is not None and row.opened_at is not None
        outcome, note = wave_outcome(operation, wave, opened, rollout.wave_success_percent)
        wave_rows.append(
            {
                **wave,
                "opened": opened,
                "outcome": outcome,
                "outcome_label": outcome.replace("_", " "),
                "note": note,
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
        )
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
            "rate": _percent(rate),
            # How far along the way to the threshold the measured rate is (100: reached).
            "closeness": f"{min(100.0, 100 * rate / rule.threshold_percent):.2f}",
            "armed": armed,
            "met": armed and failures * 100 >= rule.threshold_percent * finished,
        }
        if aborted and (aborted["type"], aborted["threshold"]) == (rule.failure_type, shown["threshold"]):
            shown.update(
                rate=_percent(float(aborted["rate"])),
                finished=int(aborted["finished"]),
                failures=round(float(aborted["rate"]) * int(aborted["finished"]) / 100),
                closeness="100.00",
                armed=True,
                met=True,
                aborted=True,
            )
            aborted = None  # one rule aborts
        shown["text"] = abort_sentence(rule.failure_type, shown)
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


#: What a wave's outcome is called on the page, each with its own colour (operation.css
#: ``.wave-<outcome>``): a wave that missed its threshold or never opened is not a green DONE.
WAVE_OUTCOMES = ("WAITING", "OPEN", "DONE", "BELOW_THRESHOLD", "CANCELLED", "STOPPED", "NEVER_OPENED")

#: An abort rule's failures in words, by ``failure_type``.
_FAILING_WORDS = {"FAILED": "fail", "TIMED_OUT": "time out", "ALL": "fail or time out"}


def wave_outcome(
    operation: Operation, wave: dict[str, Any], opened: bool, success_percent: float
) -> tuple[str, str]:
    """What happened to a wave (one of :data:`WAVE_OUTCOMES`) and a note saying why."""
    devices, success = int(wave["devices"]), int(wave["success"])
    if not opened:
        if operation.state in TERMINAL_STATES:
            return "NEVER_OPENED", f"the operation ended {operation.state_name} before this wave opened"
        return "WAITING", "opens when the wave before it has finished"
    closed = wave["state"] == "DONE"
    if not closed and operation.state not in TERMINAL_STATES:
        return "OPEN", ""
    if int(wave["cancelled"]) > 0:
        return "CANCELLED", f"{wave['cancelled']} of {devices} cancelled"
    if not closed:  # open when the operation stopped: a time-out or a failure ended it
        return "STOPPED", f"the operation ended {operation.state_name} while this wave was open"
    rate = 100.0 * success / devices if devices else 100.0
    if rate < success_percent:
        return "BELOW_THRESHOLD", f"{_percent(rate)} % succeeded, below the {success_percent:g} % needed"
    return "DONE", f"{_percent(rate)} % succeeded" if devices else "no device in this wave"


def abort_sentence(failure_type: str, rule: dict[str, Any]) -> str:
    """An abort rule as a sentence: "abort when at least 50 % fail, once at least 5 devices
    have finished; now 60 % (3 of 5)". The rule is met at the threshold itself
    (``Rollout.tripped``: failures * 100 >= threshold * finished), hence "at least"."""
    words = _FAILING_WORDS.get(failure_type, failure_type.lower())
    return (
        f"abort when at least {rule['threshold']} % {words}, once at least {rule['min_executed']} "
        f"device{'s' if rule['min_executed'] != 1 else ''} have finished; now {rule['rate']} % "
        f"({rule['failures']} of {rule['finished']} finished)"
        + (": it aborted the operation" if rule.get("aborted") else "")
    )


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
    wave: int


@dataclass
class CommandPage:
    """One page of an operation's command statuses, and the filters that chose it."""

    rows: list[CommandRow]
    state: str
    device: str
    after: int | None
    next_after: int | None
    states: list[tuple[str, str]]
    wave: int | None = None
    waves: tuple[int, ...] = ()


#: The per-device list's state filter for "failed or timed out", the failing devices.
FAILING = "failing"
FAILING_STATES = (CommandState.FAILURE, CommandState.TIMEOUT)
#: Rows of the failing-devices panel at the top of the page (the list below pages through all).
FAILING_SHOWN = 10


def _filtered(
    operation: Operation, state: str, device: str, wave: int | None = None
) -> QuerySet[CommandStatus]:
    commands = CommandStatus.objects.filter(operation=operation)
    if state == FAILING:
        commands = commands.filter(state__in=FAILING_STATES)
    elif state:
        commands = commands.filter(state=int(state))
    if wave is not None:
        commands = commands.filter(wave=wave)
    if device:
        # The device first (its tenant's unique device id), then the (operation, device)
        # unique index: one row at most, whatever the size of the operation.
        pks = Device.objects.filter(tenant_id=operation.tenant_id, device_id=device).values("pk")
        commands = commands.filter(device_id__in=pks)
    return commands


def _rows(commands: list[CommandStatus]) -> list[CommandRow]:
    return [
        CommandRow(
            pk=command.pk,
            device_pk=command.device_id,
            device_id=command.device.device_id,
            state=command.get_state_display(),
            reason=command.reason,
            updated=console_time(command.updated_on),
            window_opens=scheduled_for(command),
            wave=command.wave,
        )
        for command in commands
    ]


def wave_numbers(operation: Operation) -> tuple[int, ...]:
    """The waves a filter may pick: a rollout's, none without waves."""
    if not operation.rollout:
        return ()
    return tuple(operation.waves.values_list("wave", flat=True))


def _wave_choice(text: str, waves: tuple[int, ...]) -> int | None:
    return int(text) if text.isdigit() and len(text) < 6 and int(text) in waves else None


def command_page(operation: Operation, query: QueryDict) -> CommandPage:
    """The page of command statuses ``query`` asks for: ``cmd_state`` (a state's number, or
    ``failing``: failed or timed out), ``cmd_wave`` (a rollout's wave), ``cmd_device`` (an
    exact device id) and ``cmd_after`` (the last device key of the page before).

    Ordered by the device's key and cut there (``device_id > after``): that is the order of
    the unique (operation, device) index, so a page is one index range scan, whatever the
    size of the operation or where its rows lie in the table. Ordered by ``id``, PostgreSQL
    walks the primary key and filters: 150 ms for a small operation written after a big one,
    against 0.05 ms (EXPLAIN ANALYZE, 1,040,000 rows). One more row than shown says whether
    there is a next page, so nothing is ever counted. Unknown values are ignored, as the
    admin's filters do.
    """
    states = [(FAILING, "failed or timed out"), *((str(int(state)), state.label) for state in CommandState)]
    state = query.get("cmd_state", "")
    if state not in dict(states):
        state = ""
    waves = wave_numbers(operation)
    wave = _wave_choice(query.get("cmd_wave", ""), waves)
    device = query.get("cmd_device", "").strip()[:128]
    after_text = query.get("cmd_after", "")
    after = int(after_text) if after_text.isdigit() and len(after_text) < 19 else None
    commands = _filtered(operation, state, device, wave).select_related("device").order_by("device_id")
    if after is not None:
        commands = commands.filter(device_id__gt=after)
    found = list(commands[: COMMANDS_PER_PAGE + 1])
    shown = found[:COMMANDS_PER_PAGE]
    next_after = shown[-1].device_id if len(found) > COMMANDS_PER_PAGE else None
    return CommandPage(
        rows=_rows(shown),
        state=state,
        device=device,
        after=after,
        next_after=next_after,
        states=states,
        wave=wave,
        waves=waves,
    )


@dataclass
class FailingPanel:
    """The failing devices at the top of an operation's page: failed or timed out, with their
    reasons, the first :data:`FAILING_SHOWN` by device key, of one wave if chosen."""

    rows: list[CommandRow]
    total: int
    more: bool
    wave: int | None
    waves: tuple[int, ...]


def failing_panel(operation: Operation, query: QueryDict) -> FailingPanel:
    """Read only when the counters say some device failed: no scan of a healthy operation."""
    waves = wave_numbers(operation)
    wave = _wave_choice(query.get("fail_wave", ""), waves)
    total = operation.failed_count + operation.dispatch_failed_count
    if not total:
        return FailingPanel(rows=[], total=0, more=False, wave=wave, waves=waves)
    commands = _filtered(operation, FAILING, "", wave).select_related("device").order_by("device_id")
    found = list(commands[: FAILING_SHOWN + 1])
    return FailingPanel(
        rows=_rows(found[:FAILING_SHOWN]),
        total=total,
        more=len(found) > FAILING_SHOWN,
        wave=wave,
        waves=waves,
    )
