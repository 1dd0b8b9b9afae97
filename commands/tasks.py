"""Thin Celery tasks of delivery (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from inventory.presence import flush_seen


@shared_task(ignore_result=True)
def flush_last_seen() -> int:
    return flush_seen()
