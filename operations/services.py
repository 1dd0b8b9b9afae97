"""What the system does with operations; called by the API, the admin and the tasks."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from commands.choices import UNFINISHED_STATES, CommandState
from commands.models import CommandStatus
from commands.services import move_and_settle
from commands.sweeps import reschedule
from operations import progress
from operations.choices import TERMINAL_STATES, OperationState, ScheduleType, can_move
from operations.device_query import DeviceQuery
from operations.models import Operation

S = OperationState


def create_operation(tenant_id: int, data: dict[str, Any], actor: str) -> Operation:
    """Store the operation in CREATED and hand the fan-out to a worker after commit.

    The query is checked here (shape, and that listed devices and groups exist) so a
    mistake is a 400 now, not a FAILURE later; resolving it is the worker's job.
    """
    query = DeviceQuery.parse(data["operation_device_query"])
    query.check_references(tenant_id)
    with transaction.atomic():
        operation = Operation.objects.create(
            tenant_id=tenant_id,
            operation_type=data["operation_type"],
            schedule_type=data.get("schedule_type", ScheduleType.IMMEDIATE),
            schedule_args=data.get("schedule_args") or {},
            device_query=query.as_json(),
            arguments=data.get("arguments") or {},
            created_by=actor,
            updated_by=actor,
        )
        progress.record_activity(operation.pk, S.CREATED, actor=actor)
        from operations.tasks import fan_out_operation

        transaction.on_commit(lambda: fan_out_operation.delay(str(operation.pk)))
    return operation


def request_state(operation: Operation, target: OperationState, reason: str, actor: str) -> Operation:
    """An operator's PUT: CANCELLED, TIMEOUT, FAILURE or SCHEDULED.

    Stopping moves every unfinished command in one set-based update: Command Cancelled
    for CANCELLED and FAILURE, Command TimeOut for TIMEOUT.
    """
    with transaction.atomic():
        _lock_unfinished_commands(operation)
        current = Operation.objects.select_for_update().get(pk=operation.pk)
        name = S(current.state).name
        if current.state in TERMINAL_STATES:
            raise ValidationError({"state": [f"the operation is already {name}, a final state"]})
        if target == S.SCHEDULED and current.schedule_type != ScheduleType.WINDOW:
            raise ValidationError({"state": ["only a WINDOW operation can go back to SCHEDULED"]})
        if not can_move(current.state, target):
            raise ValidationError({"state": [f"cannot move from {name} to {target.name}"]})
        progress.move(current.pk, target, reason, actor)
        commands = current.commands.all()
        if target == S.SCHEDULED:
            reschedule(commands.filter(state=CommandState.QUEUED), timezone.now(), reason or "rescheduled")
        else:
            command_target = CommandState.TIMEOUT if target == S.TIMEOUT else CommandState.CANCELLED
            move_and_settle(commands, command_target, reason or f"operation {target.name.lower()}", actor)
    current.refresh_from_db()
    return current


def _lock_unfinished_commands(operation: Operation) -> None:
    """Wait for, and lock, every unfinished command of the operation, in key order.

    The set move that follows skips rows locked by others (so sweeps never wait on each
    other); a cancel must not skip any. Reports lock a command and then its operation, so
    the commands are locked here before the operation row, in the same order, and the two
    can never deadlock.
    """
    if connection.vendor != "postgresql":
        return  # SQLite serialises writers; there is nothing to wait for
    table = CommandStatus._meta.db_table
    unfinished = [int(state) for state in UNFINISHED_STATES]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT id FROM {table} WHERE operation_id = %s AND state = ANY(%s) "
            "ORDER BY id FOR UPDATE) locked",
            [operation.pk, unfinished],
        )


def cancel_operation(operation: Operation, reason: str, actor: str) -> Operation:
    return request_state(operation, S.CANCELLED, reason, actor)
