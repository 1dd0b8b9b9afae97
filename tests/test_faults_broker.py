"""Broker faults: Redis restarted (it keeps nothing on disk, so every queued and unacknowledged
message is lost) while operations and headless runs are waiting and while a fan-out runs.

The test runs its own Redis for the broker and the cache of a real gunicorn, worker and
beat (the database is the shared test database). Nothing is lost for good: the recovery
sweeps that beat runs (``recover_stuck_fan_outs``, the headless due sweep) find in the
database what the broker forgot.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from commands.models import CommandStatus
from inventory.services import bulk_import_devices, create_api_key, get_or_create_tenant
from operations import counters
from operations.choices import OperationState
from operations.models import HeadlessOperation, Operation, OperationActivity
from tests.conftest import wait_until
from tests.faults import Processes, RedisServer, free_port, wait_port
from tests.helpers import iso, task_events

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

DEVICES = 20_000
HEADLESS = "/api/v1/inventory_device_headless_operation/"
#: The recovery sweeps (beat entries), and how many more runs of each give the work of a lost
#: message its chance to be done twice.
SWEEPS = {"run-due-headless": 3, "recover-stuck-fan-outs": 2}


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.redis = RedisServer(tmp)
        self.redis.start()
        self.procs = Processes(
            tmp,
            {
                "REDIS_URL": self.redis.url(0),
                "CELERY_BROKER_URL": self.redis.url(1),
                "FANOUT_CHUNK_SIZE": "500",
                "FANOUT_STUCK_SECONDS": "4",
                "SWEEP_SECONDS": "1",
                "RATE_LIMIT_KEY_PER_MINUTE": "0",
                "RATE_LIMIT_DEVICE_PER_MINUTE": "0",
            },
        )
        port = free_port()
        self.procs.start(
            "web", "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "60"
        )
        wait_port(port)
        self.base = f"http://127.0.0.1:{port}"
        self.key = ""

    def post(self, path: str, body: dict[str, Any]) -> Any:
        resp = requests.post(
            self.base + path, json=body, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )
        assert resp.status_code == 201, resp.text
        return resp.json()

    def restart_redis(self, down_for: float = 1.0) -> None:
        self.redis.stop(signal.SIGKILL)
        time.sleep(down_for)
        self.redis.start()

    def close(self) -> None:
        self.procs.stop_all()
        self.redis.stop()


@pytest.fixture
def stack(transactional_db: None, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    yield s
    s.close()


def _create_operation(stack: Stack) -> str:
    body = stack.post(
        "/v0/operations/", {"operation_type": "REBOOT", "operation_device_query": {"all": True}}
    )
    return str(body["content"]["id"])


def _create_headless(stack: Stack, device_id: str, when: dt.datetime) -> str:
    body = stack.post(
        HEADLESS, {"device_id": device_id, "operation_type": "firmware_update", "scheduled_at": iso(when)}
    )
    return str(body["id"])


def test_redis_restarts_lose_no_operation_and_no_headless_run(stack: Stack) -> None:
    tenant, _ = get_or_create_tenant("acme")
    stack.key = create_api_key(tenant, "admin", "admin")[1]
    bulk_import_devices(tenant.pk, [{"device_id": f"b-{i:06d}", "os": "android"} for i in range(DEVICES)])
    now = dt.datetime.now(dt.UTC)

    # 1. Work waiting in the broker: no worker yet, so the messages sit in Redis's queue.
    operations = [_create_operation(stack) for _ in range(2)]
    headless = [_create_headless(stack, f"b-{i:06d}", now - dt.timedelta(minutes=1)) for i in range(3)]
    headless += [_create_headless(stack, f"b-{i:06d}", now + dt.timedelta(seconds=6)) for i in range(3, 5)]
    assert stack.redis.proc is not None
    stack.restart_redis()  # every queued message is gone

    # 2. Worker and beat start on the empty broker; a fan-out is cut by a second restart.
    stack.procs.worker(concurrency=2)
    stack.procs.beat()
    operations.append(_create_operation(stack))

    def under_way() -> bool:
        return Operation.objects.filter(
            pk=operations[-1], state=OperationState.RESOLVING, resolved_count__gt=0
        ).exists()

    wait_until(under_way, timeout=60, interval=0.05, what=f"a fan-out under way\n{stack.procs.log('worker')}")
    restarted = time.monotonic()
    stack.restart_redis(down_for=3.0)

    restarts: list[str] = []

    def supervise() -> None:
        """What systemd's Restart=always does: Celery 5.7/kombu 5.7 workers sometimes exit on a
        lost Redis connection ("Unrecoverable error: AttributeError ... 'hostname'")."""
        for name in ("worker", "beat"):
            proc = stack.procs.procs.get(name)
            if proc is not None and proc.poll() is not None:
                restarts.append(name)
                stack.procs.procs.pop(name)
                if name == "worker":
                    stack.procs.worker(concurrency=2)
                else:
                    stack.procs.beat()

    def finished() -> bool:
        supervise()
        ops_done = Operation.objects.filter(pk__in=operations, state=OperationState.DISPATCHED).count()
        runs_done = HeadlessOperation.objects.filter(pk__in=headless, command__isnull=False).count()
        return ops_done == len(operations) and runs_done == len(headless)

    try:
        wait_until(finished, timeout=120, interval=0.5, what="every operation and headless run")
    except AssertionError:
        print(stack.procs.log("beat")[-3000:], stack.procs.log("worker")[-5000:])
        raise
    print(f"all recovered {time.monotonic() - restarted:.1f}s after the second restart; restarted {restarts}")

    # A few more runs of each recovery sweep: nothing may run twice.
    tasks = {str(settings.CELERY_BEAT_SCHEDULE[entry]["task"]): more for entry, more in SWEEPS.items()}
    ran = {task: task_events(stack.procs.log("worker"), "succeeded", task) for task in tasks}

    def swept_again() -> bool:
        supervise()
        log = stack.procs.log("worker")
        return all(task_events(log, "succeeded", task) >= ran[task] + more for task, more in tasks.items())

    wait_until(swept_again, timeout=60, interval=0.5, what=f"more recovery sweeps {SWEEPS}")

    for operation_id in operations:
        op = Operation.objects.get(pk=operation_id)
        assert CommandStatus.objects.filter(operation_id=operation_id).count() == DEVICES
        assert op.resolved_count == op.dispatched_count == DEVICES
        assert counters.recount(operation_id) == {name: getattr(op, name) for name in counters.COUNTERS}
        dispatched = OperationActivity.objects.filter(
            operation_id=operation_id, state=OperationState.DISPATCHED
        )
        assert dispatched.count() == 1

    for run in HeadlessOperation.objects.filter(pk__in=headless):
        assert run.attempts == 1, run
        assert CommandStatus.objects.filter(request_ref=str(run.pk), is_internal=True).count() == 1
    # The two operations whose messages the first restart lost were resent by the sweep.
    resent = re.findall(
        r"recover_stuck_fan_outs\[[0-9a-f-]+\] succeeded in [0-9.]+s: (\d+)", stack.procs.log("worker")
    )
    assert max(int(n) for n in resent) >= 2, resent
