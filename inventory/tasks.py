"""Thin Celery tasks of the inventory app (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from inventory import headless


@shared_task(ignore_result=True)
def run_due_headless() -> dict[str, int]:
    """Run due headless operations and sync the active ones' statuses (idempotent)."""
    return headless.sweep()
