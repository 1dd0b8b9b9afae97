"""Retention's run: what every floor keeps too long goes (docs/retention.md).

Operations, their commands and history, internal commands and headless runs are the
operations floor's (``operations.retention``); maintenance executions are this floor's.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone

from maintenance.models import MaintenanceExecution
from operations import retention

logger = logging.getLogger(__name__)


def purge_expired(now: dt.datetime | None = None) -> dict[str, int]:
    """One run: returns what went, by kind (also logged)."""
    now = now or timezone.now()
    removed = retention.run(now)
    if settings.OPERATION_RETENTION_DAYS:
        cutoff = now - dt.timedelta(days=settings.OPERATION_RETENTION_DAYS)
        finished = MaintenanceExecution.objects.filter(finished_at__lt=cutoff)
        total = 0
        while True:
            ids = list(finished.order_by().values_list("pk", flat=True)[: settings.RETENTION_BATCH_SIZE])
            if not ids:
                break
            total += MaintenanceExecution.objects.filter(pk__in=ids).delete()[0]
        if total:
            removed["maintenance_executions"] = total
    logger.info("retention run: %s", removed or "nothing expired")
    return removed
