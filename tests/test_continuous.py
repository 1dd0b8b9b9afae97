"""Continuous operations (contract section 12): devices that come to match later join, once each.

The in-process tests call the look (``operations.continuous.evaluate``) themselves, as the task
would; the end-to-end ones run a real worker and beat and let a device write's nudge do it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from commands import counting
from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import report
from inventory.models import Device, Group
from inventory.services import bulk_import_devices, create_device, update_device
from operations import continuous
from operations.choices import OperationState, TargetSelection
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation
from tests.command_factories import run_in_threads
from tests.conftest import CeleryProcesses, Org, wait_until
from tests.helpers import content, error, stored_counts

S = OperationState
OPERATIONS = "/v0/operations/"
#: Committed writes, as in production: a look tells changes apart by the transactions that made
#: them (``inventory.changes``), so the device writes and the looks must not share one.
pytestmark = pytest.mark.django_db(transaction=True)


def continuous_operation(org: Org, query: dict[str, Any], **data: Any) -> Operation:
    """A CONTINUOUS operation, fanned out (DISPATCHED, or SCHEDULED for a window)."""
    operation = create_operation(
        org.tenant.pk,
        {
            "operation_type": "INSTALL_APP",
            "target_selection": TargetSelection.CONTINUOUS,
            "operation_device_query": query,
            "arguments": {"package": "com.example.kiosk"},
            **data,
        },
        "tester",
    )
    fan_out(operation.pk)
    operation.refresh_from_db()
    return operation


def devices_of(operation: Operation) -> list[str]:
    return sorted(
        CommandStatus.objects.filter(operation=operation).values_list("device__device_id", flat=True)
    )


def finish_all(operation: Operation, target: CommandState = CommandState.SUCCESS) -> None:
    for command in CommandStatus.objects.filter(operation=operation):
        for step in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS):
            command, _ = report(command, step, actor="device")
        report(command, target, actor="device")


@pytest.mark.parametrize("small_change", [10_000, 0], ids=["by key", "in key chunks"])
def test_devices_that_come_to_match_later_join_once_each(org: Org, settings: Any, small_change: int) -> None:
    settings.CONTINUOUS_SMALL_CHANGE = small_change
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}, {"device_id": "p-0"}])
    group = Group.objects.create(tenant=org.tenant, name="stores")
    operation = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    grouped = continuous_operation(org, {"groups": ["stores"]})
    android = continuous_operation(org, {"filters": {"os": "android"}})
    assert operation.state == S.DISPATCHED and devices_of(operation) == ["k-0"]
    assert grouped.state == S.DISPATCHED and grouped.resolved_count == 0  # waits: no FAILURE

    create_device(org.tenant.pk, {"device_id": "k-1", "tags": ["kiosk"]})  # created
    bulk_import_devices(org.tenant.pk, [{"device_id": f"k-b{i}", "tags": ["kiosk"]} for i in range(3)])
    update_device(Device.objects.get(device_id="p-0"), {"tags": ["kiosk"]})  # tagged
    inactive, _ = create_device(org.tenant.pk, {"device_id": "k-off", "tags": ["kiosk"], "state": "inactive"})
    update_device(Device.objects.get(device_id="p-0"), {"groups": [str(group.pk)]})  # grouped
    bulk_import_devices(org.tenant.pk, [{"device_id": "g-1", "groups": ["stores"]}])  # imported into a group
    update_device(Device.objects.get(device_id="k-0"), {"os": "android"})  # a filtered field changed

    for each in (operation, grouped, android):
        continuous.evaluate(each.pk)
        continuous.evaluate(each.pk)  # a repeated look writes nothing twice
    assert devices_of(operation) == ["k-0", "k-1", "k-b0", "k-b1", "k-b2", "p-0"]
    assert devices_of(grouped) == ["g-1", "p-0"]
    assert devices_of(android) == ["k-0"]

    update_device(inactive, {"state": "active"})  # re-activated
    continuous.evaluate(operation.pk)
    assert "k-off" in devices_of(operation)

    operation.refresh_from_db()
    assert operation.resolved_count == operation.dispatched_count == 7 == len(devices_of(operation))
    assert stored_counts(operation) == counting.recount(operation.pk)  # the counters agree with the rows
    assert set(CommandStatus.objects.filter(operation=operation).values_list("state", flat=True)) == {
        CommandState.QUEUED
    }
    assert operation.state == S.DISPATCHED  # open: it does not finish by itself


def test_a_device_that_leaves_keeps_its_command_and_does_not_get_a_second(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}])
    operation = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    device = Device.objects.get(device_id="k-0")

    update_device(device, {"tags": []})
    continuous.evaluate(operation.pk)
    update_device(device, {"tags": ["kiosk"]})
    continuous.evaluate(operation.pk)

    assert devices_of(operation) == ["k-0"]
    operation.refresh_from_db()
    assert operation.resolved_count == 1


def test_finished_commands_do_not_complete_an_open_operation_but_closing_does(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"k-{i}", "tags": ["kiosk"]} for i in range(2)])
    operation = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    finish_all(operation)
    operation.refresh_from_db()
    assert operation.state == S.PROCESSING  # every command finished, yet open

    answer = content(
        org.operator.put(f"{OPERATIONS}{operation.pk}/", {"state": "COMPLETED", "reason": "done"})
    )
    create_device(org.tenant.pk, {"device_id": "k-late", "tags": ["kiosk"]})
    continuous.evaluate(operation.pk)

    operation.refresh_from_db()
    assert answer["continuous_closed_at"] is not None
    assert operation.state == S.SUCCESS and devices_of(operation) == ["k-0", "k-1"]
    refused = error(
        org.operator.put(f"{OPERATIONS}{operation.pk}/", {"state": "COMPLETED"}), 400, "invalid_transition"
    )
    assert "state" in refused["errors"]


def test_closing_waits_for_the_commands_and_none_joins_meanwhile(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}])
    operation = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})

    content(org.operator.put(f"{OPERATIONS}{operation.pk}/", {"state": "COMPLETED"}))
    create_device(org.tenant.pk, {"device_id": "k-1", "tags": ["kiosk"]})
    assert continuous.evaluate(operation.pk) == 0
    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED  # its command is still out
    finish_all(operation, CommandState.FAILURE)

    operation.refresh_from_db()
    assert operation.state == S.FAILURE and devices_of(operation) == ["k-0"]


def test_closing_one_no_device_joined_fails_it_and_a_snapshot_cannot_be_closed(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": "d-0"}])
    empty = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    content(org.operator.put(f"{OPERATIONS}{empty.pk}/", {"state": "COMPLETED"}))
    empty.refresh_from_db()
    assert empty.state == S.FAILURE and empty.reason == "closed before any device joined"

    snapshot = create_operation(
        org.tenant.pk, {"operation_type": "REBOOT", "operation_device_query": {"all": True}}, "tester"
    )
    refused = error(
        org.operator.put(f"{OPERATIONS}{snapshot.pk}/", {"state": "COMPLETED"}), 400, "invalid_transition"
    )
    assert "CONTINUOUS" in refused["errors"]["state"][0]


def test_end_datetime_closes_it(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}])
    end = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    created = content(
        org.operator.post(
            OPERATIONS,
            {
                "operation_type": "REBOOT",
                "target_selection": "CONTINUOUS",
                "operation_device_query": {"filters": {"tags__contains": ["kiosk"]}},
                "schedule_args": {"end_datetime": end},
            },
        ),
        201,
    )
    assert created["target_selection"] == "CONTINUOUS" and created["schedule_args"]["end_datetime"] == end
    fan_out(created["id"])
    Operation.objects.filter(pk=created["id"]).update(continuous_until=timezone.now())  # the hour passed

    create_device(org.tenant.pk, {"device_id": "k-1", "tags": ["kiosk"]})
    assert continuous.evaluate(created["id"]) == 0  # past its end, before the sweep closes it
    assert continuous.sweep()["closed"] == 1

    operation = Operation.objects.get(pk=created["id"])
    assert operation.continuous_closed_at is not None and devices_of(operation) == ["k-0"]
    assert "end_datetime passed" in operation.reason


def test_cancel_and_pause_stop_joining(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}])
    cancelled = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    paused = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    content(org.operator.put(f"{OPERATIONS}{cancelled.pk}/", {"state": "CANCELLED"}))
    content(org.operator.put(f"{OPERATIONS}{paused.pk}/", {"state": "PAUSED"}))

    create_device(org.tenant.pk, {"device_id": "k-1", "tags": ["kiosk"]})
    assert continuous.evaluate(cancelled.pk) == 0 and continuous.evaluate(paused.pk) == 0
    content(org.operator.put(f"{OPERATIONS}{paused.pk}/", {"state": "RESUMED"}))
    continuous.evaluate(paused.pk)  # catches up from its watermark

    assert devices_of(cancelled) == ["k-0"] and devices_of(paused) == ["k-0", "k-1"]


def test_rollout_knobs_apply_and_waves_are_refused(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}])
    rollout = {"max_per_minute": 10, "retries": [{"failure_type": "TIMED_OUT", "max_attempts": 3}]}
    operation = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}}, rollout=rollout)
    create_device(org.tenant.pk, {"device_id": "k-1", "tags": ["kiosk"]})
    continuous.evaluate(operation.pk)

    joined = CommandStatus.objects.get(operation=operation, device__device_id="k-1")
    assert joined.max_attempts_on_timeout == 3 and joined.wave == 1
    body = {
        "operation_type": "REBOOT",
        "target_selection": "CONTINUOUS",
        "operation_device_query": {"all": True},
        "rollout": {"waves": [10, 100]},
    }
    refused = error(org.operator.post(OPERATIONS, body), 400, "invalid_rollout")
    assert list(refused["errors"]) == ["rollout.waves"]
    bad = error(
        org.operator.post(OPERATIONS, {**body, "rollout": None, "target_selection": "SOMETIMES"}), 400
    )
    assert "target_selection" in bad["errors"]


def test_a_window_operation_takes_joined_devices_into_its_window(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}])
    start = timezone.now() + dt.timedelta(days=1)
    args = {"start_datetime": start.isoformat(), "end_datetime": (start + dt.timedelta(hours=2)).isoformat()}
    created = content(
        org.operator.post(
            OPERATIONS,
            {
                "operation_type": "REBOOT",
                "target_selection": "CONTINUOUS",
                "schedule_type": "WINDOW",
                "schedule_args": args,
                "operation_device_query": {"filters": {"tags__contains": ["kiosk"]}},
            },
        ),
        201,
    )
    fan_out(created["id"])
    create_device(org.tenant.pk, {"device_id": "k-1", "tags": ["kiosk"]})
    continuous.evaluate(created["id"])

    operation = Operation.objects.get(pk=created["id"])
    assert operation.state == S.SCHEDULED and operation.continuous_until is not None
    states = set(CommandStatus.objects.filter(operation=operation).values_list("state", flat=True))
    assert devices_of(operation) == ["k-0", "k-1"] and states == {CommandState.SCHEDULED}
    assert operation.dispatched_count == 0 and operation.resolved_count == 2


def test_two_workers_looking_at_the_same_changes_write_one_command_each(settings: Any) -> None:
    from tests.conftest import make_org

    settings.FANOUT_CHUNK_SIZE = 7
    org = make_org("acme")
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}])
    operation = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    bulk_import_devices(org.tenant.pk, [{"device_id": f"k-{i:02d}", "tags": ["kiosk"]} for i in range(1, 60)])
    query_devices = Device.objects.filter(tenant=org.tenant, tags__contains=["kiosk"])

    def look() -> int:
        return continuous.evaluate(operation.pk)

    def write_unlocked() -> int | None:
        """Past the lock, as two looks whose locks did not meet would: the row constraint holds."""
        return continuous.write_joined(Operation.objects.get(pk=operation.pk), query_devices)

    results = run_in_threads([look, look, write_unlocked, write_unlocked])

    operation.refresh_from_db()
    assert len(devices_of(operation)) == len(set(devices_of(operation))) == 60
    assert operation.resolved_count == operation.dispatched_count == 60
    assert sum(result or 0 for result in results) == 59
    connections.close_all()


def test_a_look_that_crashes_between_chunks_resumes_without_a_duplicate(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import make_org

    settings.FANOUT_CHUNK_SIZE = 10
    settings.CONTINUOUS_SMALL_CHANGE = 5  # a large change: read in key chunks over the change
    org = make_org("acme")
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}])
    operation = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    watermark = operation.continuous_watermark
    bulk_import_devices(org.tenant.pk, [{"device_id": f"k-{i:02d}", "tags": ["kiosk"]} for i in range(1, 35)])

    real_insert = continuous._insert_chunk
    calls = {"n": 0}

    def crash_on_second_chunk(*args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed between chunks")
        return real_insert(*args, **kwargs)

    monkeypatch.setattr(continuous, "_insert_chunk", crash_on_second_chunk)
    with pytest.raises(RuntimeError):
        continuous.evaluate(operation.pk)
    operation.refresh_from_db()
    assert 0 < operation.resolved_count < 35
    assert operation.continuous_watermark == watermark  # not raised: the look was not complete

    monkeypatch.setattr(continuous, "_insert_chunk", real_insert)
    continuous.evaluate(operation.pk)

    operation.refresh_from_db()
    assert len(devices_of(operation)) == len(set(devices_of(operation))) == 35
    assert operation.resolved_count == operation.dispatched_count == 35
    assert operation.continuous_watermark != watermark  # moved on once the look was complete


def test_end_to_end_devices_join_through_the_worker_and_none_after_completed(
    celery_processes: CeleryProcesses,
) -> None:
    """A worker and beat: the device writes' nudges (and the sweep) do the looking."""
    from tests.conftest import make_org

    celery_processes.worker()
    celery_processes.beat()
    org = make_org("acme")
    content(org.admin.post("/v0/groups/", {"name": "stores"}), 201)
    bulk_import_devices(org.tenant.pk, [{"device_id": "k-0", "tags": ["kiosk"]}, {"device_id": "plain"}])
    body = {"operation_type": "REBOOT", "target_selection": "CONTINUOUS"}
    kiosks = content(
        org.operator.post(
            OPERATIONS, {**body, "operation_device_query": {"filters": {"tags__contains": ["kiosk"]}}}
        ),
        201,
    )
    stores = content(
        org.operator.post(OPERATIONS, {**body, "operation_device_query": {"groups": ["stores"]}}), 201
    )
    kiosk_op, store_op = Operation.objects.get(pk=kiosks["id"]), Operation.objects.get(pk=stores["id"])
    wait_until(lambda: devices_of(kiosk_op) == ["k-0"], what="the first fan-out")
    wait_until(lambda: Operation.objects.get(pk=store_op.pk).state == S.DISPATCHED, what="the empty fan-out")

    content(org.admin.post("/v0/devices/", {"id": "k-1", "tags": ["kiosk"]}), 201)  # created
    content(
        org.admin.post("/v0/devices/bulk/", [{"id": f"k-b{i}", "tags": ["kiosk"]} for i in range(3)]), 201
    )
    content(
        org.admin.patch("/v0/devices/plain/", {"tags": ["kiosk"], "groups": ["stores"]})
    )  # tagged, grouped
    wait_until(
        lambda: devices_of(kiosk_op) == ["k-0", "k-1", "k-b0", "k-b1", "k-b2", "plain"],
        what="created, imported and tagged devices joining",
    )
    wait_until(lambda: devices_of(store_op) == ["plain"], what="the grouped device joining")

    content(org.operator.put(f"{OPERATIONS}{kiosk_op.pk}/", {"state": "COMPLETED"}))
    content(org.admin.post("/v0/devices/", {"id": "k-late", "tags": ["kiosk"], "groups": ["stores"]}), 201)
    # The open one takes the late device: the nudge of that write has run; the closed one took none.
    wait_until(lambda: "k-late" in devices_of(store_op), what="the open operation taking the late device")
    assert "k-late" not in devices_of(kiosk_op)
    kiosk_op.refresh_from_db()
    assert kiosk_op.resolved_count == 6 and kiosk_op.continuous_closed_at is not None


def test_a_recurring_series_cannot_be_continuous(org: Org) -> None:
    """Review of the merges: the series row itself became a live continuous operation, its
    commands handed out at once, outside any run's window."""
    body = {
        "operation_type": "REBOOT",
        "target_selection": "CONTINUOUS",
        "schedule_type": "RECURRING",
        "schedule_args": {"time_expression": "0 0 2 * * ?"},
        "operation_device_query": {"all": True},
    }

    refused = error(org.operator.post("/v0/operations/", body), 400, "invalid_schedule")

    assert "target_selection" in refused["errors"]
    assert not Operation.objects.exists()


def test_one_closed_with_no_device_while_paused_fails_once_resumed(org: Org) -> None:
    """Review of the merges: closed while PAUSED, with no device, then RESUMED, it went back to
    DISPATCHED and stayed there (nothing finishes an operation with no command). The sweep
    fails it as closing it would have."""
    bulk_import_devices(org.tenant.pk, [{"device_id": "d-0"}])
    empty = continuous_operation(org, {"filters": {"tags__contains": ["kiosk"]}})
    url = f"{OPERATIONS}{empty.pk}/"
    content(org.operator.put(url, {"state": "PAUSED"}))
    content(org.operator.put(url, {"state": "COMPLETED"}))
    content(org.operator.put(url, {"state": "RESUMED"}))
    empty.refresh_from_db()
    assert empty.continuous_closed_at is not None and empty.state == S.DISPATCHED

    continuous.sweep()

    empty.refresh_from_db()
    assert empty.state == S.FAILURE and empty.reason == "closed before any device joined"
