"""Operations with their commands already fanned out, for the command and inbox tests.

The fan-out task is not sent: the tests call ``fan_out`` themselves, in their own process,
so the commands exist (``Command Queued`` for IMMEDIATE, ``Command Scheduled`` for WINDOW)
when the helper returns, in plain ``db`` tests and ``transactional_db`` tests alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection

from commands.models import CommandStatus
from inventory.models import Tenant
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation
from tests.conftest import DeviceActor


def dispatched_operation(
    tenant: Tenant,
    devices: Sequence[DeviceActor],
    operation_type: str = "REBOOT",
    **data: Any,
) -> Operation:
    """An operation on ``devices``, fanned out (IMMEDIATE: DISPATCHED, WINDOW: SCHEDULED)."""
    operation = create_operation(
        tenant.pk,
        {
            "operation_type": operation_type,
            "operation_device_query": {"devices": [d.device.device_id for d in devices]},
            **data,
        },
        "tests",
    )
    fan_out(operation.pk)
    operation.refresh_from_db()
    return operation


def command_of(operation: Operation, actor: DeviceActor) -> CommandStatus:
    return CommandStatus.objects.get(operation=operation, device=actor.device)


def run_in_threads(work: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run each callable in its own thread, all released at once; re-raise the first error.

    Each thread has its own database connection (Django's are per thread) and closes it at
    the end, so the test database can be dropped afterwards.
    """
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(index: int, job: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = job()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return results
