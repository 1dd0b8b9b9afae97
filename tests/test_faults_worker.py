"""Worker faults: a Celery worker killed with SIGKILL in the middle of a 50,000-device
fan-out, and duplicated fan-out messages taken by two workers at once.

Small chunks (``FANOUT_CHUNK_SIZE``) make the fan-out 100 transactions long, so the kill
lands while the operation is RESOLVING with part of its statuses written.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from commands.models import CommandStatus
from inventory.services import bulk_import_devices
from operations.aggregates import true_counts
from operations.choices import OperationState
from operations.models import Operation, OperationActivity
from operations.progress import COUNTERS
from tests.conftest import Org, make_org, purge_broker, wait_until
from tests.faults import Processes
from tests.helpers import task_events

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

OPS = "/v0/operations/"
DEVICES = 50_000
TASK = "operations.tasks.fan_out_operation"


@pytest.fixture
def procs(transactional_db: None, tmp_path: Path) -> Iterator[Processes]:
    purge_broker()
    _broker().delete("unacked", "unacked_index")
    processes = Processes(tmp_path, {"FANOUT_CHUNK_SIZE": "500"})
    yield processes
    processes.stop_all()
    purge_broker()
    _broker().delete("unacked", "unacked_index")


def _broker() -> Any:
    return redis.Redis.from_url(str(settings.CELERY_BROKER_URL))


def _large_org(count: int = DEVICES) -> Org:
    org = make_org("acme")
    started = time.monotonic()
    bulk_import_devices(org.tenant.pk, [{"device_id": f"f-{i:06d}", "os": "android"} for i in range(count)])
    print(f"imported {count:,} devices in {time.monotonic() - started:.1f}s")
    return org


def _create(org: Org) -> str:
    created = org.admin.post(OPS, {"operation_type": "REBOOT", "operation_device_query": {"all": True}})
    assert created.status_code == 201, created.content
    return str(created.json()["content"]["id"])


def _wait_mid_fan_out(operation_id: str, total: int) -> Operation:
    def midway() -> Operation | None:
        op = Operation.objects.get(pk=operation_id)
        assert op.state in (OperationState.CREATED, OperationState.RESOLVING), op.state
        return op if 0 < op.resolved_count < total // 2 else None

    return wait_until(midway, timeout=60, interval=0.01, what="the fan-out to be under way")


def _assert_exact(operation_id: str, total: int) -> None:
    op = Operation.objects.get(pk=operation_id)
    assert op.state == OperationState.DISPATCHED
    assert CommandStatus.objects.filter(operation_id=operation_id).count() == total
    assert op.resolved_count == op.dispatched_count == total
    assert true_counts(operation_id) == {name: getattr(op, name) for name in COUNTERS}
    states = list(OperationActivity.objects.filter(operation_id=operation_id).values_list("state", flat=True))
    for state in (OperationState.RESOLVING, OperationState.RESOLVED, OperationState.DISPATCHED):
        assert states.count(state) == 1, states


def _dispatched(operation_id: str) -> bool:
    return Operation.objects.filter(pk=operation_id, state=OperationState.DISPATCHED).exists()


def _received(log: str) -> int:
    return task_events(log, "received", TASK)


def _succeeded(log: str) -> int:
    return task_events(log, "succeeded", TASK)


def _consuming(procs: Processes, name: str) -> None:
    """Wait until worker ``name`` has taken a message sent now from the queue and run it: it
    reads the queue, so a message put back there before this one would have reached it first."""
    from config.celery import app

    probe = app.send_task("celery.accumulate", args=("probe",)).id
    wait_until(
        lambda: f"[{probe}] succeeded" in procs.log(name),
        timeout=30,
        what=f"{name} to run a probe task\n{procs.log(name)[-3000:]}",
    )


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def test_sigkill_of_the_whole_worker_mid_fan_out_is_recovered_by_the_stuck_sweep(procs: Processes) -> None:
    org = _large_org()
    procs.worker(concurrency=1)
    operation_id = _create(org)
    before = _wait_mid_fan_out(operation_id, DEVICES)

    # SIGKILL the worker's process group: main process and pool child die at once, so nobody
    # rejects the message; it stays unacknowledged in Redis until its visibility timeout (1 h).
    procs.kill("worker", signal.SIGKILL)
    killed = Operation.objects.get(pk=operation_id)
    print(f"killed at resolved_count={before.resolved_count:,} (then {killed.resolved_count:,})")
    assert killed.state == OperationState.RESOLVING and killed.resolved_count < DEVICES
    assert CommandStatus.objects.filter(operation_id=operation_id).count() == killed.resolved_count
    assert _broker().hlen("unacked") == 1

    # A new worker alone does nothing: no message is redelivered before the visibility timeout.
    procs.worker("worker2", concurrency=1)
    wait_until(lambda: "ready" in procs.log("worker2"), timeout=30, what="the new worker")
    _consuming(procs, "worker2")
    assert _received(procs.log("worker2")) == 0
    assert Operation.objects.get(pk=operation_id).resolved_count == killed.resolved_count

    # The recovery sweep (what beat runs every FANOUT_STUCK_SECONDS / 2) resends it once it
    # has stood still FANOUT_STUCK_SECONDS; here the wait is simulated by ageing the row.
    from operations.tasks import recover_stuck_fan_outs

    assert recover_stuck_fan_outs() == 0  # not stuck long enough yet
    aged = killed.updated_at - dt.timedelta(seconds=settings.FANOUT_STUCK_SECONDS + 1)
    Operation.objects.filter(pk=operation_id).update(updated_at=aged)
    started = time.monotonic()
    assert recover_stuck_fan_outs() == 1
    wait_until(
        lambda: _dispatched(operation_id), timeout=120, what=f"DISPATCHED\n{procs.log('worker2')[-3000:]}"
    )
    print(f"resumed fan-out finished in {time.monotonic() - started:.1f}s")

    _assert_exact(operation_id, DEVICES)
    assert _broker().hlen("unacked") == 1  # the original message was never redelivered
    assert _received(procs.log("worker")) == 1  # the killed worker had taken the original
    assert _received(procs.log("worker2")) == 1  # the new one, only the sweep's message


def test_sigkill_of_the_pool_child_mid_fan_out_is_redelivered_by_the_worker(procs: Processes) -> None:
    org = _large_org()
    worker = procs.worker(concurrency=1)
    wait_until(lambda: "ready" in procs.log("worker"), timeout=30, what="the worker")
    [child] = _children(worker.pid)
    operation_id = _create(org)
    _wait_mid_fan_out(operation_id, DEVICES)

    # The pool process running the task dies; the worker's main process sees it and, with
    # acks_late + reject_on_worker_lost, puts the message back on the queue at once.
    os.kill(child, signal.SIGKILL)
    killed = Operation.objects.get(pk=operation_id)
    print(f"killed the pool child at resolved_count={killed.resolved_count:,}")
    started = time.monotonic()
    wait_until(
        lambda: _dispatched(operation_id), timeout=120, what=f"DISPATCHED\n{procs.log('worker')[-3000:]}"
    )
    print(f"redelivered fan-out finished in {time.monotonic() - started:.1f}s")

    _assert_exact(operation_id, DEVICES)
    log = procs.log("worker")
    assert "WorkerLostError" in log
    assert _received(log) == 2, log[-3000:]  # redelivered by the worker, no sweep involved
    assert killed.resolved_count < DEVICES


def test_duplicated_fan_out_messages_on_two_workers_change_nothing(procs: Processes) -> None:
    from operations.tasks import fan_out_operation

    total = 20_000
    org = _large_org(total)
    procs.worker("worker-a", concurrency=2)
    procs.worker("worker-b", concurrency=2)
    for name in ("worker-a", "worker-b"):
        wait_until(lambda name=name: "ready" in procs.log(name), timeout=30, what=name)
    operation_id = _create(org)  # sends one message
    barrier = threading.Barrier(6)

    def send() -> None:
        barrier.wait()
        for _ in range(2):
            fan_out_operation.delay(operation_id)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: _dispatched(operation_id), timeout=120, what="DISPATCHED")

    def all_taken() -> bool:
        logs = procs.log("worker-a") + procs.log("worker-b")
        return _received(logs) == 13 and _succeeded(logs) == 13

    wait_until(all_taken, timeout=60, what="every duplicate to be run")
    _assert_exact(operation_id, total)
    assert OperationActivity.objects.filter(operation_id=operation_id).count() == 5  # CREATED .. DISPATCHED
    for name in ("worker-a", "worker-b"):  # both workers took some of the duplicates
        assert _received(procs.log(name)) > 0
