"""Issue 26: the console as the operators' control room, server side.

The operation page polls until the stop is done (``settled``), says what each wave came to
and how many commands are handed out; Cancel, Time out, Delete and Deny ask first, naming
how many devices they touch; an unfinished operation is never deleted; "Failing now" groups
the failures of the last hours, scoped to the user's tenant; the sidebar leads with the
operator's work. The browser side is in ``tests/test_console_browser.py``.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import report
from inventory.services import bulk_import_devices
from operations.choices import OperationState
from operations.failing import failing_now, grouped
from operations.models import Operation
from operations.services import request_state
from operations.stopping import stop_commands
from tests.conftest import Org, staff_console, superuser_console
from tests.test_console_rollouts import LIST, dispatched, finish, fleet, page, wave_commands

__all__ = ["fleet"]  # the fixture, used by name

S = OperationState
C = CommandState


# --- the live view: settled, handed out, waves ----------------------------------------------------


def test_the_page_polls_until_the_stop_is_done_not_until_the_state_is_final(
    console: Client, fleet: Org
) -> None:
    operation = dispatched(fleet)
    base = f"{LIST}{operation.pk}/"

    console.post(f"{base}cancel/", {"confirmed": "yes"})
    stopping = console.get(f"{base}progress/").json()

    # CANCELLED at once, its commands not yet moved by the worker: the page must keep polling
    assert stopping["state"] == "CANCELLED" and stopping["terminal"] is True
    assert stopping["settled"] is False and stopping["stopping"] is True
    assert stopping["counts"]["pending_device_count"] == 10
    assert 'data-settled="false"' in page(console, operation)

    stop_commands(operation.pk)  # what the worker does
    done = console.get(f"{base}progress/").json()

    assert done["settled"] is True and done["stopping"] is False
    assert done["counts"]["cancelled_device_count"] == 10 and done["counts"]["pending_device_count"] == 0
    assert 'data-settled="true"' in page(console, operation)


def test_a_paused_rollout_says_how_many_are_handed_out_and_how_many_wait(console: Client, fleet: Org) -> None:
    operation = dispatched(fleet, {"waves": [20, 100], "wave_success_percent": 90})
    first = wave_commands(operation, 1)
    request_state(operation, S.PAUSED, "hold", "tests")

    live = console.get(f"{LIST}{operation.pk}/progress/").json()

    assert len(first) == 2
    assert live["dispatched"] == 10  # the counter, which the page showed as "dispatched 10"
    assert (live["handed_out"], live["waiting"]) == (2, 8)
    html = page(console, operation)
    assert 'handed out <b id="live-handed-out">2</b>' in html and 'waiting <b id="live-waiting">8</b>' in html


def test_a_wave_below_its_threshold_is_not_a_green_done(console: Client, fleet: Org) -> None:
    operation = dispatched(fleet, {"waves": [40, 100], "wave_success_percent": 90})
    first = wave_commands(operation, 1)
    for command, outcome in zip(first, (C.SUCCESS, C.SUCCESS, C.SUCCESS, C.FAILURE), strict=True):
        finish(command, outcome)

    waves = console.get(f"{LIST}{operation.pk}/progress/").json()["rollout"]["waves"]

    assert waves[0]["state"] == "DONE" and waves[0]["outcome"] == "BELOW_THRESHOLD"
    assert waves[0]["note"] == "75 % succeeded, below the 90 % needed"
    assert waves[1]["outcome"] == "WAITING"
    html = page(console, operation)
    assert 'class="wave-state wave-below_threshold">BELOW THRESHOLD<' in html


def test_the_failing_devices_come_first_with_their_reasons_and_a_wave_filter(
    console: Client, fleet: Org
) -> None:
    operation = dispatched(fleet, {"waves": [50, 100], "wave_success_percent": 10})
    first = wave_commands(operation, 1)
    command = first[0]
    report(command, C.FAILURE, actor="device", reason="disk full")

    html = page(console, operation)

    assert (
        html.index('id="failing-devices"')
        < html.index('id="rollout-panel"')
        < html.index('id="device-commands"')
    )
    assert "disk full" in html and f">{command.device.device_id}</a>" in html
    in_wave_two = console.get(f"{LIST}{operation.pk}/change/", {"fail_wave": "2"}).content.decode()
    assert 'id="no-failing">none in wave 2<' in in_wave_two
    listed = console.get(
        f"{LIST}{operation.pk}/change/", {"cmd_state": "failing", "cmd_wave": "1"}
    ).content.decode()
    assert listed.count('class="command-row"') == 1 and "<th>wave</th>" in listed


# --- confirmations and deletes ---------------------------------------------------------------------


def test_time_out_asks_first_naming_the_devices(console: Client, fleet: Org) -> None:
    operation = dispatched(fleet)
    finish(wave_commands(operation, 1)[0], C.SUCCESS)
    url = f"{LIST}{operation.pk}/timeout/"

    asked = console.get(url).content.decode()
    also_asked = console.post(url).content.decode()  # a POST without the confirmation only asks

    assert "Time out Reboot operation" in asked and "It touches 9 devices" in asked
    assert "1 device already finished" in asked and 'name="confirmed" value="yes"' in asked
    assert "It touches 9 devices" in also_asked
    operation.refresh_from_db()
    assert operation.state == S.PROCESSING

    console.post(url, {"confirmed": "yes"})
    stop_commands(operation.pk)
    operation.refresh_from_db()
    assert operation.state == S.TIMEOUT and operation.dispatch_failed_count == 9


def test_an_unfinished_operation_is_never_deleted(console: Client, fleet: Org) -> None:
    operation = dispatched(fleet)

    page_html = page(console, operation)
    refused = console.post(f"{LIST}{operation.pk}/delete/", {"post": "yes"}, follow=True).content.decode()
    bulk = console.post(
        LIST,
        {"action": "delete_selected", "_selected_action": [str(operation.pk)], "post": "yes"},
        follow=True,
    ).content.decode()

    assert f"{LIST}{operation.pk}/delete/" not in page_html
    assert "only a finished operation can be deleted" in refused and "Cancel it first" in refused
    assert "only a finished operation can be deleted" in bulk
    assert Operation.objects.filter(pk=operation.pk).exists()


def test_a_finished_operation_is_deleted_after_a_page_naming_its_devices(console: Client, fleet: Org) -> None:
    operation = dispatched(fleet)
    request_state(operation, S.CANCELLED, "done with it", "tests")
    stop_commands(operation.pk)
    url = f"{LIST}{operation.pk}/delete/"

    asked = console.get(url).content.decode()

    assert "10 command statuses, one per device: kiosk-00, kiosk-01" in asked
    device_key = CommandStatus.objects.filter(operation=operation).values_list("device_id", flat=True)[0]
    assert f"on {device_key}:" not in asked  # Django's own line per command, by integer key
    console.post(url, {"post": "yes"})
    assert not Operation.objects.filter(pk=operation.pk).exists()


def test_the_list_gives_the_reason_of_every_stopped_state(console: Client, fleet: Org) -> None:
    aborted = dispatched(fleet)
    request_state(aborted, S.CANCELLED, "abort: FAILED 60.0% >= 50% after 5 devices", "system")

    listed = console.get(LIST).content.decode()

    assert (
        '<span class="op-paused-reason op-state-reason">abort: FAILED 60.0% &gt;= 50% after 5 devices</span>'
        in listed
    )


# --- failing now ---------------------------------------------------------------------------------------


def fail(operation: Operation, count: int, reason: str) -> None:
    for command in CommandStatus.objects.filter(operation=operation).order_by("pk")[:count]:
        report(command, C.FAILURE, actor="device", reason=reason)


def test_failing_now_groups_the_failures_and_links_to_devices_and_operation(
    console: Client, fleet: Org
) -> None:
    operation = dispatched(fleet)
    fail(operation, 3, "disk full")

    html = console.get(f"{LIST}failing/").content.decode()

    assert '<p id="failing-total"><b>3</b> failing devices' in html
    assert "disk full" in html and "Reboot" in html and "android" in html
    assert f"commands__operation={operation.pk}" in html
    assert f"{LIST}{operation.pk}/change/?fail_wave=1#failing-devices" in html
    devices = console.get(
        "/admin/inventory/device/",
        {"commands__operation": str(operation.pk), "commands__wave": "1", "commands__state__in": "5,7"},
    )
    assert devices.status_code == 200 and devices.content.decode().count('class="field-os"') == 3


def test_failing_now_is_scoped_to_the_users_tenant(fleet: Org, other_org: Org) -> None:
    bulk_import_devices(other_org.tenant.pk, [{"device_id": "globex-1", "os": "ios"}])
    ours, theirs = dispatched(fleet), dispatched(other_org)
    fail(ours, 2, "our reason")
    fail(theirs, 1, "their secret reason")

    alice = staff_console("alice", fleet.tenant).get(f"{LIST}failing/").content.decode()
    root = superuser_console().get(f"{LIST}failing/").content.decode()
    nobody = staff_console("nobody", None).get(f"{LIST}failing/")

    assert "our reason" in alice and "their secret reason" not in alice and str(theirs.pk) not in alice
    assert "our reason" in root and "their secret reason" in root
    assert nobody.status_code == 403


def test_failing_now_refuses_an_hours_value_it_does_not_offer(console: Client) -> None:
    answer = console.get(f"{LIST}failing/", {"hours": "abc"})

    assert answer.status_code == 400
    assert "hours: Select a valid choice. abc is not one of the available choices." in answer.content.decode()
    assert console.get(f"{LIST}failing/", {"hours": "6"}).status_code == 200


def test_failing_now_reads_the_command_table_by_the_operation_index(fleet: Org) -> None:
    """The plan of the grouped query names an index that starts with the operation: no scan of
    the command table by time (no index starts with ``updated_on``)."""
    operation = dispatched(fleet)
    fail(operation, 1, "x")
    since = timezone.now() - dt.timedelta(hours=1)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # 10 rows: ask which index a big table uses

    plan = grouped([operation.pk], operation.created_at, since).explain()

    assert re.search(r"Index Cond: \(+operation_id = ", plan), plan
    assert failing_now(Operation.objects.all(), since).total == 1


# --- navigation and the favicon -------------------------------------------------------------------------


def test_the_sidebar_leads_with_the_operators_work_and_keeps_the_rest_under_advanced(db: None) -> None:
    """Settings holds keys, policy, tenants and users; Axes' and beat's tables come last."""
    index = superuser_console().get("/admin/")

    sections = [app["name"] for app in index.context["app_list"]]
    assert sections == [
        "Operations",
        "Devices",
        "Templates",
        "Maintenance",
        "Webhooks",
        "Settings",
        "Advanced",
    ]
    advanced = {model["name"] for model in index.context["app_list"][-1]["models"]}
    assert "Access attempts (Axes)" in advanced and "Periodic tasks (Periodic Tasks)" in advanced
    html = index.content.decode()
    assert html.index(">Failing now<") < html.index(">Access attempts (Axes)<")
    assert 'href="/admin/operations/operation/?status=active"' in html


@pytest.mark.parametrize(
    ("status", "shown"),
    [("active", {"run"}), ("finished", {"done"}), ("approval", set()), ("scheduled", set())],
)
def test_the_operation_lists_by_status(console: Client, fleet: Org, status: str, shown: set[str]) -> None:
    run = dispatched(fleet)
    done = dispatched(fleet)
    request_state(done, S.CANCELLED, "x", "tests")
    names = {str(run.pk): "run", str(done.pk): "done"}

    html = console.get(LIST, {"status": status}).content.decode()

    assert {name for pk, name in names.items() if f"{LIST}{pk}/change/" in html} == shown


def test_favicon_is_served_from_the_static_files(client: Client) -> None:
    answer = client.get("/favicon.ico")

    assert answer.status_code == 301 and answer["Location"].startswith("/static/console/favicon")


def test_the_approval_policy_is_set_in_settings_through_the_service(fleet: Org, other_org: Org) -> None:
    from operations.approvals import policy_of

    alice = staff_console("alice", fleet.tenant)
    url = "/admin/operations/approvalpolicy/add/"

    refused = alice.post(
        url, {"tenant": other_org.tenant.pk, "operation_types": ["WIPE"], "expires_after_hours": 5}
    )
    too_long = alice.post(
        url, {"tenant": fleet.tenant.pk, "operation_types": ["WIPE"], "expires_after_hours": 99999}
    )
    saved = alice.post(
        url,
        {
            "tenant": fleet.tenant.pk,
            "operation_types": ["WIPE", "REBOOT"],
            "min_devices": 100,
            "expires_after_hours": 12,
        },
    )

    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert (
        too_long.status_code == 200
        and "Ensure this value is less than or equal to" in too_long.content.decode()
    )
    assert saved.status_code == 302
    policy = policy_of(fleet.tenant.pk)
    assert (policy.operation_types, policy.min_devices, policy.expires_after_hours) == (
        ["REBOOT", "WIPE"],
        100,
        12,
    )
    assert policy_of(other_org.tenant.pk).operation_types != ["REBOOT", "WIPE"]


@pytest.mark.parametrize(
    ("path", "current"),
    [
        (f"{LIST}?status=finished", "model-finished"),
        (f"{LIST}failing/", "model-failing-now"),
        (LIST, "model-all-operations"),
        ("/admin/inventory/device/", "model-devices"),
    ],
)
def test_the_sidebar_marks_the_one_line_the_page_is(console: Client, path: str, current: str) -> None:
    html = console.get(path).content.decode()

    assert html.count("current-model") == 1
    assert f'class="{current} current-model"' in html


@pytest.mark.parametrize(
    "query",
    [
        {"commands__operation": "not-a-uuid"},
        {"commands__wave": "abc"},
        {"commands__state__in": "x,y"},
        {"commands__wave": "99999999999999999999"},
    ],
)
def test_the_device_lists_command_filters_refuse_bad_values_without_a_500(
    console: Client, query: dict[str, str]
) -> None:
    answer = console.get("/admin/inventory/device/", query)

    assert answer.status_code in (200, 302)
    if answer.status_code == 302:
        assert answer["Location"].endswith("?e=1")


def test_only_an_approver_may_change_the_approval_policy(fleet: Org) -> None:
    """Switching the four eyes off is an approver's decision, as the API's policy endpoint takes
    an admin key: every model permission but ``approve_operation`` is not enough."""
    from django.contrib.auth.models import Permission, User

    from operations.approvals import policy_of

    bob = staff_console("bob", fleet.tenant)
    User.objects.get(username="bob").user_permissions.remove(
        Permission.objects.get(codename="approve_operation")
    )
    before = policy_of(fleet.tenant.pk).operation_types

    refused = bob.post(
        "/admin/operations/approvalpolicy/add/",
        {"tenant": fleet.tenant.pk, "operation_types": [], "expires_after_hours": 5},
    )

    assert refused.status_code == 403
    assert policy_of(fleet.tenant.pk).operation_types == before
