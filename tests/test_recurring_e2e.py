"""End to end: a RECURRING series under two beat processes and a worker makes one run per firing.

Both beats send the series sweep every second; the sweep's row lock and the unique (parent,
scheduled_for) run are what make each firing once, not beat.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

from inventory.models import EventType, WebhookEvent
from inventory.webhooks.services import create_endpoint
from operations.choices import OperationState
from operations.models import Operation, OperationActivity
from tests.conftest import CeleryProcesses, add_device, make_org, wait_until
from tests.helpers import content, sends, task_events

pytestmark = pytest.mark.e2e

BEATS = ("beat-a", "beat-b")
RUNS = 4


def test_two_beats_make_one_run_per_firing(
    celery_processes: CeleryProcesses, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setenv("SERIES_SWEEP_SECONDS", "1")
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "1")
    org = make_org("acme")
    add_device(org.tenant, "dev-1")
    add_device(org.tenant, "dev-2", timezone="Asia/Tokyo")
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    create_endpoint(org.tenant.pk, "http://127.0.0.1:9/hook", ["operation.created"])
    body = {
        "operation_type": "REBOOT",
        "schedule_type": "RECURRING",
        # Every 2 s: the sweep may make seconds-level firings, which keeps this test short.
        "schedule_args": {"time_expression": "*/2 * * * * ?", "duration_minutes": 1, "max_runs": RUNS},
        "operation_device_query": {"all": True},
    }
    created = content(org.operator.post("/v0/operations/", body), 201)

    celery_processes.worker(concurrency=2)
    for name in BEATS:
        celery_processes.beat(name)

    def ended() -> bool:
        return Operation.objects.filter(pk=created["id"], runs_count=RUNS, next_run_at__isnull=True).exists()

    try:
        wait_until(ended, timeout=60, interval=0.5, what="the series to make its runs")
        # Both beats sent the sweep more than once after the last firing was due.
        counts = {name: sends(celery_processes.log(name), "fire-series") for name in BEATS}
        wait_until(
            lambda: all(sends(celery_processes.log(n), "fire-series") >= counts[n] + 2 for n in BEATS),
            timeout=30,
            what="more sweeps from each beat",
        )
        runs = list(Operation.objects.filter(parent_id=created["id"]).order_by("scheduled_for"))
        wait_until(
            lambda: (
                Operation.objects.filter(pk__in=[run.pk for run in runs], resolved_count=2).count() == RUNS
            ),
            timeout=30,
            what="the worker to fan out every run",
        )
    except AssertionError:
        print(*(celery_processes.log(name)[-3000:] for name in (*BEATS, "worker")))
        raise

    assert len(runs) == RUNS
    assert len({run.scheduled_for for run in runs}) == RUNS
    fires = [run.scheduled_for for run in runs if run.scheduled_for is not None]
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(fires)} == {2.0}
    assert all(run.schedule_type == "WINDOW" for run in runs)
    created_rows = Counter(
        OperationActivity.objects.filter(
            operation__parent_id=created["id"], operation_state="CREATED"
        ).values_list("operation_id", flat=True)
    )
    assert sorted(created_rows.values()) == [1] * RUNS
    events = Counter(e.data["id"] for e in WebhookEvent.objects.filter(type=EventType.OPERATION_CREATED))
    assert all(events[str(run.pk)] == 1 for run in runs)


def test_a_paused_series_skips_and_a_cancelled_one_ends_its_runs(
    celery_processes: CeleryProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERIES_SWEEP_SECONDS", "1")
    monkeypatch.setenv("SWEEP_SECONDS", "1")
    org = make_org("acme")
    add_device(org.tenant, "dev-1")
    body = {
        "operation_type": "REBOOT",
        "schedule_type": "RECURRING",
        "schedule_args": {"time_expression": "*/2 * * * * ?", "duration_minutes": 5},
        "operation_device_query": {"all": True},
    }
    series_id = content(org.operator.post("/v0/operations/", body), 201)["id"]
    path = f"/v0/operations/{series_id}/"
    celery_processes.worker(concurrency=2)
    celery_processes.beat()

    def runs() -> int:
        return Operation.objects.filter(parent_id=series_id).count()

    def sweeps_done() -> int:
        return task_events(celery_processes.log("worker"), "succeeded", "operations.tasks.fire_series")

    def three_more_sweeps(after: int) -> None:
        wait_until(lambda: sweeps_done() >= after + 3, timeout=30, what="three more series sweeps")

    try:
        wait_until(lambda: runs() >= 1, timeout=40, what="a first run")
        assert content(org.operator.put(path, {"state": "PAUSED"}))["state"] == "PAUSED"
        made = runs()  # the pause waited for any sweep holding the series: none makes a run now
        three_more_sweeps(sweeps_done())
        assert runs() == made

        resumed = content(org.operator.put(path, {"state": "RESUMED"}))
        assert resumed["state"] == "SCHEDULED" and resumed["next_run_at"] is not None
        wait_until(lambda: runs() > made, timeout=30, what="a run after the resume")

        cancelled = content(org.operator.put(path, {"state": "CANCELLED", "reason": "enough"}))
        assert cancelled["state"] == "CANCELLED" and cancelled["next_run_at"] is None
        ended = runs()
        assert set(Operation.objects.filter(parent_id=series_id).values_list("state", flat=True)) <= {
            int(OperationState.CANCELLED),
            int(OperationState.SUCCESS),
            int(OperationState.FAILURE),
        }
        three_more_sweeps(sweeps_done())
        assert runs() == ended
    except AssertionError:
        print(*(celery_processes.log(name)[-3000:] for name in ("beat", "worker")))
        raise
