"""The fan-out: one command status per device, written as a set, idempotent and resumable."""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from commands.choices import CommandState
from commands.models import CommandStatus
from inventory.models import Device
from inventory.services import bulk_import_devices
from operations import fanout
from operations.choices import OperationState
from operations.models import Operation
from operations.services import cancel_operation, create_operation
from operations.stopping import stop_commands
from operations.sweeps import open_windows
from operations.tasks import recover_stuck_fan_outs
from operations.windows import LATEST
from tests.conftest import Org, make_org, purge_broker
from tests.helpers import activity

S = OperationState


def load_devices(org: Org, count: int, **fields: Any) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"d{i:05d}", **fields} for i in range(count)])


def new_operation(org: Org, query: dict[str, Any] | None = None, **data: Any) -> Operation:
    payload = {"operation_type": "INSTALL_APP", "operation_device_query": query or {"all": True}, **data}
    return create_operation(org.tenant.pk, payload, "tester")


def test_fan_out_writes_one_status_per_device_in_chunks(org: Org, settings: Any) -> None:
    settings.FANOUT_CHUNK_SIZE = 7  # several chunks out of 50 devices
    load_devices(org, 50)
    operation = new_operation(org, arguments={"package": "com.example"})

    fanout.fan_out(operation.pk)

    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED
    assert operation.resolved_count == operation.dispatched_count == 50
    commands = CommandStatus.objects.filter(operation=operation)
    assert commands.count() == 50
    assert set(commands.values_list("state", flat=True)) == {CommandState.QUEUED}
    assert commands.first().arguments == {"package": "com.example"}  # type: ignore[union-attr]
    assert activity(operation) == [
        "CREATED",
        "QUERY INITIATED",
        "QUERY RESOLVED",
        "DISPATCHING",
        "DISPATCHED",
    ]


def test_running_the_fan_out_again_changes_nothing(org: Org) -> None:
    load_devices(org, 20)
    operation = new_operation(org)
    fanout.fan_out(operation.pk)

    fanout.fan_out(operation.pk)  # a duplicated task message

    operation.refresh_from_db()
    assert CommandStatus.objects.filter(operation=operation).count() == 20
    assert operation.resolved_count == 20
    assert activity(operation).count("DISPATCHED") == 1


def test_a_crashed_fan_out_resumes_without_duplicates(
    org: Org, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.FANOUT_CHUNK_SIZE = 10
    load_devices(org, 30)
    operation = new_operation(org)
    real_insert = fanout._insert_chunk
    calls = {"n": 0}

    def crash_on_second_chunk(*args: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real_insert(*args)

    monkeypatch.setattr(fanout, "_insert_chunk", crash_on_second_chunk)
    with pytest.raises(RuntimeError):
        fanout.fan_out(operation.pk)
    operation.refresh_from_db()
    assert operation.state == S.RESOLVING and operation.resolved_count == 10

    monkeypatch.setattr(fanout, "_insert_chunk", real_insert)
    fanout.fan_out(operation.pk)  # the redelivered message

    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED
    assert operation.resolved_count == 30
    assert CommandStatus.objects.filter(operation=operation).count() == 30


def test_a_query_matching_nothing_fails_with_a_reason(org: Org) -> None:
    load_devices(org, 3, os="linux")
    operation = new_operation(org, {"filters": {"os": "android"}})

    fanout.fan_out(operation.pk)

    operation.refresh_from_db()
    assert operation.state == S.FAILURE
    assert operation.reason == "the device query matched no device"
    assert activity(operation)[-1] == "FAILURE"


def test_cancel_during_resolving_stops_the_fan_out(org: Org) -> None:
    load_devices(org, 5)
    operation = new_operation(org)
    Operation.objects.filter(pk=operation.pk).update(state=S.RESOLVING)
    cancel_operation(operation, "changed my mind", "tester")

    fanout.fan_out(operation.pk)

    operation.refresh_from_db()
    assert operation.state == S.CANCELLED
    assert not CommandStatus.objects.filter(operation=operation).exists()


def test_device_time_window_schedules_each_zone_at_its_own_instant(org: Org) -> None:
    bulk_import_devices(
        org.tenant.pk,
        [
            {"device_id": "tokyo", "timezone": "Asia/Tokyo"},
            {"device_id": "ny", "timezone": "America/New_York"},
        ],
    )
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).date()
    start = dt.datetime.combine(tomorrow, dt.time(2, 0), tzinfo=dt.UTC)
    args = {
        "start_datetime": start.isoformat(),
        "end_datetime": (start + dt.timedelta(hours=2)).isoformat(),
        "time_type": "device",
    }
    operation = new_operation(org, schedule_type="WINDOW", schedule_args=args)

    fanout.fan_out(operation.pk)

    operation.refresh_from_db()
    assert operation.state == S.SCHEDULED
    opens = dict(
        CommandStatus.objects.filter(operation=operation).values_list("device__device_id", "not_before")
    )
    assert opens["tokyo"] == start - dt.timedelta(hours=9)
    assert opens["ny"] == start + dt.timedelta(hours=5)
    assert opens["tokyo"] != opens["ny"]

    # When the sweep runs after Tokyo's window opened, only Tokyo's command is released.
    released = open_windows(now=opens["tokyo"] + dt.timedelta(minutes=1))

    assert released == 1
    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED
    assert operation.dispatched_count == 1
    states = dict(CommandStatus.objects.filter(operation=operation).values_list("device__device_id", "state"))
    assert states == {"tokyo": CommandState.QUEUED, "ny": CommandState.SCHEDULED}


def test_a_device_time_window_to_the_end_of_year_9999_opens_in_the_extreme_zones(org: Org) -> None:
    """Issue 12, item 1: at UTC-12 the wall clock 9999-12-31T23:59:59 is in year 10000 UTC; the
    fan-out raised ``OverflowError`` on every attempt and the operation stayed RESOLVING."""
    bulk_import_devices(
        org.tenant.pk,
        [
            {"device_id": "kiritimati", "timezone": "Pacific/Kiritimati"},  # UTC+14
            {"device_id": "baker", "timezone": "Etc/GMT+12"},  # UTC-12
        ],
    )
    args = {
        "start_datetime": "2020-01-01T02:00:00Z",
        "end_datetime": "9999-12-31T23:59:59Z",
        "time_type": "device",
    }
    operation = new_operation(org, schedule_type="WINDOW", schedule_args=args)

    fanout.fan_out(operation.pk)

    # The daily window is 02:00 to 23:59:59 in each device's zone: open now in one of them or not.
    operation.refresh_from_db()
    assert operation.state in (S.SCHEDULED, S.DISPATCHED), operation.reason
    commands = CommandStatus.objects.filter(operation=operation)
    assert commands.count() == operation.resolved_count == 2
    now = dt.datetime.now(dt.UTC)
    for command in commands:
        assert command.deadline == LATEST  # the window's end, as late as every zone can read
        assert command.not_before is not None and command.window_closes_at is not None
        assert command.not_before < command.window_closes_at < command.not_before + dt.timedelta(days=1)
        assert command.window_closes_at > now
        assert command.state == (CommandState.QUEUED if command.not_before <= now else CommandState.SCHEDULED)


def test_parallel_chunks_on_their_own_connections_write_each_device_once(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # Outside a test transaction the chunks run in threads, each on its own connection.
    org = make_org("parallel")
    settings.FANOUT_CHUNK_SIZE = 10
    settings.FANOUT_PARALLELISM = 2
    load_devices(org, 95)
    operation = new_operation(org)

    fanout.fan_out(operation.pk)
    fanout.fan_out(operation.pk)  # and again, as a duplicated message would

    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED
    assert operation.resolved_count == operation.dispatched_count == 95
    assert CommandStatus.objects.filter(operation=operation).count() == 95
    assert activity(operation).count("DISPATCHED") == 1


def test_each_parallel_chunk_writes_ids_of_one_block_in_device_order(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """Parallel chunks take a block of ids each (``commands.rows._reserve_ids``), so their rows do not
    interleave at the right-most leaf of the id indexes; the ids stay unique."""
    org = make_org("blocks")
    settings.FANOUT_CHUNK_SIZE = 10
    settings.FANOUT_PARALLELISM = 2
    load_devices(org, 30)
    operation = new_operation(org)

    fanout.fan_out(operation.pk)

    rows = list(
        CommandStatus.objects.filter(operation=operation).order_by("device_id").values_list("id", flat=True)
    )
    assert len(rows) == len(set(rows)) == 30
    for start in range(0, 30, 10):
        block = rows[start : start + 10]
        assert block == list(range(block[0], block[0] + 10))


@pytest.fixture
def broker() -> Iterator[None]:
    """``recover_stuck_fan_outs`` sends to this run's Redis, where no worker takes the messages."""
    yield
    purge_broker()


def window_args(time_type: str = "device") -> dict[str, str]:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    end = start + dt.timedelta(hours=2)
    return {"start_datetime": start.isoformat(), "end_datetime": end.isoformat(), "time_type": time_type}


def test_a_fan_out_that_raises_every_time_fails_at_its_last_attempt(
    org: Org, monkeypatch: pytest.MonkeyPatch, settings: Any, broker: None
) -> None:
    """Issue 12, item 1: a fan-out that raised on every run was resent every 30 s forever.

    The input here: a device whose zone the server's tz database does not know (a row
    written before a tzdata update, say), read in the third chunk, after two were written.
    """
    settings.FANOUT_MAX_ATTEMPTS = 3
    settings.FANOUT_STUCK_SECONDS = 3600  # resent at once, not after standing still
    settings.FANOUT_CHUNK_SIZE = 2
    load_devices(org, 5)
    Device.objects.filter(tenant=org.tenant, device_id="d00004").update(timezone="Mars/Olympus")
    operation = new_operation(org, schedule_type="WINDOW", schedule_args=window_args())

    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        fanout.fan_out(operation.pk)  # the message create sent
    for _ in range(2):
        assert recover_stuck_fan_outs() == 1  # started, and its lock is free: no worker runs it
        with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
            fanout.fan_out(operation.pk)  # the message the sweep sent

    operation.refresh_from_db()
    assert operation.state == S.FAILURE
    assert operation.fanout_attempts == 3
    assert operation.reason.startswith("the fan-out failed 3 times; the last: ZoneInfoNotFoundError"), (
        operation
    )
    assert "Mars/Olympus" in operation.reason
    assert activity(operation)[-1] == "FAILURE"
    # What the first two chunks wrote is cancelled (by the stop's worker), not left for devices to run.
    stop_commands(operation.pk)
    operation.refresh_from_db()
    commands = CommandStatus.objects.filter(operation=operation)
    assert commands.count() == operation.resolved_count == operation.cancelled_count == 4
    assert set(commands.values_list("state", flat=True)) == {CommandState.CANCELLED}
    assert recover_stuck_fan_outs() == 0


def test_a_fan_out_started_max_attempts_times_fails_at_the_next_run(
    org: Org, settings: Any, broker: None
) -> None:
    """Runs that die without raising (a worker killed on every attempt) count as well."""
    settings.FANOUT_MAX_ATTEMPTS = 5
    load_devices(org, 3)
    operation = new_operation(org)
    # As five killed workers leave it: RESOLVING, five runs counted, none running.
    Operation.objects.filter(pk=operation.pk).update(state=S.RESOLVING, fanout_attempts=5)

    assert recover_stuck_fan_outs() == 1
    fanout.fan_out(operation.pk)

    operation.refresh_from_db()
    assert operation.state == S.FAILURE
    assert operation.reason == "the fan-out was started 5 times without finishing"
    assert not CommandStatus.objects.filter(operation=operation).exists()
    assert recover_stuck_fan_outs() == 0


def test_the_sweep_resends_a_dead_fan_out_at_once_and_never_a_running_one(
    org: Org, settings: Any, broker: None
) -> None:
    """Issue 12, item 12: a killed worker's fan-out was resent only after FANOUT_STUCK_SECONDS.
    The sweep now tries its advisory lock: free means no worker runs it (a killed worker's
    session lock goes with its connection)."""
    settings.FANOUT_STUCK_SECONDS = 3600
    load_devices(org, 3)
    waiting = new_operation(org)  # CREATED: its first message may still be on its way
    dead = new_operation(org)
    Operation.objects.filter(pk=dead.pk).update(state=S.RESOLVING)  # its worker died, lock and all
    held, release = threading.Event(), threading.Event()

    def another_worker() -> None:
        """Runs the fan-out of ``dead`` (holds its lock) on its own connection until released."""
        try:
            with fanout.exclusive(dead.pk) as got:
                if got:
                    held.set()
                    release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=another_worker)
    thread.start()
    try:
        assert held.wait(30)
        assert recover_stuck_fan_outs() == 0  # it runs: never a second worker on it
    finally:
        release.set()
        thread.join()

    assert recover_stuck_fan_outs() == 1  # nothing runs it: resent at once
    fanout.fan_out(dead.pk)
    assert Operation.objects.get(pk=dead.pk).state == S.DISPATCHED
    assert recover_stuck_fan_outs() == 0

    # One never started is resent once it has stood still FANOUT_STUCK_SECONDS (a lost message).
    ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3601)
    Operation.objects.filter(pk=waiting.pk).update(updated_at=ago)
    assert recover_stuck_fan_outs() == 1
