"""Stopping an operation (issue 17): the PUT answers with the new state before the commands
move; a worker moves them in bounded batches with exact counters at every step, whatever
reports race it; a lost stop is resumed by the sweep; sweeps leave a stopped operation's
commands alone (``operations/stopping.py``)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from commands import counting
from commands import services as command_services
from commands.choices import UNFINISHED_STATES, CommandState
from commands.models import CommandHistory, CommandStatus
from config.errors import DomainError
from inventory.services import bulk_import_devices
from operations import approvals, stopping
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation, request_state
from operations.sweeps import run_all
from tests.conftest import CeleryProcesses, Org, add_devices, purge_broker, wait_until
from tests.helpers import content

C = CommandState
S = OperationState
OPS = "/v0/operations/"


def fanned_out(org: Org, count: int, **data: Any) -> Operation:
    """An IMMEDIATE (or ``data``) operation fanned out to ``count`` new devices."""
    bulk_import_devices(org.tenant.pk, [{"device_id": f"s{i:05d}"} for i in range(count)])
    payload = {"operation_type": "WIPE", "operation_device_query": {"all": True}, **data}
    operation = create_operation(org.tenant.pk, payload, "tester")
    fan_out(operation.pk)
    operation.refresh_from_db()
    return operation


def stored(operation_id: Any) -> dict[str, int]:
    row = Operation.objects.get(pk=operation_id)
    return {name: getattr(row, name) for name in counting.COUNTERS}


def states(operation: Operation) -> set[int]:
    return set(CommandStatus.objects.filter(operation=operation).values_list("state", flat=True))


def unfinished(operation_id: Any) -> int:
    return CommandStatus.objects.filter(operation_id=operation_id, state__in=UNFINISHED_STATES).count()


@pytest.fixture(autouse=True)
def _no_approvals(org: Org) -> None:
    """These tests stop WIPEs under way: the tenant's approval policy, which holds a new WIPE
    for a second admin (tests/test_approvals.py), is cleared so that they start at once."""
    approvals.set_policy(org.tenant.pk, [], None, 72, "tests")


@pytest.fixture
def broker() -> Iterator[None]:
    """Stops send their task to this run's Redis, where no worker takes it (the test runs it)."""
    yield
    purge_broker()


def test_cancel_answers_with_the_new_state_before_the_commands_move(org: Org) -> None:
    # given an operation dispatched to 30 devices
    operation = fanned_out(org, 30)

    # when an operator cancels it
    answer = content(org.admin.put(f"{OPS}{operation.pk}/", {"state": "CANCELLED", "reason": "bad WIPE"}))

    # then it is CANCELLED at once, its commands not yet moved, and it says so
    assert answer["state"] == "CANCELLED" and answer["reason"] == "bad WIPE"
    assert answer["commands_stop"] == "in_progress"
    assert answer["operation_stats"]["device_operation_statuses_count"]["pending_device_count"] == 30
    assert unfinished(operation.pk) == 30
    # and a second stop is refused: it is final already
    again = org.admin.put(f"{OPS}{operation.pk}/", {"state": "TIMEOUT"})
    assert again.status_code == 400 and "state" in again.json()["errors"]

    # when the worker runs
    moved = stopping.stop_commands(operation.pk)

    # then every command is cancelled with the operator's reason, and the stop is done
    assert moved == 30 and unfinished(operation.pk) == 0
    reasons = set(CommandStatus.objects.filter(operation=operation).values_list("reason", flat=True))
    assert reasons == {"bad WIPE"}
    done = content(org.admin.get(f"{OPS}{operation.pk}/"))
    assert done["commands_stop"] == "done"
    assert done["operation_stats"]["device_operation_statuses_count"]["cancelled_device_count"] == 30
    assert stored(operation.pk) == counting.recount(operation.pk)
    # and a second message for the same stop finds nothing to do
    assert stopping.stop_commands(operation.pk) == 0


def test_a_poll_right_after_the_cancel_gets_none_of_its_commands(org: Org) -> None:
    # given three devices with a queued command each
    devices = add_devices(org.tenant, 3)
    query = {"devices": [d.device.device_id for d in devices]}
    operation = create_operation(
        org.tenant.pk, {"operation_type": "WIPE", "operation_device_query": query}, "tester"
    )
    fan_out(operation.pk)

    # when an operator cancels it, before its worker has moved a single command
    content(org.admin.put(f"{OPS}{operation.pk}/", {"state": "CANCELLED", "reason": "bad WIPE"}))
    assert unfinished(operation.pk) == 3

    # then no device gets its command any more (the hand-out checks the operation)
    for actor in devices:
        inbox = content(actor.api.get("/v2/command-inbox/", {"device_id": actor.device.device_id}))
        assert inbox["results"] == []
    assert states(operation) == {C.QUEUED}


def test_an_operation_never_stopped_says_so(org: Org) -> None:
    operation = fanned_out(org, 2)

    assert content(org.admin.get(f"{OPS}{operation.pk}/"))["commands_stop"] is None


def test_the_worker_moves_them_in_bounded_batches(org: Org, settings: Any) -> None:
    # given 50 commands and batches of 7
    settings.STOP_BATCH_SIZE = 7
    operation = fanned_out(org, 50)
    request_state(operation, S.CANCELLED, "stop", "operator")

    # when the worker runs
    stopping.stop_commands(operation.pk)

    # then each batch (one transaction, one timestamp on its history rows) moved at most 7
    batches = (
        CommandHistory.objects.filter(command__operation=operation, to_state=C.CANCELLED)
        .values_list("created_at", flat=True)
        .order_by("created_at")
    )
    sizes: dict[dt.datetime, int] = {}
    for at in batches:
        sizes[at] = sizes.get(at, 0) + 1
    assert sum(sizes.values()) == 50
    assert len(sizes) == 8 and max(sizes.values()) == 7
    assert stored(operation.pk) == counting.recount(operation.pk)


def test_timeout_moves_them_to_timeout_as_dispatch_failures(org: Org) -> None:
    operation = fanned_out(org, 12)

    answer = content(org.admin.put(f"{OPS}{operation.pk}/", {"state": "TIMEOUT", "reason": "too slow"}))
    stopping.stop_commands(operation.pk)

    assert answer["state"] == "TIMEOUT" and answer["commands_stop"] == "in_progress"
    assert states(operation) == {C.TIMEOUT}
    counts = stored(operation.pk)
    assert counts["dispatch_failed_count"] == 12 and counts == counting.recount(operation.pk)
    assert Operation.objects.get(pk=operation.pk).commands_stop == "done"


def test_stop_refuses_a_state_that_stops_nothing(org: Org) -> None:
    operation = fanned_out(org, 1)

    with pytest.raises(ValueError, match="not a stopping state"):
        stopping.stop(operation.pk, S.SCHEDULED, "", "operator")


def test_sweeps_leave_a_stopped_operations_commands_alone(org: Org, settings: Any) -> None:
    # given an operation whose commands were handed out long ago and never acknowledged
    operation = fanned_out(org, 4)
    long_ago = timezone.now() - dt.timedelta(seconds=settings.INBOX_REDELIVERY_SECONDS + 60)
    CommandStatus.objects.filter(operation=operation).update(state=C.INITIATED, delivered_at=long_ago)
    # and that was cancelled, its worker not yet run
    request_state(operation, S.CANCELLED, "stop", "operator")

    # when the sweeps run
    result = run_all()

    # then none of its commands was queued again (or timed out) for another delivery
    assert result["redelivery"] == {"requeued": 0, "timed_out": 0}
    assert states(operation) == {C.INITIATED}
    # and the stop then cancels them all
    stopping.stop_commands(operation.pk)
    assert states(operation) == {C.CANCELLED}
    assert stored(operation.pk) == counting.recount(operation.pk)


def test_a_window_of_a_stopped_operation_does_not_open(org: Org) -> None:
    # given a WINDOW operation whose commands wait, Scheduled, and that is cancelled
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    args = {"start_datetime": start.isoformat(), "end_datetime": (start + dt.timedelta(hours=2)).isoformat()}
    operation = fanned_out(org, 3, schedule_type="WINDOW", schedule_args=args)
    assert states(operation) == {C.SCHEDULED}
    request_state(operation, S.CANCELLED, "stop", "operator")

    # when its window's time comes before the worker ran
    due = timezone.now() - dt.timedelta(minutes=1)
    CommandStatus.objects.filter(operation=operation).update(not_before=due)
    result = run_all()

    # then nothing of it is released
    assert result["opened"] == 0
    assert states(operation) == {C.SCHEDULED}
    stopping.stop_commands(operation.pk)
    assert unfinished(operation.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_reports_racing_the_batches_settle_exactly(org: Org, settings: Any, broker: None) -> None:
    """Devices report (through the one service, as the API does) while the worker's batches
    run; an observer reads the counters and the rows in one snapshot, again and again. Every
    snapshot agrees, a command reported Success before its batch came stays Success, and at
    the end nothing is left unfinished."""
    # given 300 commands, batches of 20, and the operation cancelled
    settings.STOP_BATCH_SIZE = 20
    operation = fanned_out(org, 300)
    rows = CommandStatus.objects.filter(operation=operation).order_by("-id")
    commands = list(rows.values_list("pk", flat=True))
    request_state(operation, S.CANCELLED, "stop", "operator")
    succeeded: list[int] = []
    refused: list[int] = []
    disagreements: list[tuple[dict[str, int], dict[str, int]]] = []
    snapshots = 0
    done = threading.Event()

    def report_all(share: list[int]) -> None:
        try:
            for pk in share:  # from the last key down, towards the batches coming up
                try:
                    command_services.report(pk, C.SUCCESS, actor="device")
                    succeeded.append(pk)
                except DomainError:
                    refused.append(pk)
        finally:
            connection.close()

    def observe() -> None:
        nonlocal snapshots
        try:
            while not done.is_set():
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    counts = stored(operation.pk)
                    truth = counting.recount(operation.pk)
                if counts != truth:
                    disagreements.append((counts, truth))
                snapshots += 1
        finally:
            connection.close()

    def work() -> None:
        try:
            stopping.stop_commands(operation.pk)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=report_all, args=(commands[0::2],)),
        threading.Thread(target=report_all, args=(commands[1::2],)),
        threading.Thread(target=work),
    ]
    watcher = threading.Thread(target=observe)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    watcher.join(timeout=30)

    # then every snapshot agreed with the rows, and so does the end
    assert snapshots > 0 and disagreements == []
    assert len(succeeded) + len(refused) == 300
    assert unfinished(operation.pk) == 0
    states = dict(CommandStatus.objects.filter(operation=operation).values_list("pk", "state"))
    assert all(states[pk] == C.SUCCESS for pk in succeeded)
    assert all(states[pk] == C.CANCELLED for pk in refused)
    final = stored(operation.pk)
    assert final == counting.recount(operation.pk)
    assert final["success_count"] == len(succeeded) and final["cancelled_count"] == len(refused)
    assert Operation.objects.get(pk=operation.pk).state == S.CANCELLED


@pytest.mark.e2e
def test_a_lost_stop_is_resumed_by_the_sweep(org: Org, celery_processes: CeleryProcesses) -> None:
    # given an operation cancelled whose worker message was lost (the broker purged)
    operation = fanned_out(org, 40)
    request_state(operation, S.CANCELLED, "stop", "operator")
    purge_broker()
    celery_processes.worker()
    assert unfinished(operation.pk) == 40

    # when the sweep looks after the stop has waited long enough
    sent = stopping.resume_stops(now=timezone.now() + dt.timedelta(hours=1))

    # then it sends it again, and a worker finishes it with exact counters
    assert sent == 1
    wait_until(lambda: Operation.objects.get(pk=operation.pk).commands_stop == "done", what="the stop done")
    assert unfinished(operation.pk) == 0
    assert stored(operation.pk) == counting.recount(operation.pk)
    # and a finished stop is not sent again
    assert stopping.resume_stops(now=timezone.now() + dt.timedelta(hours=1)) == 0


@pytest.mark.e2e
def test_a_cancel_through_the_api_is_finished_by_a_real_worker(
    org: Org, celery_processes: CeleryProcesses
) -> None:
    operation = fanned_out(org, 60)
    celery_processes.worker()

    answer = content(org.admin.put(f"{OPS}{operation.pk}/", {"state": "CANCELLED"}))

    assert answer["state"] == "CANCELLED"
    wait_until(lambda: Operation.objects.get(pk=operation.pk).commands_stop == "done", what="the stop done")
    assert stored(operation.pk)["cancelled_count"] == 60 == counting.recount(operation.pk)["cancelled_count"]
