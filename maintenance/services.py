"""What the system does with maintenance schedules; called by the API, the admin and the task.

A job is one django-celery-beat ``PeriodicTask`` on a UTC ``CrontabSchedule`` built by
``QuartzExpression.crontab_fields()``. That crontab is exact for plain fields and a superset
for what a crontab cannot say (``L``, ``W``, ``#``, years), so the task guards each wake-up
with :func:`due_fire`, which asks ``QuartzExpression.matches``. A fire is claimed before it
runs (:func:`claim_fire`), so two beats, a redelivered message or a slow overlapping run
never execute the same fire twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from commands.sweeps import time_out_overdue
from config import timestamps
from config.errors import Conflict, DomainError
from config.quartz import QuartzError, QuartzExpression
from config.transitions import swap
from inventory.events import emit
from inventory.models import EventType, Tenant
from maintenance.models import ALLOWED_TRANSITIONS, MaintenanceExecution, MaintenanceJob, Outcome
from operations.aggregates import operations_to_check, repair

logger = logging.getLogger(__name__)

TASK_NAME = "maintenance.tasks.run_maintenance_job"
#: How late a wake-up may still run its fire (a busy worker, a slow broker). Later ones are
#: dropped by the broker message's expiry and, should one arrive anyway, by the guard.
MAX_LATENESS = dt.timedelta(minutes=15)
#: Tolerated clock difference between the beat and worker hosts: a worker whose clock is
#: slightly behind still sees the minute beat fired for.
CLOCK_SKEW = dt.timedelta(seconds=5)
UTC = dt.UTC


# --- expressions ------------------------------------------------------------------------------


def parse_expression(text: str) -> QuartzExpression:
    """The expression, or a ``DomainError`` on ``time_expression`` naming the part at fault.

    The check of every expression a user gives (API, console, services). Also refuses what
    parses but beat cannot honour (a seconds field other than 0), and what would never fire
    (``0 0 0 30 FEB ?``, a year already past): a job that silently never runs is a mistake.
    """
    try:
        expression = QuartzExpression.parse(text)
    except QuartzError as err:
        raise DomainError({"time_expression": [f"{err.field}: {err.message}"]}) from None
    reason = expression.unsupported_reason() or expression.never_fires_reason(timezone.now())
    if reason is not None:
        raise DomainError({"time_expression": [reason]})
    return expression


def check_frequency(expression: QuartzExpression, full_build: bool) -> None:
    """Refuse a full build that fires more often than ``MAINTENANCE_FULL_BUILD_MIN_MINUTES``.

    A full build recounts every operation (the command table scanned); sixty of them a minute
    were accepted and all ran. Incremental runs check only what changed, so any frequency
    beat can honour is theirs.
    """
    if not full_build:
        return
    floor = dt.timedelta(minutes=settings.MAINTENANCE_FULL_BUILD_MIN_MINUTES)
    gap = expression.shortest_gap(timezone.now())
    if gap is not None and gap < floor:
        raise DomainError(
            {
                "time_expression": [
                    f"fires {_duration(gap)} apart at its closest; a full_build job may fire at most "
                    f"once every {_duration(floor)} (MAINTENANCE_FULL_BUILD_MIN_MINUTES): schedule it "
                    "less often, or set full_build false for a frequent incremental run"
                ]
            },
            code="full_build_too_frequent",
        )


def check_room(tenant_id: int) -> None:
    """Refuse a tenant's job past ``MAINTENANCE_JOBS_PER_TENANT``; call inside the create's
    transaction. The tenant's row is locked (``FOR NO KEY UPDATE``: inserts that reference the
    tenant go on) so that two creates at once count one after the other."""
    list(Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).values_list("pk"))
    limit = settings.MAINTENANCE_JOBS_PER_TENANT
    if MaintenanceJob.objects.filter(tenant_id=tenant_id).count() >= limit:
        raise Conflict(
            {
                "orgId": [
                    f"has {limit} maintenance jobs, the most allowed (MAINTENANCE_JOBS_PER_TENANT); "
                    "delete one, or change one's time_expression, instead"
                ]
            },
            code="too_many_jobs",
        )


def _duration(gap: dt.timedelta) -> str:
    minutes = int(gap.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440} day{'s' if minutes != 1440 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def next_fire(job: MaintenanceJob, after: dt.datetime | None = None) -> dt.datetime | None:
    """When an active job fires next (UTC), or None (inactive, or never again)."""
    if not job.active:
        return None
    try:
        return QuartzExpression.parse(job.time_expression).next_fire_time(after or timezone.now())
    except QuartzError:
        return None


def due_fire(
    expression: QuartzExpression, now: dt.datetime, not_before: dt.datetime | None = None
) -> dt.datetime | None:
    """The guard: the fire a wake-up at ``now`` stands for, or None when it is not a true fire.

    That is the newest UTC minute at or before ``now`` (plus ``CLOCK_SKEW``), and no more than
    ``MAX_LATENESS`` before it, that the Quartz expression matches. A crontab superset wake-up
    on a day the expression does not fire (the 30th of a 31-day month for ``L``) finds none.
    """
    minute = (now + CLOCK_SKEW).astimezone(UTC).replace(second=0, microsecond=0)
    floor = minute - MAX_LATENESS
    if not_before is not None:
        floor = max(floor, not_before.astimezone(UTC).replace(second=0, microsecond=0))
    candidate = minute
    while candidate >= floor:
        if expression.matches(candidate):
            return candidate
        candidate -= dt.timedelta(minutes=1)
    return None


# --- the job and its periodic task -----------------------------------------------------------


def _crontab_for(expression: QuartzExpression) -> CrontabSchedule:
    fields = expression.crontab_fields()
    assert fields is not None, "parse_expression() refuses what has no crontab"
    # CrontabSchedule has no unique constraint; take any equal row instead of get_or_create.
    existing = CrontabSchedule.objects.filter(timezone="UTC", **fields).order_by("pk").first()
    return existing or CrontabSchedule.objects.create(timezone="UTC", **fields)


def _drop_unused_crontab(crontab_id: int | None) -> None:
    if crontab_id is not None and not PeriodicTask.objects.filter(crontab_id=crontab_id).exists():
        CrontabSchedule.objects.filter(pk=crontab_id).delete()


def sync_periodic_task(job: MaintenanceJob) -> PeriodicTask:
    """Make the job's beat entry match the job: crontab, enabled flag, argument.

    ``PeriodicTask.save()`` bumps ``PeriodicTasks.last_update``, which is how a running
    ``DatabaseScheduler`` notices the change (within its sync interval, a few seconds).
    """
    # Checked when it was given; a stored job whose last year has passed since is still synced
    # (switched off, say), so no never-fires check here.
    crontab = _crontab_for(QuartzExpression.parse(job.time_expression))
    task = job.periodic_task or PeriodicTask.objects.filter(name=job.periodic_task_name).first()
    old_crontab_id = task.crontab_id if task is not None else None
    if task is None:
        task = PeriodicTask(name=job.periodic_task_name)
    task.task = TASK_NAME
    task.crontab = crontab
    task.interval = task.solar = task.clocked = None
    task.args = json.dumps([str(job.pk)])
    task.kwargs = "{}"
    task.enabled = job.active
    task.one_off = False
    # A message not picked up in time is dropped by the worker; the guard would refuse it anyway.
    task.expire_seconds = int(MAX_LATENESS.total_seconds())
    task.description = f"Maintenance of tenant {job.tenant_id}: {job.time_expression}"
    task.save()
    if job.periodic_task_id != task.pk:
        job.periodic_task = task
        job.save(update_fields=["periodic_task"])
    if old_crontab_id != crontab.pk:
        _drop_unused_crontab(old_crontab_id)
    return task


@transaction.atomic
def create_job(
    tenant_id: int, time_expression: str, full_build: bool = False, created_by: str = ""
) -> MaintenanceJob:
    check_frequency(parse_expression(time_expression), full_build)
    check_room(tenant_id)
    job = MaintenanceJob.objects.create(
        tenant_id=tenant_id,
        time_expression=time_expression.strip(),
        full_build=full_build,
        created_by_user=created_by,
    )
    sync_periodic_task(job)
    return job


@transaction.atomic
def update_job(job: MaintenanceJob, **changes: Any) -> MaintenanceJob:
    """Change ``time_expression``, ``full_build`` or ``active`` and keep beat in step.

    A new expression, or a job turned into a full build, is checked as a new job is; switching
    a job on or off is not (a job saved before a check existed can still be switched off).
    """
    if "time_expression" in changes:
        expression = parse_expression(changes["time_expression"])
        changes["time_expression"] = changes["time_expression"].strip()
        check_frequency(expression, changes.get("full_build", job.full_build))
    elif changes.get("full_build") and not job.full_build:
        check_frequency(QuartzExpression.parse(job.time_expression), True)
    for name, value in changes.items():
        setattr(job, name, value)
    if changes:
        job.save(update_fields=list(changes))
    sync_periodic_task(job)
    return job


def set_active(job: MaintenanceJob, active: bool) -> MaintenanceJob:
    return update_job(job, active=active)


@transaction.atomic
def delete_job(job: MaintenanceJob) -> None:
    """Delete the job, its executions and its beat entry (and the crontab if nothing else uses it)."""
    task = job.periodic_task or PeriodicTask.objects.filter(name=job.periodic_task_name).first()
    job.delete()
    if task is not None:
        crontab_id = task.crontab_id
        task.delete()  # also bumps PeriodicTasks.last_update, so beat forgets it
        _drop_unused_crontab(crontab_id)


# --- running ----------------------------------------------------------------------------------


def claim_fire(job_id: uuid.UUID | str, fire: dt.datetime, now: dt.datetime) -> MaintenanceExecution | None:
    """Claim ``fire`` of the job for this caller, or None if someone already has (or a newer one).

    The conditional UPDATE of ``last_fire`` serialises claimants on the job's row: the second
    one re-reads the row after the first commits and matches nothing. The unique (job, fire)
    execution row backs it up should ``last_fire`` ever be reset by hand.
    """
    try:
        with transaction.atomic():
            won = (
                MaintenanceJob.objects.filter(pk=job_id)
                .filter(Q(last_fire__isnull=True) | Q(last_fire__lt=fire))
                .update(last_fire=fire)
            )
            if not won:
                return None
            return MaintenanceExecution.objects.create(job_id=job_id, scheduled_for=fire, started_at=now)
    except IntegrityError:
        return None


def run_scheduled(job_id: uuid.UUID | str, now: dt.datetime | None = None) -> MaintenanceExecution | None:
    """What beat's wake-up does: guard, claim, run. None when there was nothing to run."""
    now = now or timezone.now()
    job = MaintenanceJob.objects.filter(pk=job_id).first()
    if job is None:
        logger.info("maintenance job %s no longer exists; ignoring its wake-up", job_id)
        return None
    try:
        expression = QuartzExpression.parse(job.time_expression)
    except QuartzError as err:
        logger.error("maintenance job %s has an invalid expression %r: %s", job.pk, job.time_expression, err)
        return None
    fire = due_fire(expression, now, not_before=job.created_at)
    if fire is None:
        logger.debug("maintenance job %s: %s is not a fire of %r", job.pk, now, job.time_expression)
        return None
    execution = claim_fire(job.pk, fire, now)
    if execution is None:
        logger.info("maintenance job %s: fire %s already claimed", job.pk, fire.isoformat())
        return None
    if not job.active:
        # A message sent just before the job was deactivated.
        return _finish(execution, Outcome.SKIPPED, error="the job was deactivated")
    return execute(job, execution)


def run_now(job: MaintenanceJob) -> MaintenanceExecution:
    """Run the job at once (admin "run now"), whether active or not, outside its schedule."""
    now = timezone.now()
    execution = MaintenanceExecution.objects.create(job=job, scheduled_for=now, started_at=now, manual=True)
    return execute(job, execution)


def changed_since_for(job: MaintenanceJob, execution: MaintenanceExecution) -> dt.datetime | None:
    """Where an incremental run starts: the start of the job's previous successful run.

    None (check everything) for a full build and for a job that never succeeded. Failed runs
    are not counted, so what they missed is checked next time.
    """
    if job.full_build:
        return None
    previous = (
        MaintenanceExecution.objects.filter(
            job=job, outcome=Outcome.SUCCESS, started_at__lt=execution.started_at
        )
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return previous


def execute(job: MaintenanceJob, execution: MaintenanceExecution) -> MaintenanceExecution:
    """Rebuild operation aggregates and time out overdue commands; record what happened.

    Errors are caught, logged and recorded as a failed execution: the schedule goes on.
    """
    changed_since = changed_since_for(job, execution)
    execution.full_build = job.full_build
    execution.changed_since = changed_since
    checked = _Counter()
    try:
        repairs = repair(checked.count(operations_to_check(changed_since, tenant_id=job.tenant_id)))
        execution.operations_checked = checked.value
        execution.counts_fixed = len(repairs)
        execution.commands_timed_out = time_out_overdue(tenant_id=job.tenant_id)
    except Exception as exc:
        logger.exception("maintenance job %s failed (execution %s)", job.pk, execution.pk)
        execution.operations_checked = checked.value
        return _finish(execution, Outcome.FAILURE, error=f"{type(exc).__name__}: {exc}")
    if execution.counts_fixed:
        logger.warning("maintenance job %s fixed %d drifted counters", job.pk, execution.counts_fixed)
    return _finish(execution, Outcome.SUCCESS)


def _finish(execution: MaintenanceExecution, outcome: Outcome, error: str = "") -> MaintenanceExecution:
    """The one writer of an execution's outcome: RUNNING to its end, once, as the table allows
    (``config.transitions.swap``, so a run recorded twice cannot finish twice)."""
    sources = [str(old) for old, targets in ALLOWED_TRANSITIONS.items() if outcome in targets]
    execution.outcome, execution.error, execution.finished_at = outcome, error, timezone.now()
    fields = [f.attname for f in MaintenanceExecution._meta.concrete_fields if not f.primary_key]
    job = execution.job
    finished = swap(
        MaintenanceExecution.objects.filter(pk=execution.pk),
        "outcome",
        sources,
        {name: getattr(execution, name) for name in fields},
        then=lambda _moved: emit(
            job.tenant_id, EventType.MAINTENANCE_EXECUTED, _execution_data(job, execution)
        ),
    )
    if not finished:
        raise DomainError(
            {"outcome": [f"execution {execution.pk} has finished already"]}, code="invalid_transition"
        )
    return execution


def _execution_data(job: MaintenanceJob, execution: MaintenanceExecution) -> dict[str, object]:
    """``maintenance.executed``: the run as ``latest_execution`` shows it, with its job's ids."""
    return {
        "job_id": str(job.pk),
        "execution_id": str(execution.pk),
        "outcome": execution.outcome,
        "manual": execution.manual,
        "full_build": execution.full_build,
        "scheduled_for": timestamps.format(execution.scheduled_for),
        "started_at": timestamps.format(execution.started_at),
        "finished_at": timestamps.format(execution.finished_at),
        "operations_checked": execution.operations_checked,
        "counts_fixed": execution.counts_fixed,
        "commands_timed_out": execution.commands_timed_out,
        "error": execution.error,
    }


class _Counter:
    """Counts the ids that pass through, without materialising a million of them."""

    def __init__(self) -> None:
        self.value = 0

    def count(self, items: Iterable[uuid.UUID]) -> Iterator[uuid.UUID]:
        for item in items:
            self.value += 1
            yield item
