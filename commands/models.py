"""One command status per (operation, device), and the history of its changes."""

from __future__ import annotations

from django.db import models

from commands.choices import UNFINISHED_STATES, CommandState, Priority


class CommandStatus(models.Model):
    """What one device must run and how far it got.

    The integer key and state keep the table and its indexes small: a big operation writes
    a million of these in one INSERT ... SELECT.
    """

    # The foreign keys have no database constraint and no single-column index of their own:
    # a fan-out writes a million of these rows, and the three constraint checks cost more
    # than the insert itself (bench/fanout.py --explain: 3.3 s of a 5.3 s chunk of 100,000).
    # The rows are only written by the fan-out (from existing devices of the operation's
    # tenant) and by issue_internal_command; deletes cascade through Django's collector as
    # before. The composite indexes below start with the same columns.
    tenant = models.ForeignKey(
        "inventory.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    operation = models.ForeignKey(
        "operations.Operation",
        on_delete=models.CASCADE,
        related_name="commands",
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
    )
    #: What issued an internal command that has no operation (e.g. ``headless:<id>``).
    request_ref = models.CharField(max_length=64, blank=True)
    device = models.ForeignKey(
        "inventory.Device",
        on_delete=models.CASCADE,
        related_name="commands",
        db_index=False,
        db_constraint=False,
    )
    command = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict, blank=True)
    state = models.PositiveSmallIntegerField(choices=CommandState.choices, default=CommandState.QUEUED)
    reason = models.TextField(blank=True)
    details = models.JSONField(null=True, blank=True)
    is_internal = models.BooleanField(default=False)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    #: Window of a scheduled command: not handed out before ``not_before``; back to
    #: Scheduled (next window) or TimeOut when ``window_closes_at`` passes undelivered.
    not_before = models.DateTimeField(null=True, blank=True)
    window_closes_at = models.DateTimeField(null=True, blank=True)
    #: When an unfinished command times out, whatever its state (the window's end).
    deadline = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_count = models.PositiveSmallIntegerField(default=0)
    #: A rollout's wave (1-based; 1 without waves): the inbox hands out a command only once
    #: its operation's ``current_wave`` reaches it.
    wave = models.PositiveSmallIntegerField(default=1, db_default=1)
    #: Which delivery this is (1-based): a failure with attempts left queues the command again.
    attempt = models.PositiveSmallIntegerField(default=1, db_default=1)
    #: The retry budget (a rollout's ``retries``), kept on the row so that the report that
    #: fails a command decides in its own statement whether it runs again.
    max_attempts_on_failure = models.PositiveSmallIntegerField(default=1, db_default=1)
    max_attempts_on_timeout = models.PositiveSmallIntegerField(default=1, db_default=1)
    # (db_default: the fan-out's and other raw INSERTs name only the columns they set.)
    #: A rollout's in-progress timeout, in seconds; ``progress_deadline`` is set from it when
    #: the device acknowledges, and the sweep times out the command once it passes.
    progress_timeout = models.PositiveIntegerField(null=True, blank=True)
    progress_deadline = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    #: The partition key (commands.partitions): weekly partitions by this time, so retention
    #: drops whole weeks. A fan-out sets it to its operation's ``created_at``, so one
    #: operation's commands share one partition; internal commands get the time of issue.
    created_on = models.DateTimeField(auto_now_add=True)
    updated_on = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "command status"
        verbose_name_plural = "command statuses"
        constraints = [
            # With the partition key: PostgreSQL wants it in every unique constraint of a
            # partitioned table. A fan-out writes ``created_on`` = its operation's
            # ``created_at`` (the same value on every retry), so this is still one row per
            # (operation, device) for ON CONFLICT DO NOTHING (operations.fanout._insert).
            models.UniqueConstraint(
                fields=["operation", "device", "created_on"],
                name="%(app_label)s_%(class)s_unique_operation_device",
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "id"], name="commands_tenant_id"),
            models.Index(fields=["device", "id"], name="commands_device_id"),
            # An operation's commands by key: GET /commands/v0/status/?request= (its pages,
            # keyset and offset), and the stop's batches (operations.stopping.stop_commands).
            # tenant_id is included so that the tenant scope is checked in the index: a deep
            # offset and the count are index-only scans.
            models.Index(fields=["operation", "id"], include=["tenant"], name="commands_operation_id"),
            # The inbox: a device's queued commands, highest priority first, then oldest.
            models.Index(
                "device",
                models.F("priority").desc(),
                "id",
                name="commands_inbox",
                condition=models.Q(state=CommandState.QUEUED),
            ),
            # The redelivery sweep: commands handed out and not acknowledged in time.
            models.Index(
                fields=["delivered_at"],
                name="commands_awaiting_ack",
                condition=models.Q(state=CommandState.INITIATED),
            ),
            # The window sweeps: scheduled commands whose window opens.
            models.Index(
                fields=["not_before"],
                name="commands_scheduled",
                condition=models.Q(state=CommandState.SCHEDULED),
            ),
            # The timeout sweep: unfinished commands with a deadline.
            models.Index(
                fields=["deadline"],
                name="commands_deadline",
                condition=models.Q(deadline__isnull=False, state__in=sorted(UNFINISHED_STATES)),
            ),
            # The window's close (operations.sweeps.close_windows): queued commands whose
            # daily window has closed. Without it the sweep read the whole table (a parallel
            # seq scan, 0.2-0.3 s at two million rows, every run: docs/performance.md, issue
            # 28). Only a window's commands have ``window_closes_at``, and they are born
            # Scheduled: an immediate fan-out writes no entry here, a window's opening one.
            models.Index(
                fields=["window_closes_at"],
                name="commands_window_closes",
                condition=models.Q(state=CommandState.QUEUED, window_closes_at__isnull=False),
            ),
            models.Index(
                fields=["request_ref"], name="commands_request_ref", condition=~models.Q(request_ref="")
            ),
            # The in-progress timeout sweep: commands the device has had for too long.
            models.Index(
                fields=["progress_deadline"],
                name="commands_in_progress_deadline",
                condition=models.Q(
                    progress_deadline__isnull=False,
                    state__in=[CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS],
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.command} on {self.device_id}: {self.get_state_display()}"

    @property
    def request(self) -> str:
        return str(self.operation_id) if self.operation_id else self.request_ref


class CommandHistory(models.Model):
    """Every accepted change of a command's state: from, to, reason, who, when."""

    # No database constraint: a foreign key must point at a unique key, and the partitioned
    # command table's is (id, created_on). History is written only next to the move it
    # records (commands.services), in the same statement.
    command = models.ForeignKey(
        CommandStatus, on_delete=models.CASCADE, related_name="history", db_constraint=False
    )
    from_state = models.PositiveSmallIntegerField(choices=CommandState.choices)
    to_state = models.PositiveSmallIntegerField(choices=CommandState.choices)
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=200, blank=True)
    #: The partition key (commands.partitions): weekly partitions, dropped whole by retention.
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "command history"

    def __str__(self) -> str:
        return f"{CommandState(self.from_state).label} → {CommandState(self.to_state).label}"


class DeviceNotify(models.Model):
    """The push outbox (contract section 14): one row per device that must hear a ``notify``.

    Written in the transaction of the change that made a command available to the device (a
    fan-out's chunk, a set move back to the queue, a retry, a wave or a window opening, an
    internal command), only while ``MQTT_URL`` is set; one row per device, upserted, so many
    changes before the publisher runs make one message. The bridge's publisher takes rows
    ``FOR UPDATE SKIP LOCKED``, publishes, and deletes them once the broker acknowledged
    (``commands.push``): a crash between the change's commit and the publish loses nothing.
    """

    # The device's key, no constraint (a fan-out upserts up to a million of these in its
    # chunks' statements): a device deleted meanwhile is skipped by the publisher's join.
    device_pk = models.BigIntegerField(primary_key=True)
    tenant_id = models.BigIntegerField()
    changed_at = models.DateTimeField()

    class Meta:
        verbose_name = "pending device notify"

    def __str__(self) -> str:
        return f"notify device {self.device_pk}"
