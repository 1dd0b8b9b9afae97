"""Thin Celery tasks of the inventory (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from inventory.presence import flush_seen
from inventory.webhooks import delivery


@shared_task(ignore_result=True)
def flush_last_seen() -> int:
    """Write the devices' pushed sightings to ``last_seen`` (``inventory.presence``)."""
    return flush_seen()


@shared_task(ignore_result=True)
def kick_webhooks() -> int:
    """The beat's kick: one delivery task per endpoint that may have work."""
    due = delivery.kick_due()
    for endpoint_id in due:
        deliver_webhooks.delay(endpoint_id)
    return len(due)


@shared_task(ignore_result=True)
def deliver_webhooks(endpoint_id: str) -> int:
    """Deliver what one endpoint is owed (``inventory.webhooks.delivery.deliver``)."""
    return delivery.deliver(endpoint_id)


@shared_task(ignore_result=True)
def purge_webhook_events() -> tuple[int, int]:
    """Retention: old attempts and delivered events (``WEBHOOK_EVENT_RETENTION_DAYS``)."""
    return delivery.purge()
