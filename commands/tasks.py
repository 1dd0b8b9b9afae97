"""Thin Celery tasks for the periodic sweeps (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from commands import sweeps
from inventory.presence import flush_seen


@shared_task(ignore_result=True)
def sweep_commands() -> dict[str, Any]:
    return sweeps.run_all()


@shared_task(ignore_result=True)
def flush_last_seen() -> int:
    return flush_seen()
