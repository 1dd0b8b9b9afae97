"""The console pages for operations and command statuses render and act through the services."""

from __future__ import annotations

import pytest
from django.test import Client

from commands.models import CommandStatus
from inventory.services import bulk_import_devices
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation
from tests.conftest import Org


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
    assert "QUERY RESOLVED" in html and "resolved_device_count: 4" in html


def test_cancel_action_uses_the_service(console: Client, operation: Operation) -> None:
    response = console.post(
        "/admin/operations/operation/",
        {"action": "cancel", "_selected_action": [str(operation.pk)]},
        follow=True,
    )

    assert response.status_code == 200
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
    assert "console/select_filter.js" in html
    assert filtered.status_code == 200 and list(filtered.context["cl"].result_list) == []
    assert '<option value="?operation_type__exact=REBOOT" selected>' in filtered.content.decode()
