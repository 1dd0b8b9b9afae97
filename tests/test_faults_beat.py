"""Two beat processes at once (a second one started by mistake, or during a hand-over): both
send every schedule, and still each maintenance fire and each headless run happens once.

The claims are in the database (``maintenance.services.claim_fire``, the headless sweep's
``SKIP LOCKED`` claim), not in beat. 50 concurrent status updates on one operation leaving
exact counters are covered by tests/test_command_concurrency.py.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from django.db.models import Count

from commands.models import CommandStatus
from maintenance.models import MaintenanceExecution
from operations import headless
from operations.models import HeadlessOperation
from tests.conftest import CeleryProcesses, add_device, make_org, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

SEND = "Scheduler: Sending due task"


def _beat(procs: CeleryProcesses, name: str, tmp: Path) -> None:
    procs.start(
        name,
        "beat",
        "-l",
        "info",
        "-s",
        str(tmp / f"{name}-schedule"),
        "--scheduler",
        "django_celery_beat.schedulers:DatabaseScheduler",
    )


def test_two_beats_run_each_maintenance_fire_and_each_headless_run_once(
    celery_processes: CeleryProcesses, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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

    celery_processes.start(
        "worker", "worker", "-l", "info", "-c", "4", "--without-heartbeat", "--without-gossip"
    )
    _beat(celery_processes, "beat-a", tmp_path)
    _beat(celery_processes, "beat-b", tmp_path)

    def ran() -> bool:
        return HeadlessOperation.objects.filter(pk__in=runs, command__isnull=False).count() == len(runs)

    wait_until(ran, timeout=60, what=f"the headless runs\n{celery_processes.log('worker')[-3000:]}")

    def fired() -> bool:
        return MaintenanceExecution.objects.filter(job_id__in=jobs).values("job_id").distinct().count() == 3

    wait_until(fired, timeout=80, interval=1, what="a fire of every maintenance job")

    def both_beats_sent_every_job() -> bool:
        # A beat that loaded a job's schedule after one of its minutes sends it the next minute.
        return all(
            sum(celery_processes.log(name).count(f"{SEND} maintenance-job:{job}") for job in jobs) >= 3
            for name in ("beat-a", "beat-b")
        )

    wait_until(both_beats_sent_every_job, timeout=75, interval=1, what="both beats sending every job")
    time.sleep(5)  # more sweeps from both beats
    celery_processes.kill("beat-a")
    celery_processes.kill("beat-b")
    time.sleep(2)  # let the worker finish what was sent

    for name in ("beat-a", "beat-b"):  # both beats really sent both schedules
        log = celery_processes.log(name)
        assert f"{SEND} run-due-headless" in log, log[-2000:]
        assert sum(log.count(f"{SEND} maintenance-job:{job}") for job in jobs) >= 3, log[-2000:]

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
