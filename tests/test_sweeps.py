"""The periodic sweeps over command statuses (contract section 5): redelivery and its
limit, deadlines, windows opening and closing; each idempotent, and exact when two run
at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from commands import counting, sweeps
from commands.choices import CommandState
from commands.models import CommandHistory, CommandStatus
from operations import sweeps as operation_sweeps
from operations.choices import OperationState
from operations.models import Operation
from tests.command_factories import command_of, dispatched_operation, run_in_threads
from tests.conftest import DeviceActor, Org, add_devices
from tests.helpers import activity, iso, poll, stored_counts

C = CommandState
S = OperationState


def assert_counters(operation: Operation, **expected: int) -> None:
    """The counters are exactly ``expected`` (others zero) and agree with the command rows."""
    got = stored_counts(operation)
    assert got == {name: expected.get(name, 0) for name in counting.COUNTERS}
    assert got == counting.recount(operation.pk)


def states(operation: Operation) -> list[int]:
    return list(
        CommandStatus.objects.filter(operation=operation).order_by("id").values_list("state", flat=True)
    )


def stale(seconds: int = 1) -> dt.datetime:
    """A moment when everything handed out until now is past the redelivery timeout."""
    return timezone.now() + dt.timedelta(seconds=settings.INBOX_REDELIVERY_SECONDS + seconds)


def window_operation(org: Org, devices: list[DeviceActor]) -> tuple[Operation, dt.datetime, dt.datetime]:
    """A WINDOW operation open 10:00-12:00 UTC on three days, the first tomorrow.

    Returns it (SCHEDULED, its commands ``Command Scheduled``), the first opening and the end.
    """
    start = (timezone.now() + dt.timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    end = start + dt.timedelta(days=2, hours=2)
    operation = dispatched_operation(
        org.tenant,
        devices,
        schedule_type="WINDOW",
        schedule_args={"start_datetime": iso(start), "end_datetime": iso(end), "time_type": "console"},
    )
    return operation, start, end


# --- redelivery --------------------------------------------------------------------------------


def test_an_unacknowledged_command_is_handed_out_again(org: Org, device: DeviceActor) -> None:
    # given a command handed out and not acknowledged
    operation = dispatched_operation(org.tenant, [device])
    command = command_of(operation, device)
    assert poll(device) == [command.pk]

    # when the redelivery timeout has not passed yet, nothing moves
    assert sweeps.redeliver_unacknowledged(timezone.now()) == {"requeued": 0, "timed_out": 0}

    # when it has passed
    assert sweeps.redeliver_unacknowledged(stale()) == {"requeued": 1, "timed_out": 0}

    # then the command is queued again and the next poll hands it out a second time
    command.refresh_from_db()
    assert command.state == C.QUEUED
    assert poll(device) == [command.pk]
    command.refresh_from_db()
    assert (command.state, command.delivery_count) == (C.INITIATED, 2)
    moves = list(CommandHistory.objects.filter(command=command).values_list("from_state", "to_state"))
    assert moves == [(C.QUEUED, C.INITIATED), (C.INITIATED, C.QUEUED), (C.QUEUED, C.INITIATED)]
    assert_counters(operation, resolved_count=1, dispatched_count=1)


def test_an_acknowledged_command_is_not_redelivered(org: Org, device: DeviceActor) -> None:
    operation = dispatched_operation(org.tenant, [device])
    command = command_of(operation, device)
    poll(device)
    device.api.put(f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged"})

    assert sweeps.redeliver_unacknowledged(stale()) == {"requeued": 0, "timed_out": 0}

    command.refresh_from_db()
    assert command.state == C.ACKNOWLEDGED


def test_after_the_last_delivery_the_command_times_out(org: Org, device: DeviceActor, settings: Any) -> None:
    # given at most two deliveries, and a command handed out twice without an acknowledgement
    settings.INBOX_MAX_DELIVERIES = 2
    operation = dispatched_operation(org.tenant, [device])
    command = command_of(operation, device)
    poll(device)
    assert sweeps.redeliver_unacknowledged(stale()) == {"requeued": 1, "timed_out": 0}
    poll(device)

    # when the sweep finds it unacknowledged again
    assert sweeps.redeliver_unacknowledged(stale()) == {"requeued": 0, "timed_out": 1}

    # then it timed out undelivered: a dispatch failure, and the operation is finished
    command.refresh_from_db()
    assert (command.state, command.delivery_count) == (C.TIMEOUT, 2)
    assert CommandHistory.objects.filter(command=command).latest("id").reason == (
        "not acknowledged after 2 deliveries"
    )
    assert poll(device) == []
    assert_counters(operation, resolved_count=1, dispatched_count=1, dispatch_failed_count=1)
    operation.refresh_from_db()
    assert operation.state == S.FAILURE
    assert activity(operation).count("COMPLETED") == 1


def test_redelivery_is_idempotent(org: Org, settings: Any) -> None:
    # given four commands handed out, two of them for the last time
    settings.INBOX_MAX_DELIVERIES = 2
    devices = add_devices(org.tenant, 4)
    operation = dispatched_operation(org.tenant, devices)
    for actor in devices:
        poll(actor)
    CommandStatus.objects.filter(device__in=[d.device for d in devices[:2]]).update(delivery_count=2)
    moment = stale()

    # when the sweep runs twice at the same moment
    first = sweeps.redeliver_unacknowledged(moment)
    history = CommandHistory.objects.count()
    second = sweeps.redeliver_unacknowledged(moment)

    # then the second run changed nothing
    assert first == {"requeued": 2, "timed_out": 2}
    assert second == {"requeued": 0, "timed_out": 0}
    assert CommandHistory.objects.count() == history
    assert_counters(operation, resolved_count=4, dispatched_count=4, dispatch_failed_count=2)


# --- deadlines ---------------------------------------------------------------------------------


def test_unfinished_commands_past_their_deadline_time_out(org: Org) -> None:
    # given three commands with a deadline in an hour: one queued, one acknowledged, one done
    queued, acked, done = add_devices(org.tenant, 3)
    operation = dispatched_operation(org.tenant, [queued, acked, done])
    CommandStatus.objects.filter(operation=operation).update(deadline=timezone.now() + dt.timedelta(hours=1))
    for actor, reports in (
        (acked, ["Command Acknowledged"]),
        (done, ["Command Acknowledged", "Command In Progress", "Command Success"]),
    ):
        command = command_of(operation, actor)
        for state in reports:
            assert actor.api.put(f"/commands/v0/status/{command.pk}/", {"state": state}).status_code == 200

    # when the sweep runs before the deadline, nothing moves
    assert sweeps.time_out_overdue(timezone.now()) == 0

    # when it runs after the deadline
    later = timezone.now() + dt.timedelta(hours=2)
    assert sweeps.time_out_overdue(later) == 2

    # then: undelivered is a dispatch failure, acknowledged a device failure, done stays done
    assert [command_of(operation, a).state for a in (queued, acked, done)] == [
        C.TIMEOUT,
        C.TIMEOUT,
        C.SUCCESS,
    ]
    assert_counters(
        operation,
        resolved_count=3,
        dispatched_count=3,
        success_count=1,
        failed_count=1,
        timed_out_count=1,  # the acknowledged one: a device failure that timed out
        dispatch_failed_count=1,
    )
    operation.refresh_from_db()
    assert operation.state == S.FAILURE

    # and a second run changes nothing
    history = CommandHistory.objects.count()
    assert sweeps.time_out_overdue(later) == 0
    assert CommandHistory.objects.count() == history


def test_commands_without_a_deadline_never_time_out(org: Org, device: DeviceActor) -> None:
    operation = dispatched_operation(org.tenant, [device])

    assert sweeps.time_out_overdue(timezone.now() + dt.timedelta(days=3650)) == 0

    assert states(operation) == [C.QUEUED]


# --- windows -----------------------------------------------------------------------------------


def test_a_window_operation_waits_scheduled_and_is_not_handed_out(org: Org, device: DeviceActor) -> None:
    operation, start, end = window_operation(org, [device])

    assert operation.state == S.SCHEDULED
    command = command_of(operation, device)
    assert (command.state, command.not_before, command.deadline) == (C.SCHEDULED, start, end)
    assert command.window_closes_at == start + dt.timedelta(hours=2)
    assert poll(device) == []
    assert operation_sweeps.open_windows(start - dt.timedelta(seconds=1)) == 0
    assert_counters(operation, resolved_count=1)


def test_opening_a_window_queues_and_dispatches_once(org: Org) -> None:
    # given a scheduled window operation on two devices
    devices = add_devices(org.tenant, 2)
    operation, start, _ = window_operation(org, devices)

    # when the window opens
    assert operation_sweeps.open_windows(start + dt.timedelta(minutes=1)) == 2

    # then the commands are queued, the operation dispatched, each device counted once
    assert states(operation) == [C.QUEUED, C.QUEUED]
    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED
    assert activity(operation)[-3:] == ["SCHEDULED", "DISPATCHING", "DISPATCHED"]
    assert_counters(operation, resolved_count=2, dispatched_count=2)
    assert [poll(actor) for actor in devices] == [[command_of(operation, a).pk] for a in devices]

    # and a second run changes nothing
    assert operation_sweeps.open_windows(start + dt.timedelta(minutes=1)) == 0
    assert activity(operation).count("DISPATCHED") == 1
    assert_counters(operation, resolved_count=2, dispatched_count=2)


def test_a_closing_window_reschedules_then_times_out_after_the_last(org: Org) -> None:
    # given a window operation whose first window opened
    devices = add_devices(org.tenant, 2)
    operation, start, end = window_operation(org, devices)
    operation_sweeps.open_windows(start + dt.timedelta(minutes=1))

    # when the first window closes with the commands still queued
    closed = start + dt.timedelta(hours=2, minutes=1)
    assert operation_sweeps.close_windows(closed) == {"rescheduled": 2}

    # then they wait for the next day's window
    tomorrow = start + dt.timedelta(days=1)
    for command in CommandStatus.objects.filter(operation=operation):
        assert (command.state, command.not_before) == (C.SCHEDULED, tomorrow)
        assert command.window_closes_at == tomorrow + dt.timedelta(hours=2)
    assert operation_sweeps.close_windows(closed) == {}  # idempotent

    # when the next window opens, they are queued again but not counted twice
    assert operation_sweeps.open_windows(tomorrow + dt.timedelta(minutes=1)) == 2
    assert_counters(operation, resolved_count=2, dispatched_count=2)

    # when the last window (the third day's) closes with them still queued
    operation_sweeps.close_windows(tomorrow + dt.timedelta(hours=2, minutes=1))
    operation_sweeps.open_windows(end - dt.timedelta(minutes=30))
    assert operation_sweeps.close_windows(end + dt.timedelta(minutes=1)) == {"timed_out": 2}

    # then they time out undelivered and the operation fails
    assert states(operation) == [C.TIMEOUT, C.TIMEOUT]
    assert_counters(operation, resolved_count=2, dispatched_count=2, dispatch_failed_count=2)
    operation.refresh_from_db()
    assert operation.state == S.FAILURE
    assert activity(operation).count("COMPLETED") == 1


def test_a_delivered_command_is_not_rescheduled_when_its_window_closes(org: Org, device: DeviceActor) -> None:
    operation, start, _ = window_operation(org, [device])
    operation_sweeps.open_windows(start + dt.timedelta(minutes=1))
    assert len(poll(device)) == 1

    assert operation_sweeps.close_windows(start + dt.timedelta(hours=2, minutes=1)) == {}

    assert states(operation) == [C.INITIATED]


# --- two sweeps at once ------------------------------------------------------------------------


def _twice_at_once(sweep: Callable[[], Any]) -> list[Any]:
    return run_in_threads([sweep, sweep])


@pytest.mark.django_db(transaction=True)
def test_two_redelivery_sweeps_at_once_requeue_each_command_once(org: Org) -> None:
    # given 30 commands handed out and not acknowledged
    devices = add_devices(org.tenant, 30)
    operation = dispatched_operation(org.tenant, devices)
    for actor in devices:
        poll(actor)
    moment = stale()

    # when two sweeps run at once
    results = _twice_at_once(lambda: sweeps.redeliver_unacknowledged(moment))

    # then each command moved back exactly once
    assert sum(r["requeued"] for r in results) == 30
    assert sum(r["timed_out"] for r in results) == 0
    requeues = CommandHistory.objects.filter(command__operation=operation, to_state=C.QUEUED)
    assert requeues.count() == 30
    assert states(operation) == [C.QUEUED] * 30
    assert_counters(operation, resolved_count=30, dispatched_count=30)


@pytest.mark.django_db(transaction=True)
def test_two_redelivery_sweeps_at_once_time_out_each_command_once(org: Org, settings: Any) -> None:
    # given 30 commands handed out for the last time
    settings.INBOX_MAX_DELIVERIES = 1
    devices = add_devices(org.tenant, 30)
    operation = dispatched_operation(org.tenant, devices)
    for actor in devices:
        poll(actor)
    moment = stale()

    # when two sweeps run at once
    results = _twice_at_once(lambda: sweeps.redeliver_unacknowledged(moment))

    # then the counters are exact and the operation completed once
    assert sum(r["timed_out"] for r in results) == 30
    assert CommandHistory.objects.filter(command__operation=operation, to_state=C.TIMEOUT).count() == 30
    assert_counters(operation, resolved_count=30, dispatched_count=30, dispatch_failed_count=30)
    operation.refresh_from_db()
    assert operation.state == S.FAILURE
    assert activity(operation).count("COMPLETED") == 1
    assert activity(operation).count("FAILURE") == 1


@pytest.mark.django_db(transaction=True)
def test_two_deadline_sweeps_at_once_time_out_each_command_once(org: Org) -> None:
    devices = add_devices(org.tenant, 30)
    operation = dispatched_operation(org.tenant, devices)
    CommandStatus.objects.filter(operation=operation).update(deadline=timezone.now())
    later = timezone.now() + dt.timedelta(seconds=1)

    results = _twice_at_once(lambda: sweeps.time_out_overdue(later))

    assert sum(results) == 30
    assert CommandHistory.objects.filter(command__operation=operation).count() == 30
    assert_counters(operation, resolved_count=30, dispatched_count=30, dispatch_failed_count=30)
    assert activity(operation).count("COMPLETED") == 1


@pytest.mark.django_db(transaction=True)
def test_two_window_openings_at_once_dispatch_once(org: Org) -> None:
    # given a scheduled window operation on 30 devices
    devices = add_devices(org.tenant, 30)
    operation, start, _ = window_operation(org, devices)

    # when two sweeps open its window at once
    results = _twice_at_once(lambda: operation_sweeps.open_windows(start + dt.timedelta(minutes=1)))

    # then
    assert sum(results) == 30
    assert CommandHistory.objects.filter(command__operation=operation, to_state=C.QUEUED).count() == 30
    assert_counters(operation, resolved_count=30, dispatched_count=30)
    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED
    names = activity(operation)
    assert (names.count("DISPATCHING"), names.count("DISPATCHED")) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_two_window_closings_at_once_reschedule_once(org: Org) -> None:
    devices = add_devices(org.tenant, 30)
    operation, start, _ = window_operation(org, devices)
    operation_sweeps.open_windows(start + dt.timedelta(minutes=1))

    results = _twice_at_once(lambda: operation_sweeps.close_windows(start + dt.timedelta(hours=2, minutes=1)))

    assert sum(r.get("rescheduled", 0) for r in results) == 30
    assert CommandHistory.objects.filter(command__operation=operation, to_state=C.SCHEDULED).count() == 30
    assert states(operation) == [C.SCHEDULED] * 30
    assert_counters(operation, resolved_count=30, dispatched_count=30)


def test_an_operation_left_open_after_its_last_report_is_completed_by_the_sweep(org: Org) -> None:
    # given an operation whose counters say every device succeeded, left PROCESSING
    # (as a process dying between a report's statement and the state move would leave it)
    operation = Operation.objects.create(
        tenant=org.tenant,
        operation_type="REBOOT",
        device_query={"all": True},
        state=OperationState.PROCESSING,
        resolved_count=2,
        dispatched_count=2,
        success_count=2,
    )

    # when the sweep runs (twice: it is idempotent)
    assert operation_sweeps.complete_finished_operations() == 1
    assert operation_sweeps.complete_finished_operations() == 0

    # then it completed and succeeded
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCESS


# --- the sweeps' plans -------------------------------------------------------------------------


def test_the_window_close_reads_its_partial_index(org: Org, device: DeviceActor) -> None:
    """The close's statement finds queued commands past their close through the partial index
    ``commands_window_closes`` (issue 28), not by reading the table: with sequential scans
    priced out, as on a big table, the planner names that index; without it, it would walk
    another (the inbox's) or the whole table."""
    _, start, _ = window_operation(org, [device])
    operation_sweeps.open_windows(start + dt.timedelta(minutes=1))
    # beside 300 queued commands of an immediate operation, which have no close
    dispatched_operation(org.tenant, add_devices(org.tenant, 300))
    plans: list[str] = []

    def explain(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if "window_closes_at" in sql and CommandStatus._meta.db_table in sql and not many:
            execute(f"EXPLAIN {sql}", params, many, context)
            plans.append("\n".join(row[0] for row in context["cursor"].fetchall()))
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {CommandStatus._meta.db_table}")
        cursor.execute("SET LOCAL enable_seqscan = off")
    try:
        with connection.execute_wrapper(explain):
            moved = operation_sweeps.close_windows(start + dt.timedelta(hours=2, minutes=1))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = on")

    assert moved == {"rescheduled": 1}
    assert plans
    assert "_window_closes" in plans[0], plans[0]
