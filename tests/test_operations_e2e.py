"""End to end with a real Celery worker on Redis: create, dispatch with exact counts, cancel."""

from __future__ import annotations

import pytest

from inventory.services import bulk_import_devices
from tests.conftest import CeleryProcesses, Org, wait_until

pytestmark = pytest.mark.e2e

OPS = "/v0/operations/"


def test_create_dispatch_and_cancel_with_a_real_worker(org: Org, celery_worker: CeleryProcesses) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"e2e-{i}", "os": "android"} for i in range(250)])

    created = org.admin.post(
        OPS, {"operation_type": "INSTALL_APP", "operation_device_query": {"filters": {"os": "android"}}}
    )
    assert created.status_code == 201
    operation_id = created.json()["content"]["id"]

    def dispatched() -> dict | None:
        content = org.admin.get(f"{OPS}{operation_id}/").json()["content"]
        return content if content["state"] == "DISPATCHED" else None

    content = wait_until(dispatched, timeout=60, what=f"DISPATCHED\n{celery_worker.log('worker')[-3000:]}")
    counts = content["operation_stats"]["device_operation_statuses_count"]
    assert counts["resolved_device_count"] == counts["dispatched_device_count"] == 250
    listed = org.admin.get("/commands/v0/status/", {"request": operation_id, "limit": 1000}).json()["content"]
    assert listed["count"] == 250

    cancelled = org.admin.put(f"{OPS}{operation_id}/", {"state": "CANCELLED", "reason": "e2e"})

    assert cancelled.status_code == 200
    assert cancelled.json()["content"]["state"] == "CANCELLED"  # at once; a worker moves the commands

    def all_cancelled() -> dict | None:
        content = org.admin.get(f"{OPS}{operation_id}/").json()["content"]
        counts = content["operation_stats"]["device_operation_statuses_count"]
        return counts if counts["cancelled_device_count"] == 250 else None

    counts = wait_until(all_cancelled, timeout=60, what=f"the stop\n{celery_worker.log('worker')[-3000:]}")
    assert counts["pending_device_count"] == 0
    states = org.admin.get("/commands/v0/status/", {"request": operation_id, "state": "Command Cancelled"})
    assert states.json()["content"]["count"] == 250
