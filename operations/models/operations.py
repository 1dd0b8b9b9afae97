"""Operations, their activity log, and their exact counters."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import models

from commands.counting import FINISHED
from operations.choices import (
    DESTRUCTIVE_TYPES,
    PRE_DISPATCH_STATES,
    ApprovalState,
    OperationState,
    OperationType,
    ScheduleType,
    TargetSelection,
)


class ExactCounters(models.Model):
    """The exact counters of an operation's commands, kept by an operation and by each wave of
    its rollout: moved only by SQL increments by the rule of ``commands.counting``, in the
    same statement or transaction as the command rows they count."""

    resolved_count = models.PositiveIntegerField(default=0)
    dispatched_count = models.PositiveIntegerField(default=0)
    dispatch_failed_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    success_count = models.PositiveIntegerField(default=0)
    cancelled_count = models.PositiveIntegerField(default=0)
    #: Of ``failed_count``, the commands that timed out after the device had them.
    timed_out_count = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def finished_count(self) -> int:
        return sum(getattr(self, name) for name in FINISHED)

    @property
    def pending_count(self) -> int:
        return max(self.resolved_count - self.finished_count, 0)


class Operation(ExactCounters):
    """One request to run a command on the devices a query picks.

    The counters are moved only by SQL (``F()`` and conditional updates in
    ``operations.progress``, by the rule of ``commands.counting``) in the same transaction
    as the command rows they count, so they are exact at every moment, whatever number of
    devices report at once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("inventory.Tenant", on_delete=models.CASCADE, related_name="operations")
    operation_type = models.CharField(max_length=64, choices=OperationType.choices)
    schedule_type = models.CharField(
        max_length=16, choices=ScheduleType.choices, default=ScheduleType.IMMEDIATE
    )
    schedule_args = models.JSONField(default=dict, blank=True)
    device_query = models.JSONField(default=dict)
    arguments = models.JSONField(default=dict, blank=True)
    state = models.PositiveSmallIntegerField(choices=OperationState.choices, default=OperationState.CREATED)
    reason = models.TextField(blank=True)
    created_by = models.CharField(max_length=200, blank=True)
    updated_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    #: Runs of the fan-out started (``operations.fanout``): past ``FANOUT_MAX_ATTEMPTS`` the
    #: operation fails instead of being resent forever.
    fanout_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    #: A stop (CANCELLED, TIMEOUT, an operator's FAILURE) moves the state at once and leaves the
    #: unfinished commands to a worker (``operations.stopping``): set with that move, and
    #: ``commands_stopped_at`` once none is left unfinished. Between the two the API shows
    #: ``commands_stop: "in_progress"``.
    stop_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    commands_stopped_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: The rollout as given (``operations.rollouts``), defaults filled in; null without one.
    rollout = models.JSONField(null=True, blank=True)
    #: The open wave: the inbox hands out commands of waves up to it (1 without waves).
    current_wave = models.PositiveSmallIntegerField(default=1)
    #: ``rollout.max_per_minute``, read by the inbox's hand-out with the operation's state.
    max_per_minute = models.PositiveIntegerField(null=True, blank=True)
    #: The state a pause left, to which RESUMED returns.
    paused_from = models.PositiveSmallIntegerField(choices=OperationState.choices, null=True, blank=True)
    # --- four eyes (contract section 13, ``operations.approvals``) ---------------------------
    #: Empty when the policy did not hold the operation; else WAITING, then APPROVED, DENIED
    #: or EXPIRED, set by the same compare-and-swap that moves ``state`` out of
    #: WAITING_FOR_APPROVAL, so the two never disagree.
    approval_state = models.CharField(max_length=16, choices=ApprovalState.choices, blank=True, default="")
    #: Who asked and who decided, as principals (``key:<id>``, ``user:<pk>``): the four-eyes
    #: check compares these, never the labels, which two keys may share.
    approval_requester = models.CharField(max_length=200, blank=True, default="")
    approval_decider = models.CharField(max_length=200, blank=True, default="")
    #: The decider's label, as ``updated_by`` records actors (the requester's is ``created_by``).
    approval_decided_by = models.CharField(max_length=200, blank=True, default="")
    approval_decided_at = models.DateTimeField(null=True, blank=True)
    approval_remark = models.TextField(blank=True, default="")
    #: Undecided by then, the expiry sweep denies it with the reason ``approval expired``.
    approval_expires_at = models.DateTimeField(null=True, blank=True)

    # --- recurring series and their runs (schedule_type RECURRING, operations.recurring) -------
    #: A run's series: the RECURRING operation whose firing made it.
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="runs", editable=False
    )
    #: A run's firing (the wall clock as UTC for a device-time series). With ``parent`` unique:
    #: one firing makes one run, whatever sweeps race or repeat.
    scheduled_for = models.DateTimeField(null=True, blank=True, editable=False)
    #: A series' next firing (as ``scheduled_for``), null once it has none left.
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: When the sweep makes the run of ``next_run_at``: its window's first possible opening.
    next_due_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: Runs the series has made.
    runs_count = models.PositiveIntegerField(default=0, editable=False)

    # --- templates (operations.templates) ------------------------------------------------------
    #: The template the operation was made from (null if none, or deleted since).
    template = models.ForeignKey(
        "operations.OperationTemplate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="operations",
        editable=False,
    )
    #: The template's parameter values used, defaults filled in.
    template_parameters = models.JSONField(null=True, blank=True, editable=False)

    # --- continuous operations and re-runs (operations.continuous, services.rerun) -----------
    #: SNAPSHOT, or CONTINUOUS: devices that come to match later join (``operations.continuous``).
    target_selection = models.CharField(
        max_length=16, choices=TargetSelection.choices, default=TargetSelection.SNAPSHOT
    )
    #: CONTINUOUS: the snapshot taken before the last complete look at device changes
    #: (``inventory.changes.horizon``): every change it saw as committed has been looked at.
    continuous_watermark = models.TextField(default="", blank=True, editable=False)
    #: CONTINUOUS: ``schedule_args.end_datetime``, after which no device joins.
    continuous_until = models.DateTimeField(null=True, blank=True, editable=False)
    #: CONTINUOUS: when it was closed (PUT COMPLETED, or ``continuous_until`` passed); it
    #: finishes when its commands do.
    continuous_closed_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: The operation this one re-runs on the devices whose commands ended as asked.
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns", editable=False
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="operations_tenant_created"),
            # The recovery sweep looks for operations stuck before DISPATCHED.
            models.Index(
                fields=["updated_at"],
                name="operations_unfinished_fanout",
                condition=models.Q(state__in=sorted(PRE_DISPATCH_STATES)),
            ),
            # The continuous sweep and a device change's nudge look for the open ones.
            models.Index(
                fields=["tenant"],
                name="operations_continuous_open",
                condition=models.Q(target_selection="CONTINUOUS", continuous_closed_at__isnull=True),
            ),
            # The stop's resume sweep (operations.sweeps.resume_stops): stops not finished.
            models.Index(
                fields=["stop_requested_at"],
                name="operations_stopping",
                condition=models.Q(stop_requested_at__isnull=False, commands_stopped_at__isnull=True),
            ),
            # The approvals queue and the expiry sweep: only what waits.
            models.Index(
                fields=["approval_expires_at"],
                name="operations_awaiting_approval",
                condition=models.Q(state=OperationState.WAITING_FOR_APPROVAL),
            ),
            # The series sweep (operations.series.fire_due): series due to make a run.
            models.Index(
                fields=["next_due_at"],
                name="operations_series_due",
                condition=models.Q(schedule_type="RECURRING", state=OperationState.SCHEDULED),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["parent", "scheduled_for"],
                name="operations_one_run_per_firing",
                condition=models.Q(parent__isnull=False),
            )
        ]
        permissions = [("approve_operation", "Can approve or deny operations waiting for approval")]

    def __str__(self) -> str:
        return f"{self.operation_type} {self.id}"

    @property
    def state_name(self) -> str:
        return OperationState(self.state).name

    @property
    def commands_stop(self) -> str | None:
        """``in_progress`` while a stop's worker is still moving unfinished commands, ``done``
        once it has moved the last, ``None`` for an operation never stopped."""
        if self.stop_requested_at is None:
            return None
        return "in_progress" if self.commands_stopped_at is None else "done"

    def counts(self) -> dict[str, int]:
        """``operation_stats.device_operation_statuses_count`` of seed 003, plus cancelled/pending."""
        return {
            "resolved_device_count": self.resolved_count,
            "dispatched_device_count": self.dispatched_count,
            "dispatch_failed_count": self.dispatch_failed_count,
            "failed_device_count": self.failed_count,
            "success_device_count": self.success_count,
            "cancelled_device_count": self.cancelled_count,
            "pending_device_count": self.pending_count,
        }


def default_policy_types() -> list[str]:
    return [str(t) for t in DESTRUCTIVE_TYPES]


class ApprovalPolicy(models.Model):
    """A tenant's four-eyes rule (contract section 13): which operations wait for a second
    admin. A tenant without a row has the default (:func:`default_policy_types`, no device
    threshold, 72 hours), so every tenant, old or new, starts protected."""

    tenant = models.OneToOneField(
        "inventory.Tenant", on_delete=models.CASCADE, related_name="approval_policy"
    )
    operation_types = models.JSONField(default=default_policy_types)
    #: Also hold any operation whose query matches at least this many devices when created.
    min_devices = models.PositiveIntegerField(null=True, blank=True)
    expires_after_hours = models.PositiveIntegerField(default=72)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return f"approval policy of tenant {self.tenant_id}"


class WaveState(models.TextChoices):
    WAITING = "WAITING"
    OPEN = "OPEN"
    DONE = "DONE"


class OperationWave(ExactCounters):
    """One wave of a rollout: its devices and the same exact counters as its operation.

    The counters move with the operation's, by the same rule (``commands.counting``), in
    the same statement or transaction, so a wave knows the moment its last command finishes.
    """

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="waves")
    wave = models.PositiveSmallIntegerField()
    percent = models.FloatField()
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["operation", "wave"]
        constraints = [
            models.UniqueConstraint(fields=["operation", "wave"], name="operations_wave_unique_number")
        ]

    def __str__(self) -> str:
        return f"wave {self.wave} of {self.operation_id}"

    @property
    def failed_total(self) -> int:
        return self.failed_count + self.dispatch_failed_count

    def state_in(self, current_wave: int) -> WaveState:
        if self.closed_at is not None:
            return WaveState.DONE
        return WaveState.OPEN if self.wave <= current_wave else WaveState.WAITING


class OperationActivity(models.Model):
    """One row per state the operation entered, with the counts at that moment."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="activity")
    state = models.PositiveSmallIntegerField(choices=OperationState.choices)
    operation_state = models.CharField(max_length=32)
    reason = models.TextField(blank=True)
    counts = models.JSONField(default=dict)
    actor = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "operation activity"

    def __str__(self) -> str:
        # As the console writes every time: UTC, and says so.
        return f"{self.operation_state} at {self.created_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
