"""End to end with a real Celery worker and beat: a headless operation due now reaches the
device's inbox, the device runs it, and the operation ends completed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.conftest import add_device, make_org, wait_until
from tests.helpers import iso

URL = "/api/v1/inventory_device_headless_operation/"
pytestmark = pytest.mark.e2e


def test_due_operation_runs_through_the_inbox_and_completes(celery_processes, monkeypatch):
    monkeypatch.setenv("SWEEP_SECONDS", "1")
    celery_processes.worker()
    celery_processes.beat()
    org = make_org("acme")
    device = add_device(org.tenant, "dev_67892")
    now = dt.datetime.now(dt.UTC)
    ops = []
    # The first is due already (a worker is asked at once); the second falls due in a few
    # seconds, so only the beat's periodic sweep can run it: no ETA task is involved.
    for operation_type, when in (
        ("backup_configuration", now - dt.timedelta(minutes=5)),
        ("configuration_sync", now + dt.timedelta(seconds=4)),
    ):
        resp = org.admin.post(
            URL,
            {
                "device_id": "dev_67892",
                "operation_type": operation_type,
                "scheduled_at": iso(when),
                "parameters": {"compression": True},
                "priority": "high",
            },
        )
        assert resp.status_code == 201, resp.content
        ops.append(resp.json())

    def inbox() -> list[dict[str, Any]]:
        resp = device.api.get("/v2/command-inbox/", {"device_id": "dev_67892"})
        return [c for c in resp.json()["content"]["results"] if c["request"] in {op["id"] for op in ops}]

    handed: list[dict[str, Any]] = []

    def both_handed_out() -> bool:
        handed.extend(inbox())
        return len(handed) == 2

    wait_until(
        both_handed_out,
        timeout=40,
        what=f"both commands in the inbox\nworker: {celery_processes.log('worker')[-1500:]}",
    )
    by_request = {c["request"]: c for c in handed}
    first, second = (by_request[op["id"]] for op in ops)
    assert first["command"] == "backup_configuration" and first["arguments"] == {"compression": True}
    assert first["is_internal"] and first["priority"] == "high"

    # The first: the answer with update_status=true is up to date at once.
    for state in ("Command Acknowledged", "Command In Progress", "Command Success"):
        resp = device.api.put(f"/commands/v0/status/{first['id']}/", {"state": state, "reason": "ok"})
        assert resp.status_code == 200, resp.content
    got = org.admin.get(URL, {"id": ops[0]["id"], "update_status": "true"}).json()
    assert got["count"] == 1 and got["results"][0]["status"] == "completed"

    # The second: without update_status, a sweep of the beat brings it up to date.
    for state in ("Command Acknowledged", "Command In Progress", "Command Success"):
        assert device.api.put(f"/commands/v0/status/{second['id']}/", {"state": state}).status_code == 200

    def status_of_second() -> str | None:
        status = org.admin.get(URL, {"id": ops[1]["id"]}).json()["results"][0]["status"]
        return status if status == "completed" else None

    wait_until(status_of_second, timeout=30, what="the sweep to mark the second operation completed")
    assert "run-due-headless" in celery_processes.log("beat") or "run_due_headless" in celery_processes.log(
        "beat"
    )
