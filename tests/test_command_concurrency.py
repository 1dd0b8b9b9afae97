"""Many devices reporting at once on one operation: the counters stay exact and the
operation completes once; a cancel racing with the reports leaves counters that agree
with the command rows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from commands import counting
from commands.choices import TERMINAL_STATES, CommandState
from commands.models import CommandHistory, CommandStatus
from operations.choices import OperationState
from operations.models import Operation
from operations.services import cancel_operation
from operations.stopping import stop_commands
from tests.command_factories import command_of, dispatched_operation, run_in_threads
from tests.conftest import DeviceActor, Org, add_device, add_devices
from tests.helpers import activity, stored_counts

pytestmark = pytest.mark.django_db(transaction=True)

C = CommandState
S = OperationState
DEVICES = 50
FAILING = frozenset(range(0, DEVICES, 7))  # every seventh device reports a failure


def reporter(actor: DeviceActor, command: CommandStatus, last: str) -> Callable[[], list[int]]:
    """One device's story through the API; stops at the first refusal (e.g. cancelled)."""

    def run() -> list[int]:
        statuses = []
        for state in ("Command Acknowledged", "Command In Progress", last):
            response = actor.api.put(f"/commands/v0/status/{command.pk}/", {"state": state})
            statuses.append(response.status_code)
            if response.status_code != 200:
                break
        return statuses

    return run


def test_fifty_devices_reporting_at_once_leave_exact_counters(org: Org) -> None:
    # given one operation dispatched to 50 devices
    devices = add_devices(org.tenant, DEVICES)
    operation = dispatched_operation(org.tenant, devices)
    commands = [command_of(operation, actor) for actor in devices]

    # when every device reports through the API at the same time
    results = run_in_threads(
        [
            reporter(actor, command, "Command Failure" if i in FAILING else "Command Success")
            for i, (actor, command) in enumerate(zip(devices, commands, strict=True))
        ]
    )

    # then every report was accepted
    assert results == [[200, 200, 200]] * DEVICES

    # and the counters are exact and match the rows
    got = stored_counts(operation)
    rows = CommandStatus.objects.filter(operation=operation)
    assert got["success_count"] == rows.filter(state=C.SUCCESS).count() == DEVICES - len(FAILING)
    assert got["failed_count"] == rows.filter(state=C.FAILURE).count() == len(FAILING)
    assert got["success_count"] + got["failed_count"] == DEVICES
    assert got == counting.recount(operation.pk)
    assert CommandHistory.objects.filter(command__operation=operation).count() == 3 * DEVICES

    # and the operation processed, completed and failed exactly once
    operation.refresh_from_db()
    assert operation.state == S.FAILURE
    names = activity(operation)
    assert (names.count("PROCESSING"), names.count("COMPLETED"), names.count("FAILURE")) == (1, 1, 1)


def test_fifty_devices_all_succeeding_at_once_make_one_success(org: Org) -> None:
    devices = add_devices(org.tenant, DEVICES)
    operation = dispatched_operation(org.tenant, devices)
    commands = [command_of(operation, actor) for actor in devices]

    run_in_threads(
        [
            reporter(actor, command, "Command Success")
            for actor, command in zip(devices, commands, strict=True)
        ]
    )

    operation.refresh_from_db()
    assert operation.state == S.SUCCESS
    assert stored_counts(operation)["success_count"] == DEVICES
    assert stored_counts(operation) == counting.recount(operation.pk)
    names = activity(operation)
    assert (names.count("COMPLETED"), names.count("SUCCESS")) == (1, 1)


def test_a_cancel_racing_with_reports_leaves_counters_that_match_the_rows(org: Org) -> None:
    # given one operation dispatched to 50 devices
    devices = add_devices(org.tenant, DEVICES)
    operation = dispatched_operation(org.tenant, devices)
    commands = [command_of(operation, actor) for actor in devices]

    def cancel() -> Any:
        return cancel_operation(Operation.objects.get(pk=operation.pk), "stop", "operator")

    # when the devices report while an operator cancels the operation
    work: list[Callable[[], Any]] = [
        reporter(actor, command, "Command Failure" if i in FAILING else "Command Success")
        for i, (actor, command) in enumerate(zip(devices, commands, strict=True))
    ]
    work.insert(DEVICES // 2, cancel)
    results = run_in_threads(work)

    # then no report failed other than by a refusal
    reports = [r for r in results if isinstance(r, list)]
    assert all(set(statuses) <= {200, 400} for statuses in reports), reports
    stop_commands(operation.pk)  # the stop's worker, after the answer

    # and the operation is cancelled, with counters that agree with the rows
    operation.refresh_from_db()
    assert operation.state == S.CANCELLED
    got = stored_counts(operation)
    assert got == counting.recount(operation.pk)
    rows = CommandStatus.objects.filter(operation=operation)
    finished = rows.filter(state__in=TERMINAL_STATES).count()
    assert (
        got["success_count"] + got["failed_count"] + got["dispatch_failed_count"] + got["cancelled_count"]
        == finished
    )
    assert got["cancelled_count"] == rows.filter(state=C.CANCELLED).count()
    assert activity(operation).count("CANCELLED") == 1
    assert "COMPLETED" not in activity(operation)


def test_a_command_locked_by_a_concurrent_mover_is_still_cancelled(org: Org) -> None:
    # given one queued command that another transaction holds locked for a moment
    device = add_device(org.tenant, "dev-1")
    operation = dispatched_operation(org.tenant, [device])
    command = command_of(operation, device)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with transaction.atomic():
            CommandStatus.objects.select_for_update().get(pk=command.pk)
            locked.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=lambda: run_in_threads([hold_lock]))
    holder.start()
    assert locked.wait(timeout=10)

    # when an operator cancels the operation meanwhile (the lock is released a second later)
    threading.Timer(1.0, release.set).start()
    cancel_operation(Operation.objects.get(pk=operation.pk), "stop", "operator")
    stop_commands(operation.pk)  # the stop's worker: a later pass takes the row once it is free
    release.set()
    holder.join(timeout=15)

    # then the command is cancelled too, and never handed out
    command.refresh_from_db()
    assert command.state == C.CANCELLED
    assert device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}).json()["content"]["results"] == []
