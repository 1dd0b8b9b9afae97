"""The console pages for operations and command statuses render and act through the services."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from commands.admin import console_time
from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import report
from inventory.models import Device
from inventory.services import bulk_import_devices
from operations import admin_live
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation
from operations.stopping import stop_commands
from tests.conftest import Org
from tests.helpers import names_static_file


@pytest.fixture
def operation(org: Org) -> Operation:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"adm-{i}"} for i in range(4)])
    created = create_operation(
        org.tenant.pk, {"operation_type": "LOCK", "operation_device_query": {"all": True}}, "t"
    )
    fan_out(created.pk)
    created.refresh_from_db()
    return created


def test_operation_list_shows_state_and_progress(console: Client, operation: Operation) -> None:
    page = console.get("/admin/operations/operation/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "DISPATCHED" in html
    assert "0 ok / 0 failed / 4 pending of 4" in html


def test_operation_detail_shows_activity_and_counts(console: Client, operation: Operation) -> None:
    page = console.get(f"/admin/operations/operation/{operation.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "QUERY RESOLVED" in html and "pending 4, cancelled 0, timed out 0, of 4" in html


def test_cancel_action_asks_first_then_uses_the_service(console: Client, operation: Operation) -> None:
    chosen = {"action": "cancel", "_selected_action": [str(operation.pk)]}

    asked = console.post("/admin/operations/operation/", chosen)

    assert asked.status_code == 200
    html = asked.content.decode()
    assert 'id="confirm-yes"' in html and "touching 4 devices" in html
    operation.refresh_from_db()
    assert operation.state == OperationState.DISPATCHED  # nothing happened yet

    response = console.post("/admin/operations/operation/", {**chosen, "confirmed": "yes"}, follow=True)

    assert response.status_code == 200
    stop_commands(operation.pk)  # what the worker does after the action
    operation.refresh_from_db()
    assert operation.state == OperationState.CANCELLED
    assert operation.cancelled_count == 4
    assert CommandStatus.objects.filter(operation=operation, state=9).count() == 4


def test_command_status_search_by_device_and_history_inline(console: Client, operation: Operation) -> None:
    command = CommandStatus.objects.get(operation=operation, device__device_id="adm-2")

    listing = console.get("/admin/commands/commandstatus/", {"q": "adm-2"})
    detail = console.get(f"/admin/commands/commandstatus/{command.pk}/change/")

    assert (
        listing.status_code == 200
        and f"/admin/commands/commandstatus/{command.pk}/change/" in listing.content.decode()
    )
    assert detail.status_code == 200
    html = detail.content.decode()
    assert console_time(command.created_on) in html and console_time(command.dispatched_at) in html
    for localised in ("a.m.", "p.m."):
        assert localised not in html  # Django's own datetime format, without the zone


# --- the operation's page: one live view, the per-device list ---------------------------------

DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def page_of(console: Client, operation: Operation, **query: str) -> str:
    response = console.get(f"/admin/operations/operation/{operation.pk}/change/", query)
    assert response.status_code == 200
    return str(response.content.decode())


def test_the_state_and_counts_are_shown_once_from_the_live_data(
    console: Client, operation: Operation
) -> None:
    """The page is drawn from the data the progress endpoint polls: no second, stale copy of
    the state or the counts among the fields below it."""
    command = CommandStatus.objects.filter(operation=operation).order_by("pk").first()
    assert command is not None
    for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS, CommandState.FAILURE):
        command, _ = report(command, state, actor="device")

    html = page_of(console, operation)
    live = console.get(f"/admin/operations/operation/{operation.pk}/progress/").json()

    assert live["state"] == "PROCESSING"
    assert 'id="live-state">PROCESSING</span>' in html
    assert 'data-count="failed">1</b>' in html and 'data-count="pending">3</b>' in html
    assert '<b id="live-resolved">4</b>' in html
    assert 'data-part="failed" style="width:25.00%"' in html
    assert 'data-part="pending" style="width:75.00%"' in html
    assert "field-state_badge" not in html and "field-counts" not in html and "field-progress" not in html
    assert [(part["key"], part["percent"]) for part in live["bar"]] == [
        ("success", "0"),
        ("failed", "25.00"),
        ("pending", "75.00"),
        ("cancelled", "0"),
        ("timed_out", "0"),
    ] or [part["count"] for part in live["bar"]] == [0, 1, 3, 0, 0]
    assert live["updated_at"] == console_time(Operation.objects.get(pk=operation.pk).updated_at)


def test_every_date_on_the_page_is_utc_in_one_format(console: Client, operation: Operation) -> None:
    html = page_of(console, operation)

    assert console_time(operation.created_at) in html
    assert DATE.search(html)
    for month in ("Jan.", "Feb.", "March", "Dec.", "a.m.", "p.m."):
        assert month not in html  # Django's localised datetime format


def test_the_device_list_filters_by_state_and_links_device_and_history(
    console: Client, operation: Operation
) -> None:
    failed = CommandStatus.objects.get(operation=operation, device__device_id="adm-1")
    for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS, CommandState.FAILURE):
        failed, _ = report(failed, state, actor="device")

    everything = page_of(console, operation)
    only_failed = page_of(console, operation, cmd_state=str(int(CommandState.FAILURE)))

    assert everything.count('class="command-row"') == 4
    assert only_failed.count('class="command-row"') == 1
    assert f'href="/admin/commands/commandstatus/{failed.pk}/change/"' in only_failed
    device = Device.objects.get(device_id="adm-1")
    assert f'href="/admin/inventory/device/{device.pk}/change/"' in only_failed
    history = console.get(f"/admin/commands/commandstatus/{failed.pk}/change/").content.decode()
    assert "Command Failure" in history and "Command In Progress" in history


def test_the_device_list_searches_by_exact_device_id(console: Client, operation: Operation) -> None:
    html = page_of(console, operation, cmd_device="adm-3")
    none = page_of(console, operation, cmd_device="adm-")

    assert html.count('class="command-row"') == 1 and ">adm-3</a>" in html
    assert 'id="no-commands"' in none


def test_the_device_list_pages_by_device_key_without_counting(
    console: Client, operation: Operation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_live, "COMMANDS_PER_PAGE", 3)
    rows = CommandStatus.objects.filter(operation=operation).order_by("device_id")
    ids = list(rows.values_list("pk", flat=True))
    keys = list(rows.values_list("device_id", flat=True))

    seen: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        first = page_of(console, operation)
    second = page_of(console, operation, cmd_after=str(keys[2]))

    assert first.count('class="command-row"') == 3 and f"cmd_after={keys[2]}" in first
    assert second.count('class="command-row"') == 1 and 'id="cmd-next"' not in second
    assert f"/commandstatus/{ids[3]}/change/" in second and 'id="cmd-first"' in second
    listing = [sql for sql in seen if "commands_commandstatus" in sql]
    assert listing and not any("COUNT(" in sql for sql in listing)
    # The order of the unique (operation, device) index: one range scan per page.
    assert any('ORDER BY "commands_commandstatus"."device_id" ASC LIMIT 4' in sql for sql in listing)


@pytest.mark.parametrize("query", [{"cmd_state": "nope"}, {"cmd_state": "99"}, {"cmd_after": "x" * 30}])
def test_the_device_list_ignores_nonsense(console: Client, operation: Operation, query: dict) -> None:
    assert page_of(console, operation, **query).count('class="command-row"') == 4


def test_a_scheduled_command_shows_when_its_window_opens(console: Client, org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": "win-1"}])
    start = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)
    windowed = create_operation(
        org.tenant.pk,
        {
            "operation_type": "LOCK",
            "operation_device_query": {"devices": ["win-1"]},
            "schedule_type": "WINDOW",
            "schedule_args": {
                "start_datetime": start.isoformat(),
                "end_datetime": (start + dt.timedelta(days=1)).isoformat(),
                "time_type": "console",
            },
        },
        "t",
    )
    fan_out(windowed.pk)
    command = CommandStatus.objects.get(operation=windowed)
    assert command.state == CommandState.SCHEDULED

    listed = page_of(console, windowed)
    window = f"from {console_time(start)} to {console_time(start + dt.timedelta(days=1))}, daily"
    detail = console.get(f"/admin/commands/commandstatus/{command.pk}/change/").content.decode()

    assert console_time(start) in listed and window in listed
    assert "Window opens" in detail and console_time(start) in detail


def test_a_window_in_device_time_says_so_instead_of_converting() -> None:
    operation = Operation(
        schedule_type="WINDOW",
        schedule_args={
            "start_datetime": "2099-03-01T22:00:00+00:00",
            "end_datetime": "2099-03-05T02:00:00+00:00",
            "time_type": "device",
            "window_start_time": "22:00:00",
            "window_end_time": "02:00:00",
            "days": ["Saturday"],
        },
    )

    assert admin_live.schedule_summary(operation) == (
        "from 2099-03-01 22:00:00 to 2099-03-05 02:00:00 in each device's own time, "
        "daily 22:00 to 02:00, Saturday"
    )
    assert admin_live.schedule_summary(Operation(schedule_type="IMMEDIATE")) == "now (immediate)"


def test_the_operation_type_filter_is_one_drop_down(console: Client, operation: Operation) -> None:
    """Issue 16: the ~90 operation types are the options of one <select>, not a link each
    (a 2,800 px tall page); an option's value is the list's address with that filter."""
    from operations.choices import OperationType

    html = console.get("/admin/operations/operation/").content.decode()
    filtered = console.get("/admin/operations/operation/?operation_type__exact=REBOOT")

    select = html.split('<select class="filter-select" data-filter-select aria-label="operation type">')[1]
    select = select.split("</select>")[0]
    assert select.count("<option") == len(OperationType.choices) + 1  # and "All"
    assert '<option value="?operation_type__exact=LOCK">Lock</option>' in select
    assert 'href="?operation_type__exact=LOCK"' not in html
    assert names_static_file(html, "console/select_filter.js")
    assert filtered.status_code == 200 and list(filtered.context["cl"].result_list) == []
    assert '<option value="?operation_type__exact=REBOOT" selected>' in filtered.content.decode()
