"""Thin Celery tasks of the inventory (see ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from inventory import broker_logins
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


#: Retries of a sync while the broker is down: growing waits up to a minute, and no last one.
#: A login must end once the broker is back, however long it was away.
SYNC_RETRY_BACKOFF_MAX = 60


@shared_task(
    ignore_result=True,
    autoretry_for=(broker_logins.BrokerUnavailable,),
    retry_backoff=1,
    retry_backoff_max=SYNC_RETRY_BACKOFF_MAX,
    retry_jitter=False,
    max_retries=None,
)
def sync_broker_logins(usernames: list[str]) -> str:
    """Bring these devices' broker logins in step after a change (``broker_logins.sync``)."""
    return broker_logins.sync(usernames).summary()


@shared_task(ignore_result=True)
def reconcile_broker_logins() -> str:
    """The beat's net under the syncs: the plugin's logins made exactly the server's wanted
    ones (``broker_logins.reconcile``). An outage waits for the next period."""
    try:
        return broker_logins.reconcile().summary()
    except broker_logins.BrokerUnavailable as error:
        return f"broker unavailable: {error}"
