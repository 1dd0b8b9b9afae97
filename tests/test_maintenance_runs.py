"""Maintenance runs: the fire guard, the exactly-once claim, and what a run repairs."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from celery.schedules import crontab
from django.db import connection
from django.utils import timezone

from commands.choices import CommandState
from commands.models import CommandStatus
from config.quartz import QuartzExpression
from inventory.models import Tenant
from maintenance import services, tasks
from maintenance.models import MaintenanceExecution, MaintenanceJob, Outcome
from operations.choices import OperationState
from operations.models import Operation
from tests.conftest import Org, add_device

UTC = dt.UTC


# --- the guard --------------------------------------------------------------------------------


def midnights(year: int) -> list[dt.datetime]:
    start = dt.datetime(year, 1, 1, tzinfo=UTC)
    days = (dt.datetime(year + 1, 1, 1, tzinfo=UTC) - start).days
    return [start + dt.timedelta(days=n) for n in range(days)]


def as_celery_crontab(expression: QuartzExpression) -> crontab:
    fields = expression.crontab_fields()
    assert fields is not None
    return crontab(**fields)


def crontab_wakes_at(cron: crontab, t: dt.datetime) -> bool:
    """Whether celery's crontab (what beat fires on) includes minute ``t`` (UTC)."""
    return (
        t.minute in cron.minute
        and t.hour in cron.hour
        and t.day in cron.day_of_month
        and t.month in cron.month_of_year
        and t.isoweekday() % 7 in cron.day_of_week
    )


@pytest.mark.parametrize(
    "text",
    [
        "0 0 0 L * ?",
        "0 0 0 ? * 6#3",
        "0 0 0 15W * ?",
        "0 0 0 1W * ?",
        "0 0 0 LW * ?",
        "0 0 0 L-2 * ?",
        "0 0 0 ? * 6L",
        "0 0 0 ? * 2#5",
        "0 0 0 ? * MON-FRI",
        "0 0 0 29 2 ?",
        "0 0 0 ? * 1#1 2024",
    ],
)
@pytest.mark.parametrize("year", [2024, 2025])
def test_the_guard_fires_on_exactly_the_days_of_the_expression(text: str, year: int) -> None:
    expression = QuartzExpression.parse(text)
    cron = as_celery_crontab(expression)
    expected = set(
        expression.next_fire_times(dt.datetime(year, 1, 1, tzinfo=UTC) - dt.timedelta(seconds=1), count=400)
    )
    expected = {fire for fire in expected if fire.year == year}

    guarded = set()
    for midnight in midnights(year):
        if crontab_wakes_at(cron, midnight):  # beat only wakes the task on the crontab's days
            fire = services.due_fire(expression, midnight)
            if fire is not None:
                assert fire == midnight
                guarded.add(fire)
        else:
            assert midnight not in expected, f"the crontab misses the fire {midnight}"

    assert guarded == expected
    if text.endswith("2024") and year == 2025:
        assert guarded == set()


def test_the_guard_accepts_a_late_or_slightly_early_wake_up_and_nothing_else() -> None:
    expression = QuartzExpression.parse("0 0 0 L * ?")
    fire = dt.datetime(2024, 2, 29, tzinfo=UTC)

    assert services.due_fire(expression, fire + dt.timedelta(seconds=1, microseconds=5)) == fire
    assert services.due_fire(expression, fire + dt.timedelta(minutes=14, seconds=59)) == fire
    assert services.due_fire(expression, fire - dt.timedelta(seconds=2)) == fire  # clock skew
    assert services.due_fire(expression, fire + services.MAX_LATENESS + dt.timedelta(minutes=1)) is None
    assert services.due_fire(expression, fire - dt.timedelta(minutes=1)) is None
    assert services.due_fire(expression, fire, not_before=fire + dt.timedelta(minutes=1)) is None


def test_the_guard_picks_the_newest_fire_of_a_backlog() -> None:
    expression = QuartzExpression.parse("0 * * ? * *")
    now = dt.datetime(2025, 5, 5, 10, 3, 20, tzinfo=UTC)

    assert services.due_fire(expression, now) == dt.datetime(2025, 5, 5, 10, 3, tzinfo=UTC)


def test_a_wake_up_on_a_day_the_expression_does_not_fire_leaves_no_row(org: Org) -> None:
    job = services.create_job(org.tenant.pk, "0 0 0 L * ?")
    MaintenanceJob.objects.filter(pk=job.pk).update(created_at=dt.datetime(2024, 1, 1, tzinfo=UTC))

    assert services.run_scheduled(job.pk, dt.datetime(2024, 4, 29, 0, 0, 1, tzinfo=UTC)) is None
    assert services.run_scheduled(job.pk, dt.datetime(2024, 4, 30, 0, 0, 1, tzinfo=UTC)) is not None

    [execution] = MaintenanceExecution.objects.filter(job=job)
    assert execution.scheduled_for == dt.datetime(2024, 4, 30, tzinfo=UTC)
    assert execution.outcome == Outcome.SUCCESS


def test_the_task_is_registered_under_the_name_beat_sends() -> None:
    assert tasks.run_maintenance_job.name == "maintenance.tasks.run_maintenance_job"


# --- exactly once -----------------------------------------------------------------------------


def in_threads(count: int, target: Any) -> list[Any]:
    """Run ``target()`` in ``count`` threads released together; each has its own connection."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_two_beats_waking_for_the_same_fire_run_it_once(
    transactional_db: None, org: Org, monkeypatch
) -> None:
    job = services.create_job(org.tenant.pk, "0 * * ? * *")
    now = timezone.now().replace(second=1)
    MaintenanceJob.objects.filter(pk=job.pk).update(created_at=now - dt.timedelta(hours=1))
    real_repair = services.repair

    def slow_repair(ids: Any) -> Any:
        time.sleep(0.3)  # an overlapping slow run
        return real_repair(ids)

    monkeypatch.setattr(services, "repair", slow_repair)

    results = in_threads(4, lambda: services.run_scheduled(job.pk, now))

    ran = [result for result in results if result is not None]
    assert len(ran) == 1
    assert MaintenanceExecution.objects.filter(job=job).count() == 1
    assert ran[0].outcome == Outcome.SUCCESS
    # A redelivered message for the same fire, and a late one for an older fire, do nothing.
    assert services.run_scheduled(job.pk, now) is None
    assert services.run_scheduled(job.pk, now - dt.timedelta(minutes=1)) is None
    assert MaintenanceExecution.objects.filter(job=job).count() == 1


def test_concurrent_claims_of_one_fire_have_one_winner(transactional_db: None, org: Org) -> None:
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")
    fire = dt.datetime(2025, 1, 1, 4, tzinfo=UTC)

    results = in_threads(8, lambda: services.claim_fire(job.pk, fire, timezone.now()))

    assert sum(result is not None for result in results) == 1
    assert MaintenanceJob.objects.get(pk=job.pk).last_fire == fire


def test_the_unique_fire_row_backs_up_the_claim(org: Org) -> None:
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")
    fire = dt.datetime(2025, 1, 1, 4, tzinfo=UTC)
    assert services.claim_fire(job.pk, fire, timezone.now()) is not None
    MaintenanceJob.objects.filter(pk=job.pk).update(last_fire=None)  # reset by hand

    assert services.claim_fire(job.pk, fire, timezone.now()) is None
    assert MaintenanceExecution.objects.filter(job=job).count() == 1


def test_a_deactivated_job_records_a_skipped_fire(org: Org) -> None:
    job = services.set_active(services.create_job(org.tenant.pk, "0 * * ? * *"), False)
    MaintenanceJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))

    execution = services.run_scheduled(job.pk)

    assert execution is not None and execution.outcome == Outcome.SKIPPED
    assert execution.operations_checked == 0


def test_a_deleted_job_ignores_its_wake_up(org: Org) -> None:
    job = services.create_job(org.tenant.pk, "0 * * ? * *")
    services.delete_job(job)

    assert services.run_scheduled(job.pk) is None


# --- what a run does --------------------------------------------------------------------------


def make_operation(tenant: Tenant, states: list[CommandState], **fields: Any) -> Operation:
    """An operation with one command per state, its counters as the commands say."""
    operation = Operation.objects.create(
        tenant=tenant,
        operation_type="REBOOT",
        device_query={"all": True},
        state=OperationState.PROCESSING,
        resolved_count=len(states),
        dispatched_count=len(states),
        success_count=states.count(CommandState.SUCCESS),
        **fields,
    )
    for index, state in enumerate(states):
        device = add_device(tenant, f"dev-{operation.pk.hex[:8]}-{index}").device
        CommandStatus.objects.create(
            tenant=tenant,
            operation=operation,
            device=device,
            command="REBOOT",
            state=state,
            dispatched_at=timezone.now(),
        )
    return operation


def corrupt(operation: Operation, touch: bool = False) -> None:
    """Break a counter the way a manual SQL edit would (``touch``: also mark it changed)."""
    extra = {"updated_at": timezone.now()} if touch else {}
    Operation.objects.filter(pk=operation.pk).update(success_count=99, **extra)


def success_count(operation: Operation) -> int:
    return Operation.objects.get(pk=operation.pk).success_count


def test_a_run_repairs_drifted_counters_and_records_it(org: Org) -> None:
    operation = make_operation(org.tenant, [CommandState.SUCCESS, CommandState.IN_PROGRESS])
    corrupt(operation)
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")

    execution = services.run_now(job)

    assert success_count(operation) == 1
    execution.refresh_from_db()
    assert execution.outcome == Outcome.SUCCESS
    assert execution.counts_fixed == 1
    assert execution.operations_checked == 1
    assert execution.finished_at is not None and execution.started_at <= execution.finished_at
    assert execution.error == ""


def test_a_run_times_out_overdue_commands(org: Org) -> None:
    operation = make_operation(org.tenant, [CommandState.SUCCESS])
    late = add_device(org.tenant, "dev-late").device
    CommandStatus.objects.create(
        tenant=org.tenant,
        operation=operation,
        device=late,
        command="REBOOT",
        state=CommandState.QUEUED,
        deadline=timezone.now() - dt.timedelta(minutes=1),
    )
    Operation.objects.filter(pk=operation.pk).update(resolved_count=2)
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")

    execution = services.run_now(job)

    assert execution.commands_timed_out == 1
    assert CommandStatus.objects.get(device=late).state == CommandState.TIMEOUT


def test_an_incremental_run_checks_only_what_changed_since_the_last_success(org: Org) -> None:
    old = make_operation(org.tenant, [CommandState.SUCCESS])
    fresh = make_operation(org.tenant, [CommandState.SUCCESS])
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *", full_build=False)
    previous = timezone.now()
    MaintenanceExecution.objects.create(
        job=job, scheduled_for=previous, started_at=previous, finished_at=previous, outcome=Outcome.SUCCESS
    )
    # A later failed run does not move the starting point.
    failed_at = previous + dt.timedelta(microseconds=10)
    MaintenanceExecution.objects.create(
        job=job, scheduled_for=failed_at, started_at=failed_at, outcome=Outcome.FAILURE
    )
    corrupt(old)
    corrupt(fresh, touch=True)

    execution = services.run_now(job)

    assert execution.changed_since == previous
    assert execution.operations_checked == 1
    assert (success_count(old), success_count(fresh)) == (99, 1)
    assert execution.counts_fixed == 1

    services.update_job(job, full_build=True)
    full = services.run_now(job)

    assert full.full_build is True and full.changed_since is None
    assert full.operations_checked == 2
    assert success_count(old) == 1 and full.counts_fixed == 1


def test_the_first_incremental_run_checks_everything(org: Org) -> None:
    operation = make_operation(org.tenant, [CommandState.SUCCESS])
    corrupt(operation)
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")

    execution = services.run_now(job)

    assert execution.changed_since is None and success_count(operation) == 1


def test_a_failing_run_is_recorded_and_logged(org: Org, monkeypatch, caplog) -> None:
    def broken(ids: Any) -> Any:
        raise RuntimeError("the database ate it")

    monkeypatch.setattr(services, "repair", broken)
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")

    execution = services.run_now(job)

    execution.refresh_from_db()
    assert execution.outcome == Outcome.FAILURE
    assert execution.error == "RuntimeError: the database ate it"
    assert execution.finished_at is not None
    assert "maintenance job" in caplog.text and "the database ate it" in caplog.text
    # The next incremental run does not start from a failed one.
    assert services.changed_since_for(job, services.run_now(job)) is None


def test_a_run_touches_only_its_own_tenants_operations(org: Org, other_org: Org) -> None:
    mine = make_operation(org.tenant, [CommandState.SUCCESS])
    theirs = make_operation(other_org.tenant, [CommandState.SUCCESS])
    corrupt(mine)
    corrupt(theirs)
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")

    execution = services.run_now(job)

    assert execution.operations_checked == 1
    assert (success_count(mine), success_count(theirs)) == (1, 99)
