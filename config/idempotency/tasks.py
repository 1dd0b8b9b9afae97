"""The periodic purge of expired idempotency keys (``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from config.idempotency.store import purge_expired


@shared_task(ignore_result=True)
def purge_expired_keys() -> int:
    """Delete kept answers past their TTL and claims past their lease, in batches."""
    return purge_expired()
