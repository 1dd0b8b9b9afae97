"""What the system does with operations; called by the API, the admin and the tasks."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from commands import counting, inbox_cache, push
from commands.choices import REPORTED_STATES, CommandState
from config.errors import DomainError
from config.timestamps import parse_aware
from inventory.events import emit
from inventory.models import Device, EventType
from operations import approvals, progress, recurring, rollouts, stopping, waves
from operations.choices import (
    DEFAULT_RERUN_OUTCOMES,
    PRE_DISPATCH_STATES,
    RERUN_OUTCOMES,
    TERMINAL_STATES,
    OperationState,
    ScheduleType,
    TargetSelection,
    can_move,
)
from operations.device_query import DeviceQuery
from operations.events import operation_data
from operations.models import Operation, OperationTemplate
from operations.sending import send_fan_out
from operations.sweeps import reschedule

S = OperationState
logger = logging.getLogger(__name__)
#: The ``error_code`` of an operator's move the operation's state does not allow.
INVALID_TRANSITION = "invalid_transition"


def create_operation(
    tenant_id: int,
    data: dict[str, Any],
    actor: str,
    requester: str = "",
    *,
    template: OperationTemplate | None = None,
    template_parameters: dict[str, Any] | None = None,
    rerun_of: Operation | None = None,
) -> Operation:
    """Store the operation in CREATED and hand the fan-out to a worker after commit; or, when
    the tenant's approval policy holds it, in WAITING_FOR_APPROVAL with nothing sent
    (``operations.approvals``: an approval moves it on then, as if just created).

    ``target_selection: CONTINUOUS`` keeps it open for devices that come to match later
    (``operations.continuous``); ``schedule_args.end_datetime`` closes it. ``rerun_of``: the
    operation this one re-runs (:func:`rerun`).

    The query is checked here (shape, and that listed devices and groups exist) so a
    mistake is a 400 now, not a FAILURE later; resolving it is the worker's job. A RECURRING
    series is stored SCHEDULED with its first firing instead: it never fans out itself, each
    firing makes a run (``operations.series``); a series the policy holds is approved once,
    for all its runs. ``requester`` is the principal asking (``key:<id>``, ``user:<pk>``;
    ``actor`` when not given), whom the four-eyes rule keeps from approving their own operation.
    """
    query = DeviceQuery.parse(data["operation_device_query"])
    query.check_references(tenant_id)
    rollout = rollouts.parse(data["rollout"]) if data.get("rollout") is not None else None
    target_selection = data.get("target_selection") or TargetSelection.SNAPSHOT
    schedule_args = data.get("schedule_args") or {}
    continuous_until = None
    if target_selection == TargetSelection.CONTINUOUS:
        if data.get("schedule_type") == ScheduleType.RECURRING:
            raise DomainError(
                {
                    "target_selection": [
                        "not with schedule_type RECURRING: a series makes one run per firing, each on "
                        "the devices that match then"
                    ]
                },
                code="invalid_schedule",
            )
        if rollout is not None and rollout.waves:
            raise DomainError(
                {
                    "rollout.waves": [
                        "not with target_selection CONTINUOUS: devices join one by one, so there is no "
                        "whole fleet to take percentages of; use max_per_minute and abort instead"
                    ]
                },
                code="invalid_rollout",
            )
        if schedule_args.get("end_datetime"):
            continuous_until = parse_aware(schedule_args["end_datetime"])
    schedule_type = data.get("schedule_type", ScheduleType.IMMEDIATE)
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "operation_type": data["operation_type"],
        "schedule_type": schedule_type,
        "schedule_args": schedule_args,
        "target_selection": target_selection,
        "continuous_until": continuous_until,
        "rerun_of": rerun_of,
        "device_query": query.as_json(),
        "arguments": data.get("arguments") or {},
        "created_by": actor,
        "updated_by": actor,
        "rollout": rollout.as_json() if rollout else None,
        "max_per_minute": rollout.max_per_minute if rollout else None,
        "template": template,
        "template_parameters": template_parameters,
    }
    series = schedule_type == ScheduleType.RECURRING
    firing = recurring.first_firing(fields["schedule_args"]) if series else {}
    policy = approvals.holds(tenant_id, data["operation_type"], query)
    waiting = approvals.waiting_fields(policy, requester or actor, timezone.now()) if policy else {}
    if waiting:
        fields.update(waiting)
    elif series:
        fields.update(state=S.SCHEDULED, **firing)
    with transaction.atomic():
        operation = Operation.objects.create(**fields)
        progress.record_activity(operation.pk, S.WAITING_FOR_APPROVAL if waiting else S.CREATED, actor=actor)
        if series and not waiting:
            progress.record_activity(operation.pk, S.SCHEDULED, "waiting for its first firing", actor=actor)
        emit(tenant_id, EventType.OPERATION_CREATED, operation_data(operation))
        if waiting:
            approvals.requested(operation)
        elif not series:
            transaction.on_commit(lambda: send_fan_out(operation.pk))
    return operation


def make_run(series: Operation, fire: dt.datetime, window_args: dict[str, Any]) -> Operation | None:
    """The run of one firing, in the caller's transaction: a WINDOW operation of the series'
    type, arguments, query and rollout, ``parent`` set, created as ``create_operation`` creates
    (activity, ``operation.created``, the fan-out after commit). None when that firing has its
    run already: the unique (parent, scheduled_for) row decides, whatever sweeps race. The
    series was approved once for all its runs: the policy does not hold a run."""
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction goes on
            run = Operation.objects.create(
                tenant_id=series.tenant_id,
                operation_type=series.operation_type,
                schedule_type=ScheduleType.WINDOW,
                schedule_args=window_args,
                device_query=series.device_query,
                arguments=series.arguments,
                created_by=series.created_by,
                updated_by="system",
                rollout=series.rollout,
                max_per_minute=series.max_per_minute,
                parent=series,
                scheduled_for=fire,
                template_id=series.template_id,
                template_parameters=series.template_parameters,
            )
    except IntegrityError:
        return None
    progress.record_activity(run.pk, S.CREATED, f"run of the series {series.pk}", actor="system")
    emit(series.tenant_id, EventType.OPERATION_CREATED, operation_data(run))
    transaction.on_commit(functools.partial(send_fan_out, run.pk))
    return run


def request_state(operation: Operation, target: OperationState, reason: str, actor: str) -> Operation:
    """An operator's PUT: CANCELLED, TIMEOUT, FAILURE, SCHEDULED or PAUSED (``resume`` is
    the way back from PAUSED).

    Stopping (CANCELLED, TIMEOUT, FAILURE) moves the operation at once and leaves its
    unfinished commands to a worker (``operations.stopping``: Command Cancelled, or Command
    TimeOut for TIMEOUT), so the answer never waits for a million rows. SCHEDULED sends the
    queued commands of a WINDOW operation back to wait for their window, in the request.
    Pausing moves no command: the inbox hands out nothing of a paused operation, and what
    devices have may still be reported.
    """
    if target in stopping.COMMAND_TARGETS:
        operation.refresh_from_db()  # the caller's copy may be older than the last move
        _check_move(operation, target)
        if not stopping.stop(operation.pk, target, reason, actor):
            # Another writer moved it between the check and the move: say what it is now.
            operation.refresh_from_db()
            _check_move(operation, target)
            raise DomainError(
                {"state": [f"the operation could not move to {target.name}; try again"]},
                code="concurrent_transition",
            )
        if operation.schedule_type == ScheduleType.RECURRING:
            _end_series(operation, target, reason, actor)
        operation.refresh_from_db()
        return operation
    with transaction.atomic():
        current = Operation.objects.select_for_update().get(pk=operation.pk)
        _check_move(current, target)
        if target == S.PAUSED:
            progress.pause(current.pk, reason or "paused by an operator", actor)
        else:
            progress.move(current.pk, target, reason, actor)
            queued = current.commands.filter(state=CommandState.QUEUED)
            reschedule(queued, timezone.now(), reason or "rescheduled")
    return Operation.objects.get(pk=operation.pk)


def _end_series(series: Operation, target: OperationState, reason: str, actor: str) -> None:
    """A stopped series makes no more runs, and its unfinished runs stop the same way.

    The sweep makes a run holding the series' row locked and only while it is SCHEDULED
    (``operations.series``), so after the stop commits no run can appear: the runs read here
    are all there will be."""
    Operation.objects.filter(pk=series.pk).update(next_run_at=None, next_due_at=None)
    why = reason or f"the series was {target.name}"
    for run in series.runs.exclude(state__in=TERMINAL_STATES):
        with contextlib.suppress(DomainError):  # it finished meanwhile
            request_state(run, target, why, actor)


def _check_move(current: Operation, target: OperationState) -> None:
    """400 naming ``state`` when the operator's move is not allowed from where it stands."""
    name = S(current.state).name
    if current.state in TERMINAL_STATES:
        raise DomainError(
            {"state": [f"the operation is already {name}, a final state"]}, code=INVALID_TRANSITION
        )
    if current.state == S.WAITING_FOR_APPROVAL and target not in stopping.COMMAND_TARGETS:
        # Only a decision moves it on (operations.approvals); an operator may withdraw it.
        raise DomainError(
            {
                "state": [
                    f"the operation waits for approval: approve or deny it, or cancel it; not {target.name}"
                ]
            },
            code=INVALID_TRANSITION,
        )
    if target == S.PAUSED and current.state == S.PAUSED:
        raise DomainError(
            {"state": ["the operation is already PAUSED; resume it with RESUMED"]}, code=INVALID_TRANSITION
        )
    if target == S.SCHEDULED and current.schedule_type != ScheduleType.WINDOW:
        raise DomainError(
            {"state": ["only a WINDOW operation can go back to SCHEDULED"]}, code=INVALID_TRANSITION
        )
    if not can_move(current.state, target):
        raise DomainError({"state": [f"cannot move from {name} to {target.name}"]}, code=INVALID_TRANSITION)


def resume(operation: Operation, reason: str, actor: str) -> Operation:
    """``RESUMED``: back to the state the pause left, and on from where it stopped.

    A fan-out the pause interrupted is sent again (it resumes where it stopped); after a pause
    for a wave below its threshold, the next wave opens (the operator decided to go on); an
    operation whose every command finished meanwhile completes; devices are told to look again.
    """
    with transaction.atomic():
        current = Operation.objects.select_for_update().get(pk=operation.pk)
        if current.state != S.PAUSED or current.paused_from is None:
            name = S(current.state).name
            raise DomainError(
                {"state": [f"only a PAUSED operation can be RESUMED; it is {name}"]}, code=INVALID_TRANSITION
            )
        back = S(current.paused_from)
        progress.move(
            current.pk, back, reason or "resumed", actor, only_from=[S.PAUSED], also={"paused_from": None}
        )
        if current.schedule_type == ScheduleType.RECURRING:
            # Firings missed while paused are skipped, not replayed: on from the next one.
            _reschedule_series(current)
            current.refresh_from_db()
            return current
        wave = current.waves.filter(wave=current.current_wave).first()
        if wave is not None and wave.closed_at is not None:
            waves.open_next(current.pk, current.current_wave, actor)
        push.notify_operation(current.pk)  # its queued commands are handed out again
        transaction.on_commit(functools.partial(inbox_cache.bump_tenant, current.tenant_id))
        if back in PRE_DISPATCH_STATES:
            transaction.on_commit(functools.partial(send_fan_out, current.pk))
    if back not in PRE_DISPATCH_STATES:  # reports that came in while paused move it on now
        reported = current.commands.filter(state__in=REPORTED_STATES).exists()
        progress.advance(current.pk, reported=reported, actor=actor)
    current.refresh_from_db()
    return current


def _reschedule_series(series: Operation) -> None:
    """The series' next firing from now (none left: the finishing sweep ends it)."""
    parsed = recurring.Series.from_args(series.schedule_args)
    fire = parsed.next_after(timezone.now(), series.runs_count)
    due = parsed.due_at(fire) if fire is not None else None
    Operation.objects.filter(pk=series.pk).update(next_run_at=fire, next_due_at=due)


def cancel_operation(operation: Operation, reason: str, actor: str) -> Operation:
    return request_state(operation, S.CANCELLED, reason, actor)


#: Devices a preview lists besides the count.
PREVIEW_SAMPLE = 10


def preview(tenant_id: int, raw_query: Any) -> tuple[int, list[Device]]:
    """How many devices a query picks, and the first few: ``POST /v0/operations/preview/`` and
    the console's form, so both answer the same and refuse the same queries."""
    query = DeviceQuery.parse(raw_query)
    query.check_references(tenant_id)
    devices = query.queryset(tenant_id)
    return devices.count(), list(devices.prefetch_related("groups").order_by("pk")[:PREVIEW_SAMPLE])


def rerun(
    operation: Operation, actor: str, requester: str = "", only: Iterable[str] = DEFAULT_RERUN_OUTCOMES
) -> Operation:
    """A new operation of the same type, arguments and rollout for exactly the devices whose
    commands ended as ``only`` says (``POST /v0/operations/{id}/rerun/``, the console's
    "Re-run failed devices"); it records ``rerun_of``.

    The devices are listed by id (``device_type: all``, so a device made inactive since is
    not silently left out); more than ``MAX_QUERY_DEVICES`` of them is refused, as the API
    refuses such a list. A snapshot: a re-run of a continuous operation takes no device later.
    """
    only = list(dict.fromkeys(only))
    unknown = [outcome for outcome in only if outcome not in RERUN_OUTCOMES]
    if unknown or not only:
        raise DomainError(
            {"only": [f"must be a non-empty list out of {', '.join(RERUN_OUTCOMES)}; got {unknown or only}"]}
        )
    if operation.state not in TERMINAL_STATES:
        name = S(operation.state).name
        raise DomainError(
            {"state": [f"the operation is {name}; re-run it once it has finished"]},
            code="not_finished",
        )
    limit = int(settings.MAX_QUERY_DEVICES)
    devices = list(
        counting.ended_as(operation.commands.all(), only)
        .order_by("device_id")
        .values_list("device__device_id", flat=True)[: limit + 1]
    )
    if not devices:
        raise DomainError(
            {"only": [f"no command of the operation ended {' or '.join(only)}: there is nothing to re-run"]},
            code="nothing_to_retry",
        )
    if len(devices) > limit:
        raise DomainError(
            {
                "only": [
                    f"more than {limit} devices ended so (MAX_QUERY_DEVICES); "
                    "re-run them with groups or filters"
                ]
            }
        )
    data = {
        "operation_type": operation.operation_type,
        "schedule_type": ScheduleType.IMMEDIATE,
        "operation_device_query": {"devices": devices, "device_type": "all"},
        "arguments": operation.arguments,
        "rollout": operation.rollout,
    }
    return create_operation(operation.tenant_id, data, actor, requester, rerun_of=operation)
