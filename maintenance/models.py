"""Maintenance schedules (seed 004) and the record of each run."""

from __future__ import annotations

import uuid

from django.db import models


class Outcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    SKIPPED = "skipped", "Skipped"


#: The only place that decides which outcome may follow which: a run is recorded RUNNING
#: and finishes once (``maintenance.services._finish`` is the one writer).
ALLOWED_TRANSITIONS: dict[Outcome, frozenset[Outcome]] = {
    Outcome.RUNNING: frozenset({Outcome.SUCCESS, Outcome.FAILURE, Outcome.SKIPPED}),
    Outcome.SUCCESS: frozenset(),
    Outcome.FAILURE: frozenset(),
    Outcome.SKIPPED: frozenset(),
}

#: Outcomes of a run that actually did (or is doing) the work; ``latest_execution`` shows these.
EXECUTED_OUTCOMES = (Outcome.RUNNING, Outcome.SUCCESS, Outcome.FAILURE)


class MaintenanceJob(models.Model):
    """A tenant's time-based maintenance schedule: a Quartz cron expression and what to rebuild.

    Beat fires it through ``periodic_task`` (kept in step by ``maintenance.services``); the
    task then claims the fire by moving ``last_fire`` forward with a conditional UPDATE, so a
    fire runs once however many beats or redeliveries send it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("inventory.Tenant", on_delete=models.CASCADE, related_name="maintenance_jobs")
    time_expression = models.CharField(max_length=200, help_text="Quartz cron, e.g. 0 0 4 ? * *")
    full_build = models.BooleanField(
        default=False, help_text="Recount every operation, not only those changed since the last run."
    )
    active = models.BooleanField(default=True)
    created_by_user = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="maintenance_job",
        editable=False,
    )
    #: The newest scheduled fire (UTC minute) a task has claimed; never moves backwards.
    last_fire = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="maintenance_tenant_created")]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.time_expression} ({self.id})"

    @property
    def periodic_task_name(self) -> str:
        return f"maintenance-job:{self.id}"


class MaintenanceExecution(models.Model):
    """One run of a job: when it was due, when it ran, what it fixed, how it ended."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(MaintenanceJob, on_delete=models.CASCADE, related_name="executions")
    #: The fire this run stands for (a UTC minute), or the moment of a manual run.
    scheduled_for = models.DateTimeField()
    manual = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    full_build = models.BooleanField(default=False)
    changed_since = models.DateTimeField(null=True, blank=True)
    operations_checked = models.PositiveIntegerField(default=0)
    #: Counter values that were wrong and were corrected (one operation may have several).
    counts_fixed = models.PositiveIntegerField(default=0)
    commands_timed_out = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # A fire runs once: the second claim of the same (job, fire) fails here.
            models.UniqueConstraint(
                fields=["job", "scheduled_for"], name="%(app_label)s_%(class)s_unique_job_fire"
            )
        ]
        indexes = [
            # latest_execution: the newest execution of each job.
            models.Index(fields=["job", "-started_at"], name="maintenance_exec_job_started")
        ]

    def __str__(self) -> str:
        return f"{self.job_id} at {self.scheduled_for:%Y-%m-%d %H:%M} ({self.outcome})"
