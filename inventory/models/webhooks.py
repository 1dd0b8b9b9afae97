"""Events out: a tenant's webhook endpoints, the outbox of events, and every delivery attempt.

The outbox holds one row per event, and one small :class:`PendingDelivery` row per endpoint
that subscribes, both written in the transaction of the change they report (``inventory
.events``). Workers take an endpoint's pending rows in batches (``inventory.webhooks
.delivery``), so a million command reports are a million small rows per subscribing
endpoint, not a million Celery tasks.

Why pending rows rather than a per-endpoint cursor over the outbox: transactions commit out of
id order, so a cursor either waits for the oldest running transaction of the whole PostgreSQL
cluster (``pg_snapshot_xmin``; any long transaction, of any database on the server, stalls
every webhook) or skips events that commit late. A pending row is found whenever it commits.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models.functions import Now

from config import timestamps
from inventory.models.tenants import Tenant


class EventType(models.TextChoices):
    OPERATION_CREATED = "operation.created"
    OPERATION_STATE_CHANGED = "operation.state_changed"
    OPERATION_APPROVAL_REQUESTED = "operation.approval_requested"
    OPERATION_APPROVED = "operation.approved"
    OPERATION_DENIED = "operation.denied"
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


class WebhookEndpoint(models.Model):
    """Where a tenant wants its events POSTed; the signing secret is sealed at rest."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    #: Checked by the SSRF guard (inventory.webhooks.guard), not by a URL field's own rules.
    url = models.CharField(max_length=2000)
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
    # Delivery bookkeeping (inventory.webhooks.delivery): the backoff after failures, and the
    # lease of the worker delivering to it.
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


class WebhookEvent(models.Model):
    """One event, written in the transaction of the change it reports (the outbox).

    ``endpoint`` is set only for an event meant for one endpoint (``webhook.ping``).
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, db_constraint=False, related_name="+")
    type = models.CharField(max_length=64, choices=EventType.choices)
    data = models.JSONField()
    created_at = models.DateTimeField(db_default=Now())
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        ordering = ["id"]
        indexes = [
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
        return {"type": self.type, "timestamp": timestamps.format(self.created_at), "data": self.data}


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


class PendingDelivery(models.Model):
    """An event owed to an endpoint: new, after a failed attempt, or asked for again.

    One row per (endpoint, event), written with the event for every subscribing endpoint
    (or by a redelivery), deleted once delivered or given up. ``attempt`` is the number the
    next attempt will carry; ``due_at`` when it may be made.
    """

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, db_constraint=False, related_name="+"
    )
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, db_constraint=False, related_name="+")
    attempt = models.PositiveIntegerField(default=1)
    due_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"], name="%(app_label)s_%(class)s_unique_endpoint_event"
            )
        ]
        indexes = [
            # The deliverer's read: an endpoint's due rows, oldest first (delivery._work).
            models.Index(fields=["endpoint", "due_at", "id"], name="inventory_wh_pending_due"),
            # The purge: is an event still owed to anyone?
            models.Index(fields=["event"], name="inventory_wh_pending_event"),
        ]

    def __str__(self) -> str:
        return f"event {self.event_id} to {self.endpoint_id}, attempt {self.attempt} at {self.due_at}"
