"""The console's front page: fleet, active operations, rates and the command chart, per tenant."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import report
from commands.sweeps import time_out_overdue
from inventory.models import Device, Tenant
from inventory.services import bulk_import_devices, get_or_create_tenant
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import cancel_operation, create_operation
from operations.stopping import stop_commands
from tests.conftest import staff_console, superuser_console
from tests.helpers import names_static_file


def run(tenant: Tenant, operation_type: str = "LOCK") -> Operation:
    operation = create_operation(
        tenant.pk, {"operation_type": operation_type, "operation_device_query": {"all": True}}, "t"
    )
    fan_out(operation.pk)
    operation.refresh_from_db()
    return operation


@pytest.fixture
def tenants_with_devices(db: None) -> tuple[Tenant, Tenant]:
    mine, _ = get_or_create_tenant("mine")
    other, _ = get_or_create_tenant("other")
    bulk_import_devices(mine.pk, [{"device_id": f"a-{i}", "os": "android"} for i in range(3)])
    bulk_import_devices(mine.pk, [{"device_id": "l-1", "os": "linux", "state": "inactive"}])
    bulk_import_devices(other.pk, [{"device_id": f"o-{i}", "os": "ios"} for i in range(7)])
    return mine, other


def test_dashboard_counts_only_the_staff_users_tenant(tenants_with_devices: tuple[Tenant, Tenant]) -> None:
    mine, other = tenants_with_devices
    active = run(mine)
    run(other, "REBOOT")

    page = staff_console("alice", mine).get("/admin/")

    assert page.status_code == 200
    board = page.context["dashboard"]
    assert board["device_total"] == 4
    assert dict(board["devices_by_state"]) == {"active": 3, "inactive": 1}
    assert dict(board["devices_by_os"]) == {"android": 3, "linux": 1}
    assert [row["operation"].pk for row in board["active_operations"]] == [active.pk]
    html = page.content.decode()
    assert "0 ok / 0 failed / 3 pending of 3" in html
    assert names_static_file(html, "vendor/chartjs/chart.umd.min.js")
    assert 'id="content-main"' in html or "app-inventory" in html  # the app list is kept


def test_dashboard_rates_and_chart_from_command_history(tenants_with_devices: tuple[Tenant, Tenant]) -> None:
    mine, _ = tenants_with_devices
    operation = run(mine)
    commands = list(CommandStatus.objects.filter(operation=operation).order_by("pk"))
    for command in commands:
        for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS):
            report(command, state, actor="device")
            command.refresh_from_db()
        final = CommandState.SUCCESS if command != commands[-1] else CommandState.FAILURE
        report(command, final, actor="device")

    page = superuser_console().get("/admin/")

    board = page.context["dashboard"]
    assert board["failure"] == 1 and board["success"] == 0  # one failed device fails the operation
    script = re.search(r'id="command-chart-data"[^>]*>(.*?)</script>', page.content.decode())
    assert script is not None
    chart = json.loads(script.group(1))
    totals = {series["label"]: sum(series["data"]) for series in chart["datasets"]}
    assert totals["Command Success"] == 2 and totals["Command Failure"] == 1
    assert totals["Command Acknowledged"] == 3
    assert len(chart["labels"]) == 24


def test_staff_user_without_tenant_gets_no_dashboard(tenants_with_devices: tuple[Tenant, Tenant]) -> None:
    page = staff_console("nobody", None).get("/admin/")

    assert page.status_code == 200 and page.context["dashboard"] is None


def chart_of(page: Any) -> dict[str, Any]:
    script = re.search(r'id="command-chart-data"[^>]*>(.*?)</script>', page.content.decode())
    assert script is not None
    return dict(json.loads(script.group(1)))


def test_the_chart_and_the_rates_show_every_outcome(tenants_with_devices: tuple[Tenant, Tenant]) -> None:
    """Issue 16: timed-out and cancelled commands are bars of their own next to succeeded and
    failed ones, and cancelled or timed-out operations count in the rates card."""
    mine, _ = tenants_with_devices
    timing_out, cancelled = run(mine), run(mine, "REBOOT")
    overdue = timezone.now() - dt.timedelta(minutes=1)
    CommandStatus.objects.filter(operation=timing_out).update(deadline=overdue)
    assert time_out_overdue(tenant_id=mine.pk) == 3
    cancel_operation(cancelled, "no longer needed", "t")
    stop_commands(cancelled.pk)

    page = superuser_console().get("/admin/")

    chart = chart_of(page)
    totals = {series["label"]: sum(series["data"]) for series in chart["datasets"]}
    assert totals["Command TimeOut"] == 3 and totals["Command Cancelled"] == 3
    assert totals["Command Success"] == 0 and totals["Command Failure"] == 0  # shown, at zero
    outcomes = [series["label"] for series in chart["datasets"] if series["outcome"]]
    assert outcomes == ["Command Success", "Command Failure", "Command TimeOut", "Command Cancelled"]
    board = page.context["dashboard"]
    timing_out.refresh_from_db()
    assert timing_out.state_name == "FAILURE"  # its commands timed out: the operation failed
    assert board["finished"] == 2
    named = {outcome["name"]: outcome["count"] for outcome in board["outcomes"]}
    assert named == {"success": 0, "failure": 1, "cancelled": 1, "timeout": 0, "denied": 0}
    assert board["success_rate"] == 0
    assert 'class="outcome-cancelled">cancelled: <b>1</b> (50.0%)' in page.content.decode()


def test_the_fleet_figures_are_exact_below_the_threshold_and_say_so_above(
    tenants_with_devices: tuple[Tenant, Tenant], settings: Any
) -> None:
    """Beyond COUNT_ESTIMATE_THRESHOLD devices the fleet card is estimated and labelled "about"
    (inventory.fleet, issue 26); below it, exact and unlabelled."""
    mine, _ = tenants_with_devices
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Device._meta.db_table}")  # the planner knows the 11 devices
    staff = staff_console("alice", mine)

    exact = staff.get("/admin/")
    settings.COUNT_ESTIMATE_THRESHOLD = 2
    estimated = staff.get("/admin/")
    everyone = superuser_console().get("/admin/")

    board = exact.context["dashboard"]
    assert board["devices_estimated"] is False and board["device_total"] == 4
    assert "about" not in fleet_card(exact)
    board = estimated.context["dashboard"]
    assert board["devices_estimated"] is True
    # a table this small is sampled whole, and its statistics are exact: the same figures
    assert board["device_total"] == 4
    assert dict(board["devices_by_state"]) == {"active": 3, "inactive": 1}
    assert dict(board["devices_by_os"]) == {"android": 3, "linux": 1}
    assert "about 4" in fleet_card(estimated) and "estimated" in fleet_card(estimated)
    board = everyone.context["dashboard"]
    assert board["devices_estimated"] is True and board["device_total"] == 11
    assert dict(board["devices_by_os"]) == {"ios": 7, "android": 3, "linux": 1}


def fleet_card(page: Any) -> str:
    found = re.search(r'id="fleet-size">(.*?)</div>\s*<div class="card"', page.content.decode(), re.S)
    assert found is not None
    return found.group(1)
