"""Periodic sweeps of delivery (``CELERY_BEAT_SCHEDULE`` through ``operations.sweeps.run_all``):
redelivery of commands not acknowledged in time, and timeouts past a command's deadline.

Each is one set-based move (see ``services.move_and_settle``): idempotent, and safe when
two run at once because rows another sweep has locked are skipped, never moved twice.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import move_and_settle

C = CommandState


def redeliver_unacknowledged(now: dt.datetime | None = None, exclude: Q | None = None) -> dict[str, int]:
    """Hand out again commands not acknowledged in time; time out those handed out too often.

    ``exclude``: commands the floors above hold (those of a paused operation wait as they are).
    """
    now = now or timezone.now()
    stale = CommandStatus.objects.filter(
        state=C.INITIATED, delivered_at__lt=now - dt.timedelta(seconds=settings.INBOX_REDELIVERY_SECONDS)
    )
    if exclude is not None:
        stale = stale.exclude(exclude)
    limit = settings.INBOX_MAX_DELIVERIES
    timed_out = move_and_settle(
        stale.filter(delivery_count__gte=limit),
        C.TIMEOUT,
        f"not acknowledged after {limit} deliveries",
    )
    requeued = move_and_settle(
        stale.filter(delivery_count__lt=limit), C.QUEUED, "redelivery: not acknowledged"
    )
    return {"requeued": requeued, "timed_out": timed_out}


def time_out_overdue(now: dt.datetime | None = None, tenant_id: int | None = None) -> int:
    """Unfinished commands past their deadline (the window's end) become Command TimeOut."""
    now = now or timezone.now()
    overdue = CommandStatus.objects.filter(deadline__lte=now)
    if tenant_id is not None:
        overdue = overdue.filter(tenant_id=tenant_id)
    return move_and_settle(overdue, C.TIMEOUT, "deadline passed")


def time_out_in_progress(now: dt.datetime | None = None) -> int:
    """Commands Acknowledged or In Progress past their in-progress timeout (a rollout's
    ``in_progress_timeout_minutes``) become Command TimeOut, or go back to the queue if
    their retry budget allows."""
    now = now or timezone.now()
    overdue = CommandStatus.objects.filter(
        progress_deadline__lte=now, state__in=[C.ACKNOWLEDGED, C.IN_PROGRESS]
    )
    return move_and_settle(overdue, C.TIMEOUT, "in progress for longer than its timeout", retry=True)
