"""What a tenant does with its webhook endpoints; called by the API and the console alike."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from config.errors import DomainError
from inventory.events import emit
from inventory.models import EventType, PendingDelivery, WebhookDelivery, WebhookEndpoint, WebhookEvent
from inventory.models.webhooks import WILDCARD
from inventory.webhooks import guard, secrets

logger = logging.getLogger(__name__)
#: ``inventory.tasks.deliver_webhooks``, sent by name (the tasks module imports this one).
DELIVER_TASK = "inventory.tasks.deliver_webhooks"
#: The types an endpoint may name: every type, and ``*``.
SUBSCRIBABLE = (*(t.value for t in EventType), WILDCARD)
MAX_EVENT_NAMES = 20


def clean_events(events: Any) -> list[str]:
    """A list of known event type names (or ``*``), without repeats; a 400 naming ``events``."""
    if not isinstance(events, list) or not events:
        raise DomainError({"events": ['must be a non-empty list of event types (or ["*"])']})
    if len(events) > MAX_EVENT_NAMES:
        raise DomainError({"events": [f"at most {MAX_EVENT_NAMES} event types"]})
    unknown = [str(e)[:64] for e in events if not isinstance(e, str) or e not in SUBSCRIBABLE]
    if unknown:
        raise DomainError(
            {"events": [f"unknown event type {unknown[0]!r}; known: {', '.join(SUBSCRIBABLE)}"]}
        )
    return list(dict.fromkeys(events))


def clean_url(url: str) -> str:
    """A URL the deliverer may call (http/https, a public address): a 400 naming ``url``."""
    try:
        guard.resolve(url)
    except guard.Refused as refused:
        raise DomainError({"url": [str(refused)]}, code="url_refused") from None
    return url


def create_endpoint(
    tenant_id: int, url: str, events: Any, description: str = "", active: bool = True
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret, returned this once. It is sent what happens from now on."""
    secret = secrets.new_secret()
    endpoint = WebhookEndpoint.objects.create(
        tenant_id=tenant_id,
        url=clean_url(url),
        events=clean_events(events),
        description=description,
        active=active,
        secret_sealed=secrets.seal_secret(secret),
    )
    return endpoint, secret


def update_endpoint(endpoint: WebhookEndpoint, data: dict[str, Any]) -> WebhookEndpoint:
    """Change ``url``, ``events``, ``description`` or ``active``. Turning an endpoint back on
    clears its disabled mark and backoff; what happened while it was off is not sent (nothing
    was written for it)."""
    if "url" in data:
        endpoint.url = clean_url(data["url"])
    if "events" in data:
        endpoint.events = clean_events(data["events"])
    if "description" in data:
        endpoint.description = data["description"]
    if "active" in data:
        if data["active"] and not endpoint.active:
            endpoint.disabled_at, endpoint.disabled_reason = None, ""
            endpoint.next_attempt_at, endpoint.consecutive_failures = None, 0
        endpoint.active = bool(data["active"])
    endpoint.save()
    return endpoint


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


def rotate_secret(endpoint: WebhookEndpoint) -> str:
    """A new secret, shown once; the old one stops signing at once."""
    secret = secrets.new_secret()
    endpoint.secret_sealed = secrets.seal_secret(secret)
    endpoint.save(update_fields=["secret_sealed", "updated_at"])
    return secret


def _kick(endpoint_id: Any) -> None:
    """Ask a worker to deliver now; the beat's kick is the guarantee if this message is lost."""
    try:
        current_app.send_task(DELIVER_TASK, args=[str(endpoint_id)])
    except Exception:
        logger.warning("webhook delivery for %s not sent; the next kick sends it", endpoint_id, exc_info=True)


def ping(endpoint: WebhookEndpoint) -> None:
    """A ``webhook.ping`` event for this endpoint alone, sent as any event is (signed, retried)."""
    if not endpoint.active:
        raise DomainError(
            {"active": ["the endpoint is disabled; turn it on before pinging it"]}, code="endpoint_disabled"
        )
    with transaction.atomic():
        emit(
            endpoint.tenant_id,
            EventType.WEBHOOK_PING,
            {"endpoint_id": str(endpoint.pk), "url": endpoint.url, "sent_at": timezone.now()},
            endpoint_id=endpoint.pk,
        )
        transaction.on_commit(lambda: _kick(endpoint.pk))


def redeliver(endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> None:
    """Send the delivery's event to its endpoint again, now (as the next attempt)."""
    if not WebhookEvent.objects.filter(pk=delivery.event_id).exists():
        raise DomainError(
            {"delivery_id": ["its event is past the retention period and was purged"]}, code="event_purged"
        )
    with transaction.atomic():
        last = (
            WebhookDelivery.objects.filter(endpoint=endpoint, event_id=delivery.event_id)
            .order_by("-attempt")
            .values_list("attempt", flat=True)
            .first()
        ) or delivery.attempt
        PendingDelivery.objects.update_or_create(
            endpoint=endpoint,
            event_id=delivery.event_id,
            defaults={"attempt": last + 1, "due_at": timezone.now()},
        )
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(next_attempt_at=None)
        transaction.on_commit(lambda: _kick(endpoint.pk))
