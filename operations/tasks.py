"""Thin Celery tasks: take ids, call a service."""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from operations import fanout, headless, sweeps
from operations.choices import PRE_DISPATCH_STATES
from operations.models import Operation

#: An operation whose fan-out has not moved for this long is handed to a worker again.
STUCK_AFTER = dt.timedelta(seconds=settings.FANOUT_STUCK_SECONDS)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def fan_out_operation(operation_id: str) -> None:
    fanout.fan_out(operation_id)


@shared_task
def recover_stuck_fan_outs() -> int:
    """Resend fan-outs lost with a broker message or a killed worker (the fan-out resumes)."""
    stuck = Operation.objects.filter(
        state__in=PRE_DISPATCH_STATES,
        updated_at__lt=timezone.now() - STUCK_AFTER,
    ).values_list("pk", flat=True)
    count = 0
    for operation_id in stuck:
        fan_out_operation.delay(str(operation_id))
        count += 1
    return count


@shared_task(ignore_result=True)
def run_due_headless() -> dict[str, int]:
    """Run due headless operations and sync the active ones' statuses (idempotent)."""
    return headless.sweep()


@shared_task(ignore_result=True)
def sweep_commands() -> dict[str, Any]:
    """Every sweep of commands and operations once (``operations.sweeps.run_all``)."""
    return sweeps.run_all()
