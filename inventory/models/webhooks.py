"""Events out: a tenant's webhook endpoints, the outbox of events, and every delivery attempt.

The outbox holds one row per event, written in the transaction of the change it reports
(``inventory.events``); it is not fanned out to endpoints when written. Each endpoint reads
the outbox after its own cursor at delivery time (``inventory.webhooks.delivery``), so a
million command reports are a million small rows, not a million rows per endpoint nor a
million Celery tasks.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models import Func
from django.db.models.functions import Now

from inventory.models.tenants import Tenant


class EventType(models.TextChoices):
    OPERATION_CREATED = "operation.created"
    OPERATION_STATE_CHANGED = "operation.state_changed"
    COMMAND_STATE_CHANGED = "command.state_changed"
    HEADLESS_STATE_CHANGED = "headless.state_changed"
    MAINTENANCE_EXECUTED = "maintenance.executed"
    DEVICE_CREATED = "device.created"
    DEVICE_DELETED = "device.deleted"
    WEBHOOK_PING = "webhook.ping"


#: What ``events: ["*"]`` subscribes to: every type but ``command.state_changed``, which a
#: million devices make millions of, so it is asked for by name (CONTRACT §10).
WILDCARD = "*"
WILDCARD_TYPES = tuple(t.value for t in EventType if t != EventType.COMMAND_STATE_CHANGED)


class CurrentTransactionId(Func):
    """The writing transaction's id as a bigint, the column default of ``WebhookEvent.txid``.

    The deliverer reads only events whose transaction id is below the oldest transaction still
    running (``pg_snapshot_xmin``): those are all committed (or gone), so an endpoint's cursor
    ``(txid, id)`` never passes an event a slower transaction commits later.
    """

    template = "(pg_current_xact_id()::text::bigint)"
    output_field = models.BigIntegerField()
    allowed_default = True


class WebhookEndpoint(models.Model):
    """Where a tenant wants its events POSTed; the signing secret is sealed at rest."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True)
    #: Event type names, or ``["*"]`` (every type but ``command.state_changed``).
    events = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    #: ``config.encryption.seal("whsec_...")``; never shown after the answer that made it.
    secret_sealed = models.TextField(editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Delivery bookkeeping (inventory.webhooks.delivery): where the endpoint is in the outbox,
    # its backoff after failures, and the lease of the worker delivering to it.
    cursor_txid = models.BigIntegerField(default=0, editable=False)
    cursor_id = models.BigIntegerField(default=0, editable=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    locked_until = models.DateTimeField(null=True, blank=True, editable=False)
    kicked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "webhook endpoint"
        indexes = [
            # The subscription check inside the command report statement (inventory.events
            # .outbox_cte): active endpoints of one tenant.
            models.Index(
                fields=["tenant"], name="inventory_wh_active_tenant", condition=models.Q(active=True)
            ),
        ]

    def __str__(self) -> str:
        return self.url

    def subscribes(self, event_type: str) -> bool:
        return event_type in self.events or (WILDCARD in self.events and event_type in WILDCARD_TYPES)

    def subscribed_types(self) -> list[str]:
        types = {t for t in self.events if t != WILDCARD}
        if WILDCARD in self.events:
            types.update(WILDCARD_TYPES)
        return sorted(types)


class WebhookEvent(models.Model):
    """One event, written in the transaction of the change it reports (the outbox).

    ``endpoint`` is set only for an event meant for one endpoint (``webhook.ping``).
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, db_constraint=False, related_name="+")
    type = models.CharField(max_length=64, choices=EventType.choices)
    data = models.JSONField()
    created_at = models.DateTimeField(db_default=Now())
    txid = models.BigIntegerField(db_default=CurrentTransactionId())
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        ordering = ["txid", "id"]
        indexes = [
            # The deliverer's read: a tenant's events after an endpoint's cursor, in order.
            models.Index(fields=["tenant", "txid", "id"], name="inventory_wh_event_cursor"),
            # The retention purge: the oldest events first.
            models.Index(fields=["created_at"], name="inventory_wh_event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id}"

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header: the same on every attempt and every endpoint."""
        return f"evt_{self.pk}"

    def body(self) -> dict[str, Any]:
        return {"type": self.type, "timestamp": _iso(self.created_at), "data": self.data}


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


class WebhookDelivery(models.Model):
    """One attempt to deliver one event to one endpoint (``GET /v0/webhooks/{id}/deliveries/``)."""

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, db_constraint=False, related_name="+")
    event_type = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    #: When this event is tried again for this endpoint (null: delivered, given up, or disabled).
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="inventory_wh_delivery_recent"),
            models.Index(fields=["created_at"], name="inventory_wh_delivery_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.attempt} → {self.status_code or self.error}"

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookRetry(models.Model):
    """An event owed to an endpoint again: after a failed attempt, or asked for (redeliver).

    One row per (endpoint, event); deleted once delivered or given up. ``attempt`` is the
    number the next attempt will carry.
    """

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, db_constraint=False, related_name="+")
    attempt = models.PositiveIntegerField()
    due_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"], name="%(app_label)s_%(class)s_unique_endpoint_event"
            )
        ]
        indexes = [models.Index(fields=["endpoint", "due_at"], name="inventory_wh_retry_due")]

    def __str__(self) -> str:
        return f"event {self.event_id} to {self.endpoint_id}, attempt {self.attempt} at {self.due_at}"
