"""Two beat processes at once (a second one started by mistake, or during a hand-over): both
send every schedule, and still each maintenance fire and each headless run happens once.

The claims are in the database (``maintenance.services.claim_fire``, the headless sweep's
``SKIP LOCKED`` claim), not in beat. 50 concurrent status updates on one operation leaving
exact counters are covered by tests/test_command_concurrency.py.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.db.models import Count

from commands.models import CommandStatus
from maintenance.models import MaintenanceExecution
from operations import headless
from operations.models import HeadlessOperation
from tests.conftest import CeleryProcesses, add_device, make_org, wait_until
from tests.helpers import sends, tasks_finished, tasks_sent

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

BEATS = ("beat-a", "beat-b")


def test_two_beats_run_each_maintenance_fire_and_each_headless_run_once(
    celery_processes: CeleryProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_SECONDS", "1")
    monkeypatch.setenv("FANOUT_STUCK_SECONDS", "2")
    org = make_org("acme")
    devices = [add_device(org.tenant, f"beat-{i}").device for i in range(10)]
    path = "/aggregates/maintenance/scheduler/jobs/orgId/acme"
    jobs = []
    for _ in range(3):  # every minute (the finest a schedule may be), at second 0
        created = org.admin.post(path, {"time_expression": "0 * * ? * *", "scheduler_type": "time-based"})
        assert created.status_code == 200, created.content
        jobs.append(created.json()["response"]["job_id"])
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=8)
    runs = [
        headless.create_operation(org.tenant.pk, device, "firmware_update", due, {}, 1).pk
        for device in devices
    ]

    celery_processes.worker(concurrency=4)
    for name in BEATS:
        celery_processes.beat(name)

    def ran() -> bool:
        return HeadlessOperation.objects.filter(pk__in=runs, command__isnull=False).count() == len(runs)

    wait_until(ran, timeout=60, what=f"the headless runs\n{celery_processes.log('worker')[-3000:]}")

    def fired() -> bool:
        return MaintenanceExecution.objects.filter(job_id__in=jobs).values("job_id").distinct().count() == 3

    wait_until(fired, timeout=80, interval=1, what="a fire of every maintenance job")

    def both_beats_sent_every_job() -> bool:
        # A beat that loaded a job's schedule after one of its minutes sends it the next minute.
        return all(
            sum(sends(celery_processes.log(name), f"maintenance-job:{job}") for job in jobs) >= 3
            for name in BEATS
        )

    wait_until(both_beats_sent_every_job, timeout=75, interval=1, what="both beats sending every job")

    # More sweeps from both beats, each a chance to run a headless operation again: three
    # more from each, and the worker has run every task the beats had sent by then.
    swept = {name: sends(celery_processes.log(name), "run-due-headless") for name in BEATS}

    def more_sweeps_sent() -> bool:
        return all(sends(celery_processes.log(name), "run-due-headless") >= swept[name] + 3 for name in BEATS)

    wait_until(more_sweeps_sent, timeout=30, interval=0.5, what="three more headless sweeps from each beat")
    sent = sum((tasks_sent(celery_processes.log(name)) for name in BEATS), Counter[str]())

    def worker_ran_them() -> bool:
        return not sent - tasks_finished(celery_processes.log("worker"))

    wait_until(worker_ran_them, timeout=60, what=f"the worker to run every task the beats sent: {dict(sent)}")
    for name in BEATS:
        celery_processes.kill(name)

    for name in BEATS:  # both beats really sent both schedules
        log = celery_processes.log(name)
        assert sends(log, "run-due-headless") > 0, log[-2000:]
        assert sum(sends(log, f"maintenance-job:{job}") for job in jobs) >= 3, log[-2000:]

    executions = MaintenanceExecution.objects.filter(job_id__in=jobs, manual=False)
    fires = executions.count()
    assert fires >= 3
    duplicated = executions.values("job_id", "scheduled_for").annotate(n=Count("pk")).filter(n__gt=1)
    assert not duplicated.exists()
    worker_log = celery_processes.log("worker")
    assert worker_log.count("already claimed") > 0  # the second beat's wake-ups found the fire taken
    print(
        f"{fires} maintenance fires, each once; 'already claimed' {worker_log.count('already claimed')} times"
    )

    for run in HeadlessOperation.objects.filter(pk__in=runs):
        assert run.attempts == 1
        assert CommandStatus.objects.filter(request_ref=str(run.pk), is_internal=True).count() == 1
    assert CommandStatus.objects.filter(tenant=org.tenant, is_internal=True, operation=None).count() == len(
        runs
    )
