"""Thin Celery tasks of the inventory (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from inventory.presence import flush_seen


@shared_task(ignore_result=True)
def flush_last_seen() -> int:
    """Write the devices' pushed sightings to ``last_seen`` (``inventory.presence``)."""
    return flush_seen()
