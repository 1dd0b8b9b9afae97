"""Re-run (contract section 12): a new operation for exactly the devices whose commands ended
as asked (``POST /v0/operations/{id}/rerun/``)."""

from __future__ import annotations

import pytest

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import report
from inventory.services import bulk_import_devices
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation
from tests.conftest import Org
from tests.helpers import content, error

C = CommandState
OPERATIONS = "/v0/operations/"
#: How each device's command ends: the steps it reports, in order.
ENDINGS = {
    "d-failed": [C.ACKNOWLEDGED, C.IN_PROGRESS, C.FAILURE],
    "d-timed-out": [C.ACKNOWLEDGED, C.IN_PROGRESS, C.TIMEOUT],  # the device had it
    "d-never-reached": [C.TIMEOUT],  # timed out still queued: a dispatch failure
    "d-cancelled": [C.CANCELLED],
    "d-ok": [C.ACKNOWLEDGED, C.SUCCESS],
}
ROLLOUT = {"max_per_minute": 100, "retries": [{"failure_type": "FAILED", "max_attempts": 1}]}


@pytest.fixture
def finished(org: Org) -> Operation:
    """A finished operation with one device per ending (and a rollout the re-run must copy)."""
    bulk_import_devices(org.tenant.pk, [{"device_id": device_id} for device_id in ENDINGS])
    operation = create_operation(
        org.tenant.pk,
        {
            "operation_type": "INSTALL_APP",
            "operation_device_query": {"all": True},
            "arguments": {"package": "com.example"},
            "rollout": ROLLOUT,
        },
        "tester",
    )
    fan_out(operation.pk)
    for command in CommandStatus.objects.filter(operation=operation).select_related("device"):
        for step in ENDINGS[command.device.device_id]:
            command, _ = report(command, step, actor="device")
    operation.refresh_from_db()
    assert operation.state == OperationState.FAILURE
    return operation


@pytest.mark.parametrize(
    ("only", "devices"),
    [
        (None, ["d-failed", "d-timed-out"]),
        (["FAILED"], ["d-failed"]),
        (["TIMED_OUT"], ["d-timed-out"]),
        (["DISPATCH_FAILED"], ["d-never-reached"]),
        (["CANCELLED"], ["d-cancelled"]),
        (["TIMED_OUT", "DISPATCH_FAILED"], ["d-never-reached", "d-timed-out"]),
        (["FAILED", "TIMED_OUT", "DISPATCH_FAILED", "CANCELLED"], sorted(set(ENDINGS) - {"d-ok"})),
    ],
)
def test_rerun_picks_exactly_the_asked_outcomes(
    org: Org, finished: Operation, only: list[str] | None, devices: list[str]
) -> None:
    body = {} if only is None else {"only": only}
    rerun = content(org.operator.post(f"{OPERATIONS}{finished.pk}/rerun/", body), 201)

    assert rerun["rerun_of"] == str(finished.pk) and rerun["state"] == "CREATED"
    query = rerun["operation_device_query"]
    assert sorted(query["devices"]) == sorted(devices) and query["device_type"] == "all"
    assert rerun["operation_type"] == "INSTALL_APP" and rerun["arguments"] == {"package": "com.example"}
    assert rerun["rollout"]["max_per_minute"] == 100 and rerun["rollout"]["retries"] == ROLLOUT["retries"]
    assert rerun["target_selection"] == "SNAPSHOT"
    shown = content(org.viewer.get(f"{OPERATIONS}{rerun['id']}/"))
    assert shown["rerun_of"] == str(finished.pk)


def test_rerun_refusals_name_the_field(org: Org, finished: Operation) -> None:
    path = f"{OPERATIONS}{finished.pk}/rerun/"
    assert "only" in error(org.operator.post(path, {"only": ["SUCCESS"]}), 400)["errors"]
    assert "only" in error(org.operator.post(path, {"only": []}), 400)["errors"]
    assert "only" in error(org.operator.post(path, {"only": "FAILED"}), 400)["errors"]
    error(org.viewer.post(path, {}), 403)

    clean = create_operation(
        org.tenant.pk, {"operation_type": "REBOOT", "operation_device_query": {"devices": ["d-ok"]}}, "t"
    )
    unfinished = error(org.operator.post(f"{OPERATIONS}{clean.pk}/rerun/", {}), 400, "not_finished")
    assert "state" in unfinished["errors"]
    fan_out(clean.pk)
    command = CommandStatus.objects.get(operation=clean)
    report(command, C.SUCCESS, actor="device")
    nothing = error(org.operator.post(f"{OPERATIONS}{clean.pk}/rerun/", {}), 400, "nothing_to_retry")
    assert "nothing to re-run" in nothing["errors"]["only"][0]
    assert Operation.objects.filter(rerun_of__isnull=False).count() == 0


def test_rerun_of_another_tenants_operation_is_not_found(
    org: Org, other_org: Org, finished: Operation
) -> None:
    error(other_org.operator.post(f"{OPERATIONS}{finished.pk}/rerun/", {}), 404)
