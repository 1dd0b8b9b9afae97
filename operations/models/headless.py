"""Headless operations (seed 001): one named task for one device, run at ``scheduled_at``.

A run is an internal command (``commands.CommandStatus``) sent through the device's inbox;
the operation's status then follows that command (``operations.headless``).
"""

from __future__ import annotations

import uuid

from django.core.validators import RegexValidator
from django.db import models

from commands.choices import Priority
from inventory.models import Device, Tenant

OPERATION_TYPE_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
validate_operation_type = RegexValidator(
    OPERATION_TYPE_PATTERN,
    "must be 1 to 64 letters, digits, '_', '-' or '.' (for example 'firmware_update')",
)


class HeadlessStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


H = HeadlessStatus
#: Handed to a device as a command that has not finished: the status follows the command.
ACTIVE_STATUSES = frozenset({H.PENDING, H.RUNNING})
TERMINAL_STATUSES = frozenset({H.COMPLETED, H.FAILED, H.CANCELLED})

#: The only place that decides which status may follow which. Statuses only move forward:
#: a command handed out again (Initiated → Queued) leaves a running operation running.
ALLOWED_TRANSITIONS: dict[HeadlessStatus, frozenset[HeadlessStatus]] = {
    H.SCHEDULED: frozenset({H.PENDING, H.CANCELLED}),
    H.PENDING: frozenset({H.RUNNING, H.COMPLETED, H.FAILED, H.CANCELLED}),
    H.RUNNING: frozenset({H.COMPLETED, H.FAILED, H.CANCELLED}),
    H.COMPLETED: frozenset(),
    H.FAILED: frozenset(),
    H.CANCELLED: frozenset(),
}


def sources_of(target: HeadlessStatus) -> list[str]:
    """The statuses from which ``target`` may be entered, read from the one table."""
    return [str(status) for status, targets in ALLOWED_TRANSITIONS.items() if target in targets]


#: The API's priority names, mapped onto the inbox's integers (highest runs first).
PRIORITY_BY_NAME: dict[str, int] = {str(p.label): int(p) for p in Priority}


def new_headless_id() -> str:
    return f"op_{uuid.uuid4().hex}"


class HeadlessOperation(models.Model):
    """A headless operation. ``id`` is public (``op_<hex>``); ``command`` is set when it runs."""

    id = models.CharField(primary_key=True, max_length=40, default=new_headless_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="headless_operations")
    operation_type = models.CharField(max_length=64, validators=[validate_operation_type])
    scheduled_at = models.DateTimeField()
    parameters = models.JSONField(default=dict, blank=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=16, choices=HeadlessStatus.choices, default=HeadlessStatus.SCHEDULED)
    # No database constraint: the command table is partitioned (its unique key is
    # (id, created_on)), and a foreign key needs a unique key to point at.
    command = models.ForeignKey(
        "commands.CommandStatus",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    reason = models.TextField(blank=True)
    #: How many times a sweep claimed it (1 in practice: the claim and the command commit together).
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "headless operation"
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="headless_tenant_created"),
            # The due sweep: WHERE status = 'scheduled' AND scheduled_at <= now
            # ORDER BY priority DESC, scheduled_at (operations.headless.run_due).
            models.Index(
                fields=["scheduled_at"],
                name="headless_due",
                condition=models.Q(status=HeadlessStatus.SCHEDULED),
            ),
            # The status sync of every sweep: operations whose command has not finished
            # (operations.headless.sync_statuses over status IN ('pending', 'running')).
            models.Index(
                fields=["command"],
                name="headless_active",
                condition=models.Q(status__in=[HeadlessStatus.PENDING, HeadlessStatus.RUNNING]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.operation_type} on {self.device_id}: {self.status}"

    @property
    def priority_name(self) -> str:
        return str(Priority(self.priority).label)


class UpcomingHeadlessRun(HeadlessOperation):
    """The console's list of scheduled runs, soonest first (``operations.admin_headless``)."""

    class Meta:
        proxy = True
        ordering = ["scheduled_at", "id"]
        verbose_name = "upcoming headless run"
