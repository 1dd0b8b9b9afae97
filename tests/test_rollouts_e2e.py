"""Rollouts end to end: the rate across two gunicorn workers sharing Redis, and waves, an
abort and a wave pause driven by a real Celery worker and devices polling over HTTP."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from commands import counting
from inventory.services import bulk_import_devices
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation
from tests.conftest import CeleryProcesses, Org, _process_env, add_devices, gunicorn, wait_until

pytestmark = pytest.mark.e2e
OPS = "/v0/operations/"


def _poll(url: str, token: str, device_id: str) -> int:
    request = urllib.request.Request(
        f"{url}/v2/command-inbox/?device_id={device_id}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return len(json.loads(answer.read())["content"]["results"])


@pytest.mark.django_db(transaction=True)
def test_max_per_minute_holds_across_two_gunicorn_workers(org: Org, tmp_path: Path) -> None:
    devices = add_devices(org.tenant, 60)
    operation = create_operation(
        org.tenant.pk,
        {
            "operation_type": "REBOOT",
            "operation_device_query": {"all": True},
            "rollout": {"max_per_minute": 25},
        },
        "tests",
    )
    fan_out(operation.pk)

    with gunicorn(_process_env(), tmp_path / "gunicorn.log", "-w", "2", "--threads", "4") as url:
        with ThreadPoolExecutor(max_workers=16) as pool:
            handed = list(pool.map(lambda a: _poll(url, a.token, a.device.device_id), devices * 2))
        log = (tmp_path / "gunicorn.log").read_text()

    assert sum(handed) == 25, log[-2000:]
    operation.refresh_from_db()
    assert operation.commands.filter(state=2).count() == 25  # Command Initiated
    assert operation.commands.filter(state=1).count() == 35  # still queued, for the next minutes


def test_a_rollout_runs_wave_by_wave_with_a_real_worker(org: Org, celery_worker: CeleryProcesses) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"roll-{i:02d}"} for i in range(20)])
    created = org.admin.post(
        OPS,
        {
            "operation_type": "INSTALL_APP",
            "operation_device_query": {"all": True},
            "rollout": {
                "waves": [10, 100],
                "abort": [{"failure_type": "FAILED", "threshold_percent": 50, "min_executed": 6}],
            },
        },
    )
    assert created.status_code == 201, created.content
    operation_id = created.json()["content"]["id"]

    def status() -> dict[str, Any] | None:
        body = org.admin.get(f"{OPS}{operation_id}/").json()["content"]
        return body if body["state"] == "DISPATCHED" else None

    shown = wait_until(status, timeout=60, what=f"DISPATCHED\n{celery_worker.log('worker')[-3000:]}")
    assert [(w["devices"], w["state"]) for w in shown["rollout_status"]["waves"]] == [
        (2, "OPEN"),
        (18, "WAITING"),
    ]

    def statuses(**params: Any) -> list[dict[str, Any]]:
        body = org.admin.get("/commands/v0/status/", {"request": operation_id, "limit": 100, **params})
        return list(body.json()["content"]["results"])

    first_wave = [c for c in statuses() if c["wave"] == 1]
    for command in first_wave:
        assert (
            org.admin.put(f"/commands/v0/status/{command['id']}/", {"state": "Command Success"}).status_code
            == 200
        )
    assert Operation.objects.get(pk=operation_id).current_wave == 2

    # wave 2 opens; failures past the abort rule cancel the rest at once
    second = [c for c in statuses() if c["wave"] == 2]
    for command in second[:6]:
        org.admin.put(f"/commands/v0/status/{command['id']}/", {"state": "Command Failure"})
    body = org.admin.get(f"{OPS}{operation_id}/").json()["content"]
    assert body["state"] == "CANCELLED"
    # after 4 failures 6 devices had finished, 66.7% of them failed
    assert body["reason"] == "abort: FAILED 66.7% >= 50% after 6 devices"

    def stopped() -> dict[str, Any] | None:  # the worker cancels the rest (operations.stopping)
        shown = org.admin.get(f"{OPS}{operation_id}/").json()["content"]
        counts = shown["operation_stats"]["device_operation_statuses_count"]
        return counts if counts["pending_device_count"] == 0 else None

    counts = wait_until(stopped, timeout=60, what=f"the stop\n{celery_worker.log('worker')[-3000:]}")
    # reports of commands the stop had not reached yet still counted; the rest cancelled
    assert counts["success_device_count"] == 2
    assert 4 <= counts["failed_device_count"] <= 6
    assert counts["failed_device_count"] + counts["cancelled_device_count"] == 18
    stored = Operation.objects.get(pk=operation_id)
    assert counting.recount(operation_id) == {name: getattr(stored, name) for name in counting.COUNTERS}
