"""Retention (docs/retention.md): expired operations go with their commands and history,
whole partitions where nothing alive shares them, in batches where something does; history,
internal commands, headless runs and maintenance executions expire too; 0 keeps everything;
``export_operations`` writes what goes; and a run racing devices' polls and reports loses
nothing alive and makes no device wait a second."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from commands import partitions
from commands.choices import CommandState
from commands.models import CommandHistory, CommandStatus
from commands.services import issue_internal_command
from maintenance.models import MaintenanceExecution
from maintenance.retention import purge_expired
from maintenance.services import create_job
from operations import headless
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import HeadlessOperation, Operation
from operations.models.headless import HeadlessStatus
from operations.services import create_operation
from tests.command_factories import run_in_threads
from tests.conftest import DeviceActor, Org, add_device

C = CommandState
S = OperationState


def aged_operation(
    org: Org, devices: Sequence[DeviceActor], days_ago: float, finished: bool = True
) -> Operation:
    """An operation created ``days_ago`` days ago (in that week's partition), fanned out, and
    if ``finished`` ended a day later."""
    created = timezone.now() - dt.timedelta(days=days_ago)
    partitions.make_ahead(created, weeks=0)
    operation = create_operation(
        org.tenant.pk,
        {
            "operation_type": "REBOOT",
            "operation_device_query": {"devices": [d.device.device_id for d in devices]},
        },
        "tests",
    )
    Operation.objects.filter(pk=operation.pk).update(created_at=created)
    fan_out(operation.pk)
    commands = CommandStatus.objects.filter(operation=operation)
    CommandHistory.objects.bulk_create(
        CommandHistory(command=command, from_state=C.QUEUED, to_state=C.INITIATED) for command in commands
    )
    CommandHistory.objects.filter(command__operation=operation).update(created_at=created)
    if finished:
        Operation.objects.filter(pk=operation.pk).update(
            state=S.SUCCESS, updated_at=created + dt.timedelta(days=1)
        )
    operation.refresh_from_db()
    return operation


def devices(org: Org, prefix: str, count: int) -> list[DeviceActor]:
    return [add_device(org.tenant, f"{prefix}-{i}") for i in range(count)]


def partition_names() -> list[str]:
    return [part.name for part in partitions.partitions(CommandStatus)]


def week_of(operation: Operation) -> str:
    return f"commands_commandstatus_p{partitions.week_start(operation.created_at):%Y%m%d}"


@pytest.mark.django_db
def test_an_expired_operation_goes_with_its_whole_partition(org: Org) -> None:
    # given an operation finished 199 days ago, alone in its week, and one running now
    expired = aged_operation(org, devices(org, "old", 3), days_ago=200)
    live = aged_operation(org, devices(org, "new", 2), days_ago=0, finished=False)
    assert week_of(expired) in partition_names()

    # when retention runs (90 days)
    removed = purge_expired()

    # then the week is dropped whole, with the operation's row; the running one is untouched
    assert removed["command_partitions"] == 1
    assert week_of(expired) not in partition_names()
    assert not Operation.objects.filter(pk=expired.pk).exists()
    assert not CommandStatus.objects.filter(operation_id=expired.pk).exists()
    assert CommandStatus.objects.filter(operation=live).count() == 2
    assert CommandHistory.objects.filter(command__operation=live).count() == 2


@pytest.mark.django_db
def test_a_week_shared_with_a_live_operation_stays_and_the_expired_rows_go_in_batches(
    org: Org, settings: Any
) -> None:
    # given, in one old week, an expired operation and one that still runs (history kept)
    settings.RETENTION_BATCH_SIZE = 2
    settings.COMMAND_HISTORY_RETENTION_DAYS = 0
    expired = aged_operation(org, devices(org, "old", 5), days_ago=150)
    running = aged_operation(org, devices(org, "run", 2), days_ago=150, finished=False)

    # when retention runs
    removed = purge_expired()

    # then the week stays; the expired operation's commands and history went by rows
    assert week_of(expired) in partition_names()
    assert removed["commands"] == 5
    assert removed["operations"] == 1
    assert not CommandHistory.objects.filter(command__operation_id=expired.pk).exists()
    assert not Operation.objects.filter(pk=expired.pk).exists()
    assert CommandStatus.objects.filter(operation=running).count() == 2
    assert CommandHistory.objects.filter(command__operation=running).count() == 2


@pytest.mark.django_db
def test_a_run_stops_after_its_batches_and_the_next_goes_on(org: Org, settings: Any) -> None:
    settings.RETENTION_BATCH_SIZE = 2
    settings.RETENTION_MAX_BATCHES = 1
    expired = aged_operation(org, devices(org, "old", 5), days_ago=150)
    aged_operation(org, devices(org, "run", 1), days_ago=150, finished=False)

    first = purge_expired()
    assert first["commands"] == 2
    assert Operation.objects.filter(pk=expired.pk).exists()  # commands are left: the row stays

    for _ in range(3):
        purge_expired()
    assert not Operation.objects.filter(pk=expired.pk).exists()


@pytest.mark.django_db
def test_what_has_not_expired_stays(org: Org) -> None:
    recent = aged_operation(org, devices(org, "a", 2), days_ago=30)
    unfinished = aged_operation(org, devices(org, "b", 2), days_ago=300, finished=False)

    purge_expired()

    assert CommandStatus.objects.filter(operation=recent).count() == 2
    assert CommandStatus.objects.filter(operation=unfinished).count() == 2
    assert week_of(unfinished) in partition_names()


@pytest.mark.django_db
def test_an_operation_whose_stop_is_still_moving_its_commands_stays(org: Org) -> None:
    stopping = aged_operation(org, devices(org, "a", 2), days_ago=200)
    Operation.objects.filter(pk=stopping.pk).update(stop_requested_at=stopping.updated_at)

    purge_expired()

    assert Operation.objects.filter(pk=stopping.pk).exists()
    assert CommandStatus.objects.filter(operation=stopping).count() == 2
    assert week_of(stopping) in partition_names()


@pytest.mark.django_db
def test_zero_keeps_everything(org: Org, settings: Any) -> None:
    settings.OPERATION_RETENTION_DAYS = 0
    settings.COMMAND_HISTORY_RETENTION_DAYS = 0
    expired = aged_operation(org, devices(org, "old", 2), days_ago=400)

    assert purge_expired() == {}

    assert CommandStatus.objects.filter(operation=expired).count() == 2
    assert CommandHistory.objects.filter(command__operation=expired).count() == 2


@pytest.mark.django_db
def test_history_older_than_its_retention_goes_whole_weeks_and_default_rows(org: Org, settings: Any) -> None:
    # given history of a running operation: rows of 100 days ago (a week of their own), of
    # ten years ago (the default partition) and of today; operations kept forever
    settings.OPERATION_RETENTION_DAYS = 0
    settings.COMMAND_HISTORY_RETENTION_DAYS = 60
    operation = aged_operation(org, devices(org, "a", 3), days_ago=0, finished=False)
    old, ancient, today = CommandHistory.objects.filter(command__operation=operation).order_by("id")
    partitions.make_ahead(timezone.now() - dt.timedelta(days=100), weeks=0)
    CommandHistory.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=100))
    CommandHistory.objects.filter(pk=ancient.pk).update(created_at=timezone.now() - dt.timedelta(days=3650))

    removed = purge_expired()

    assert removed == {"history_partitions": 1, "history": 1}
    assert list(CommandHistory.objects.values_list("pk", flat=True)) == [today.pk]
    assert CommandStatus.objects.filter(operation=operation).count() == 3


@pytest.mark.django_db
def test_internal_commands_headless_runs_and_maintenance_executions_expire(org: Org) -> None:
    # given an internal command, a headless run and a maintenance execution, each old and new
    device = add_device(org.tenant, "dev-1").device
    long_ago = timezone.now() - dt.timedelta(days=200)
    internal = [issue_internal_command(org.tenant.pk, device.pk, "PING", {}, f"ref:{n}") for n in range(2)]
    CommandStatus.objects.filter(pk__in=[c.pk for c in internal]).update(state=C.SUCCESS)
    CommandStatus.objects.filter(pk=internal[0].pk).update(created_on=long_ago)
    runs = [
        headless.create_operation(org.tenant.pk, device, "REBOOT", timezone.now(), {}, 1) for _ in range(2)
    ]
    HeadlessOperation.objects.filter(pk__in=[r.pk for r in runs]).update(status=HeadlessStatus.COMPLETED)
    HeadlessOperation.objects.filter(pk=runs[0].pk).update(updated_at=long_ago)
    job = create_job(org.tenant.pk, "0 0 3 * * ?")
    executions = [
        MaintenanceExecution.objects.create(
            job=job, scheduled_for=moment, started_at=moment, finished_at=moment, outcome="success"
        )
        for moment in (long_ago, timezone.now())
    ]

    # when retention runs
    removed = purge_expired()

    # then the old ones went and the new ones stayed
    assert removed["internal_commands"] == 1
    assert removed["headless_runs"] == 1
    assert removed["maintenance_executions"] == 1
    assert list(CommandStatus.objects.values_list("pk", flat=True)) == [internal[1].pk]
    assert list(HeadlessOperation.objects.values_list("pk", flat=True)) == [runs[1].pk]
    assert list(MaintenanceExecution.objects.values_list("pk", flat=True)) == [executions[1].pk]


@pytest.mark.django_db
def test_export_writes_the_operations_retention_would_remove(org: Org, tmp_path: Path) -> None:
    expired = aged_operation(org, devices(org, "old", 2), days_ago=200)
    aged_operation(org, devices(org, "new", 1), days_ago=10)
    out = tmp_path / "export.jsonl"

    call_command("export_operations", output=str(out))

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["operation", "command", "command"]
    assert lines[0]["id"] == str(expired.pk)
    assert lines[0]["state"] == "SUCCESS"
    assert lines[0]["counts"]["resolved_device_count"] == 2
    assert {line["device"] for line in lines[1:]} == {"old-0", "old-1"}
    assert {line["request"] for line in lines[1:]} == {str(expired.pk)}


@pytest.mark.django_db
def test_export_of_every_finished_operation_for_one_tenant(org: Org, other_org: Org, tmp_path: Path) -> None:
    mine = aged_operation(org, devices(org, "a", 1), days_ago=1)
    aged_operation(other_org, devices(other_org, "b", 1), days_ago=1)
    out = tmp_path / "export.jsonl"

    call_command("export_operations", older_than_days=0, tenant="acme", output=str(out))

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["type"], line.get("request", line["id"])) for line in lines] == [
        ("operation", str(mine.pk)),
        ("command", str(mine.pk)),
    ]


def bounded(request: Callable[[], Any]) -> Any:
    """Send a device's request on a connection that gives up after a second of waiting for
    a lock, so a request that would wait longer fails the test (a 500) instead of passing."""
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '1s'")
    return request()


def device_story(actor: DeviceActor) -> Callable[[], list[int]]:
    """Poll the inbox, then report the command handed out through to success."""

    def run() -> list[int]:
        polled = bounded(lambda: actor.api.get("/v2/command-inbox/", {"device_id": actor.device.device_id}))
        statuses = [polled.status_code]
        for command in polled.json()["content"]["results"]:
            for state in ("Command Acknowledged", "Command In Progress", "Command Success"):
                report = functools.partial(
                    actor.api.put, f"/commands/v0/status/{command['id']}/", {"state": state}
                )
                statuses.append(bounded(report).status_code)
        return statuses

    return run


@pytest.mark.django_db(transaction=True)
def test_a_retention_run_racing_polls_and_reports_loses_nothing_alive(org: Org, settings: Any) -> None:
    # given an expired operation alone in its week (a partition to drop), an expired one
    # sharing a week with a running one (rows to delete), and one running now
    settings.RETENTION_BATCH_SIZE = 1
    settings.COMMAND_HISTORY_RETENTION_DAYS = 0  # the running operations' history is counted
    alone = aged_operation(org, devices(org, "alone", 4), days_ago=300)
    shared = aged_operation(org, devices(org, "shared", 6), days_ago=200)
    old_running_devices = devices(org, "running", 4)
    old_running = aged_operation(org, old_running_devices, days_ago=200, finished=False)
    now_devices = devices(org, "now", 4)
    current = aged_operation(org, now_devices, days_ago=0, finished=False)
    live = [old_running, current]
    history_before = {op.pk: CommandHistory.objects.filter(command__operation=op).count() for op in live}

    # when retention runs while every device of the running operations polls and reports
    def retention() -> list[dict[str, int]]:
        return [purge_expired() for _ in range(4)]

    results = run_in_threads(
        [retention, *(device_story(actor) for actor in old_running_devices + now_devices)]
    )

    # then no device waited a second for a lock, and every request succeeded
    for statuses in results[1:]:
        assert statuses == [200, 200, 200, 200]
    # the expired went: one week dropped whole, the other operation row by row
    assert week_of(alone) not in partition_names()
    assert not Operation.objects.filter(pk__in=[alone.pk, shared.pk]).exists()
    assert not CommandStatus.objects.filter(operation_id__in=[alone.pk, shared.pk]).exists()
    # and nothing alive was lost: every command reported to success, with all its history
    for operation in live:
        commands = CommandStatus.objects.filter(operation=operation)
        assert sorted(commands.values_list("state", flat=True)) == [C.SUCCESS] * 4
        # the hand-out and three reports per command, after what was there before
        assert (
            CommandHistory.objects.filter(command__operation=operation).count()
            == history_before[operation.pk] + 4 * 4
        )
