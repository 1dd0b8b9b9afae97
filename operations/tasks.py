"""Thin Celery tasks: take ids, call a service."""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from commands import partitions
from operations import approvals, continuous, fanout, headless, series, stopping, sweeps
from operations.choices import PRE_DISPATCH_STATES, OperationState
from operations.models import Operation


@shared_task(acks_late=True, reject_on_worker_lost=True)
def fan_out_operation(operation_id: str) -> None:
    fanout.fan_out(operation_id)


@shared_task
def recover_stuck_fan_outs() -> int:
    """Resend fan-outs that run nowhere (every ``FANOUT_RECOVERY_SECONDS``); the fan-out resumes.

    A started one (past CREATED, or counted a run) whose advisory lock is free lost its
    worker (killed: its message waits out the broker's visibility timeout) or raised: it is
    resent at once, and ``FANOUT_MAX_ATTEMPTS`` ends one that never finishes. One never
    started may still have its first message on the way, so it waits ``FANOUT_STUCK_SECONDS``
    (a lost broker message). Only an operation whose lock was free is sent, so a running
    fan-out is never given a second worker.
    """
    started = ~Q(state=OperationState.CREATED) | Q(fanout_attempts__gt=0)
    still_too_long = Q(updated_at__lt=timezone.now() - dt.timedelta(seconds=settings.FANOUT_STUCK_SECONDS))
    candidates = Operation.objects.filter(started | still_too_long, state__in=PRE_DISPATCH_STATES)
    count = 0
    for operation_id in candidates.values_list("pk", flat=True):
        if fanout.abandoned(operation_id):
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


@shared_task(ignore_result=True)
def make_partitions() -> list[str]:
    """Weekly partitions of command statuses and history, ``COMMAND_PARTITIONS_AHEAD`` ahead
    (hourly: one missed run changes nothing)."""
    return partitions.make_ahead(timezone.now())


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def stop_commands(operation_id: str) -> int:
    """Move a stopped operation's unfinished commands in batches (``operations.stopping``)."""
    return stopping.stop_commands(operation_id)


@shared_task(ignore_result=True)
def resume_stops() -> int:
    """Send again stops whose commands are still unfinished and whose worker is gone."""
    return stopping.resume_stops()


@shared_task(ignore_result=True)
def expire_approvals() -> int:
    """Deny the operations whose approval expired undecided (``approval expired``); each once,
    whatever runs at the same time (``operations.approvals.expire``)."""
    return approvals.expire_due()


@shared_task(ignore_result=True)
def fire_series() -> dict[str, int]:
    """Make the runs of due firings of RECURRING operations, each once (``operations.series``)."""
    return series.sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def evaluate_continuous(operation_id: str) -> int:
    """Devices that came to match a continuous operation since its last look join it."""
    return continuous.evaluate(operation_id)


@shared_task(ignore_result=True)
def sweep_continuous() -> dict[str, int]:
    """Close continuous operations past their end; look at every open one (the safety net)."""
    return continuous.sweep()
