"""The console's operation screens: the form (API validation and messages), the live preview,
the progress endpoint, cancel and retry of the failed devices."""

from __future__ import annotations

import pytest
from django.test import Client

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import report
from config.errors import DomainError
from inventory.models import Group
from inventory.services import bulk_import_devices
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation, rerun
from tests.conftest import Org

ADD = "/admin/operations/operation/add/"
PREVIEW = "/admin/operations/operation/preview/"


@pytest.fixture
def org_with_devices(org: Org) -> Org:
    bulk_import_devices(
        org.tenant.pk,
        [{"device_id": f"and-{i}", "os": "android", "tags": ["shop"]} for i in range(5)]
        + [{"device_id": f"lin-{i}", "os": "linux"} for i in range(3)],
    )
    group = Group.objects.create(tenant=org.tenant, name="berlin")
    group.devices.add(*org.tenant.devices.filter(device_id__in=["and-0", "lin-0"]))
    return org


def form(org: Org, **fields: object) -> dict[str, object]:
    return {
        "tenant": org.tenant.pk,
        "operation_type": "REBOOT",
        "schedule_type": "IMMEDIATE",
        "device_type": "active",
        "time_type": "console",
        "timezone": "UTC",
        "arguments": "{}",
        **fields,
    }


def test_the_form_offers_every_operation_type(console: Client, org_with_devices: Org) -> None:
    page = console.get(ADD)

    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="DECLARATIVE_MANAGEMENT"' in html and 'value="CONVERGE"' in html
    assert html.count('value="android"') == 1 and "berlin" in html


def test_the_form_creates_through_the_service(console: Client, org_with_devices: Org) -> None:
    response = console.post(
        ADD, form(org_with_devices, os=["android"], tags="shop", arguments='{"force": true}')
    )

    assert response.status_code == 302
    operation = Operation.objects.get()
    assert response["Location"] == f"/admin/operations/operation/{operation.pk}/change/"
    assert operation.operation_type == "REBOOT" and operation.created_by == "admin:root"
    assert operation.device_query == {
        "device_type": "active",
        "filters": {"os__in": ["android"], "tags__contains": ["shop"]},
    }
    assert operation.arguments == {"force": True}
    assert operation.activity.filter(operation_state__isnull=False).exists()


def test_the_form_makes_a_continuous_operation_and_its_page_says_so(
    console: Client, org_with_devices: Org
) -> None:
    page = console.get(ADD).content.decode()
    assert 'name="target_selection"' in page and 'value="CONTINUOUS"' in page

    response = console.post(
        ADD,
        form(
            org_with_devices,
            tags="shop",
            target_selection="CONTINUOUS",
            continuous_end="2099-01-10T17:00",
            timezone="Europe/Berlin",
        ),
    )

    assert response.status_code == 302
    operation = Operation.objects.get()
    assert operation.target_selection == "CONTINUOUS"
    assert operation.schedule_args == {"end_datetime": "2099-01-10T17:00:00+01:00", "time_type": "console"}
    assert operation.continuous_until is not None and operation.continuous_until.hour == 16
    shown = console.get(response["Location"]).content.decode()
    assert "continuous: devices that come to match later join, until" in shown
    fan_out(operation.pk)
    base = f"/admin/operations/operation/{operation.pk}/"
    assert console.get(f"{base}progress/").json()["closable"] is True

    closed = console.post(f"{base}close/", follow=True)

    operation.refresh_from_db()
    assert (
        operation.continuous_closed_at is not None
        and "no device joins from now on" in closed.content.decode()
    )
    assert console.get(f"{base}progress/").json()["closable"] is False
    again = console.post(f"{base}close/", follow=True)
    assert "already" in again.content.decode()

    waves = console.post(
        ADD, form(org_with_devices, all_devices="on", target_selection="CONTINUOUS", waves="10, 100")
    )
    assert waves.status_code == 200 and "rollout.waves" in waves.content.decode()


def test_a_window_operation_in_console_time(console: Client, org_with_devices: Org) -> None:
    response = console.post(
        ADD,
        form(
            org_with_devices,
            all_devices="on",
            schedule_type="WINDOW",
            start="2099-01-01T09:00",
            end="2099-01-10T17:00",
            days=["Monday", "Friday"],
            timezone="Europe/Berlin",
        ),
    )

    assert response.status_code == 302
    args = Operation.objects.get().schedule_args
    assert args["start_datetime"] == "2099-01-01T09:00:00+01:00"
    assert args["days"] == ["Monday", "Friday"] and args["timezone"] == "Europe/Berlin"
    assert args["window_start_time"] == "09:00:00"
    page = console.get(response["Location"]).content.decode()
    assert (
        "from 2099-01-01 08:00:00 UTC to 2099-01-10 16:00:00 UTC, daily 09:00 to 17:00 Europe/Berlin, "
        "Monday, Friday"
    ) in page


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"all_devices": "on", "schedule_type": "WINDOW"},
            "schedule_args.start_datetime: is required for a WINDOW",
        ),
        ({"devices": "and-1, nope"}, "operation_device_query.devices: unknown device id(s): nope"),
        ({}, "operation_device_query: selects no devices"),
        ({"all_devices": "on", "arguments": "[1]"}, "arguments: must be a JSON object"),
        ({"all_devices": "on", "arguments": "[" * 100_000}, "not valid JSON: nested too deeply"),
        ({"all_devices": "on", "arguments": '{"a": 1e99999}'}, "arguments.a: numbers must be finite"),
        ({"all_devices": "on", "arguments": '{"a": "\\u0000"}'}, "arguments: must not contain the NUL"),
    ],
)
def test_errors_are_the_apis_messages(
    console: Client, org_with_devices: Org, fields: dict, message: str
) -> None:
    response = console.post(ADD, form(org_with_devices, **fields))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Operation.objects.exists()


def test_preview_counts_like_the_api(console: Client, org_with_devices: Org) -> None:
    by_form = console.post(PREVIEW, form(org_with_devices, groups=[str(Group.objects.get().pk)])).json()
    by_api = org_with_devices.admin.post("/v0/operations/preview/", {"groups": ["berlin"]}).json()["content"]

    assert by_form == {"device_count": 2, "devices": ["and-0", "lin-0"], "approval": ""}
    assert by_api["device_count"] == 2
    assert (
        console.post(PREVIEW, form(org_with_devices, os=["linux"], device_type="all")).json()["device_count"]
        == 3
    )
    bad = console.post(PREVIEW, form(org_with_devices, devices="ghost"))
    assert bad.status_code == 400
    assert bad.json() == {
        "errors": ["operation_device_query.devices: unknown device id(s): ghost"],
        "approval": "",
    }


def dispatched(org: Org, **query: object) -> Operation:
    operation = create_operation(
        org.tenant.pk, {"operation_type": "LOCK", "operation_device_query": query}, "t"
    )
    fan_out(operation.pk)
    operation.refresh_from_db()
    return operation


def test_progress_endpoint_and_cancel_button(console: Client, org_with_devices: Org) -> None:
    operation = dispatched(org_with_devices, all=True)
    base = f"/admin/operations/operation/{operation.pk}/"

    page = console.get(f"{base}change/")
    progress = console.get(f"{base}progress/").json()
    asked = console.get(f"{base}cancel/")
    cancelled = console.post(f"{base}cancel/", {"confirmed": "yes"})

    assert 'id="live-progress"' in page.content.decode() and 'id="cancel-operation"' in page.content.decode()
    assert progress["state"] == "DISPATCHED" and progress["counts"]["resolved_device_count"] == 8
    assert {part["key"]: part["count"] for part in progress["bar"]} == {
        "success": 0,
        "failed": 0,
        "pending": 8,
        "cancelled": 0,
        "timed_out": 0,
    }
    assert progress["resolved"] == 8 and progress["terminal"] is False
    assert asked.status_code == 200 and "It touches 8 devices" in asked.content.decode()
    assert cancelled.status_code == 302
    assert console.get(f"{base}progress/").json()["state"] == "CANCELLED"
    again = console.post(f"{base}cancel/", {"confirmed": "yes"}, follow=True)
    assert "already CANCELLED" in again.content.decode()


def finish(operation: Operation, failing: dict[str, CommandState]) -> None:
    """Each device reports: the listed ones end as given, the others succeed."""
    for command in CommandStatus.objects.filter(operation=operation).select_related("device"):
        target = failing.get(command.device.device_id, CommandState.SUCCESS)
        if target in (CommandState.SUCCESS, CommandState.FAILURE):
            for step in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS):
                command, _ = report(command, step, actor="device")
        report(command, target, actor="device")


def test_retry_failed_targets_exactly_the_failed_devices(console: Client, org_with_devices: Org) -> None:
    operation = dispatched(org_with_devices, filters={"os": "android"})
    finish(operation, {"and-1": CommandState.FAILURE, "and-3": CommandState.TIMEOUT})
    operation.refresh_from_db()
    assert operation.state == OperationState.FAILURE

    page = console.get(f"/admin/operations/operation/{operation.pk}/change/").content.decode()
    assert "Re-run failed devices" in page
    response = console.post(f"/admin/operations/operation/{operation.pk}/retry-failed/")

    retry = Operation.objects.exclude(pk=operation.pk).get()
    assert response["Location"] == f"/admin/operations/operation/{retry.pk}/change/"
    assert retry.operation_type == "LOCK"
    # and-3 timed out still queued: a dispatch failure, not one of the default outcomes
    # (FAILED and TIMED_OUT, contract section 12); the API's ``only`` asks for it.
    assert retry.device_query == {"device_type": "all", "devices": ["and-1"]}
    assert retry.rerun_of_id == operation.pk


def test_retry_refuses_unfinished_empty_and_oversized(org_with_devices: Org, settings) -> None:
    running = dispatched(org_with_devices, all=True)
    with pytest.raises(DomainError) as refused:
        rerun(running, "t")
    assert refused.value.code == "not_finished"

    clean = dispatched(org_with_devices, filters={"os": "linux"})
    finish(clean, {})
    clean.refresh_from_db()
    with pytest.raises(DomainError) as refused:
        rerun(clean, "t")
    assert refused.value.code == "nothing_to_retry"

    settings.MAX_QUERY_DEVICES = 1
    failing = dispatched(org_with_devices, filters={"os": "android"})
    finish(failing, {"and-1": CommandState.FAILURE, "and-2": CommandState.FAILURE})
    failing.refresh_from_db()
    with pytest.raises(DomainError, match=r"more than 1 devices ended so \(MAX_QUERY_DEVICES\)"):
        rerun(failing, "t")
