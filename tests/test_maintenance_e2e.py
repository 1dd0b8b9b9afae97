"""End to end: a real celery beat (DatabaseScheduler) and worker run an every-minute schedule."""

from __future__ import annotations

import pytest

from maintenance.models import MaintenanceExecution, Outcome
from tests.conftest import CeleryProcesses, Org, wait_until

pytestmark = pytest.mark.e2e


def test_an_every_minute_schedule_runs_and_shows_as_latest_execution(
    celery_processes: CeleryProcesses, org: Org
) -> None:
    celery_processes.worker(concurrency=1)
    celery_processes.beat()
    path = "/aggregates/maintenance/scheduler/jobs/orgId/acme"
    created = org.admin.post(path, {"time_expression": "0 * * ? * *", "scheduler_type": "time-based"})
    assert created.status_code == 200, created.content
    job_id = created.json()["response"]["job_id"]

    def latest() -> dict | None:
        [item] = org.admin.get(path).json()["response"]
        return item["latest_execution"]

    try:
        execution = wait_until(latest, timeout=80, interval=1.0, what="a run of the job")
    except AssertionError:
        print(celery_processes.log("beat"), celery_processes.log("worker"))
        raise
    assert execution["jobId"] == job_id
    run = MaintenanceExecution.objects.get(pk=execution["id"])
    wait_until(lambda: MaintenanceExecution.objects.get(pk=run.pk).finished_at, what="the run to finish")
    run.refresh_from_db()
    assert run.outcome == Outcome.SUCCESS, run.error
    assert run.scheduled_for.second == 0 and run.scheduled_for.microsecond == 0
    assert not run.manual
