"""The console's rollouts (contract section 9, issue 13): the form's rollout fields, refused
with the API's messages on the field they name; the operation page's rollout panel (a bar per
wave, each abort rule against its threshold, the rate); Pause and Resume, and who may press
them; PAUSED in the operations list."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import report
from inventory.models import ConsoleUser, Tenant
from inventory.services import bulk_import_devices
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation, request_state
from operations.stopping import stop_commands
from tests.conftest import Org, staff_console
from tests.helpers import error

ADD = "/admin/operations/operation/add/"
LIST = "/admin/operations/operation/"
S = OperationState
C = CommandState


@pytest.fixture
def fleet(org: Org) -> Org:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"kiosk-{i:02d}", "os": "android"} for i in range(10)])
    return org


def form(org: Org, **fields: object) -> dict[str, object]:
    return {
        "tenant": org.tenant.pk,
        "operation_type": "INSTALL_APP",
        "schedule_type": "IMMEDIATE",
        "device_type": "active",
        "all_devices": "on",
        "time_type": "console",
        "timezone": "UTC",
        "arguments": "{}",
        **fields,
    }


def page(client: Client, operation: Operation) -> str:
    return str(client.get(f"{LIST}{operation.pk}/change/").content.decode())


def dispatched(org: Org, rollout: dict[str, Any] | None = None, **query: Any) -> Operation:
    operation = create_operation(
        org.tenant.pk,
        {
            "operation_type": "REBOOT",
            "operation_device_query": query or {"all": True},
            **({"rollout": rollout} if rollout else {}),
        },
        "tests",
    )
    fan_out(operation.pk)
    operation.refresh_from_db()
    return operation


def finish(command: CommandStatus, outcome: CommandState) -> None:
    """The device gets the command, works on it and reports how it ended."""
    for step in (C.ACKNOWLEDGED, C.IN_PROGRESS, outcome):
        command, _ = report(command, step, actor="device")


def wave_commands(operation: Operation, wave: int) -> list[CommandStatus]:
    return list(CommandStatus.objects.filter(operation=operation, wave=wave).order_by("pk"))


# --- the form -------------------------------------------------------------------------------------


def test_the_form_creates_the_rollout_the_api_would(console: Client, fleet: Org) -> None:
    rollout = {
        "waves": [1, 10, 50, 100],
        "wave_success_percent": 80,
        "max_per_minute": 500,
        "abort": [
            {"failure_type": "FAILED", "threshold_percent": 10, "min_executed": 50},
            {"failure_type": "ALL", "threshold_percent": 25.5},
        ],
        "retries": [
            {"failure_type": "TIMED_OUT", "max_attempts": 3},
            {"failure_type": "FAILED", "max_attempts": 2},
        ],
        "in_progress_timeout_minutes": 30,
    }
    by_api = fleet.admin.post(
        "/v0/operations/",
        {"operation_type": "INSTALL_APP", "operation_device_query": {"all": True}, "rollout": rollout},
    ).json()["content"]

    response = console.post(
        ADD,
        form(
            fleet,
            waves="1, 10, 50%, 100",
            wave_success_percent="80",
            max_per_minute="500",
            abort_1_failure_type="FAILED",
            abort_1_threshold_percent="10",
            abort_1_min_executed="50",
            # a row left empty in between is not sent
            abort_3_failure_type="ALL",
            abort_3_threshold_percent="25.5",
            retry_1_failure_type="TIMED_OUT",
            retry_1_max_attempts="3",
            retry_2_failure_type="FAILED",
            retry_2_max_attempts="2",
            in_progress_timeout_minutes="30",
        ),
    )

    assert response.status_code == 302, response.context["form"].errors
    created = Operation.objects.exclude(pk=by_api["id"]).get()
    assert response["Location"] == f"{LIST}{created.pk}/change/"
    assert created.rollout == by_api["rollout"]
    assert created.rollout["abort"][1] == {
        "failure_type": "ALL",
        "threshold_percent": 25.5,
        "min_executed": 1,
    }
    assert created.max_per_minute == 500


def test_empty_rollout_fields_make_no_rollout(console: Client, fleet: Org) -> None:
    response = console.post(ADD, form(fleet, waves="  ", abort_1_failure_type="", retry_2_max_attempts=""))

    assert response.status_code == 302
    operation = Operation.objects.get()
    assert operation.rollout is None and operation.max_per_minute is None


@pytest.mark.parametrize(
    ("fields", "field", "rollout", "message"),
    [
        (
            {"waves": "10, 5, 100"},
            "waves",
            {"waves": [10, 5, 100]},
            "rollout.waves: must be strictly increasing cumulative percentages",
        ),
        ({"waves": "10 50"}, "waves", {"waves": [10, 50]}, "rollout.waves: the last wave must be 100"),
        ({"waves": "1, ten, 100"}, "waves", {"waves": [1, "ten", 100]}, "rollout.waves[1]: must be a number"),
        (
            {"waves": "0, 100"},
            "waves",
            {"waves": [0, 100]},
            "rollout.waves[0]: must be greater than 0 and at most 100",
        ),
        (
            {"waves": ", ".join(str(p) for p in [*range(1, 21), 100])},
            "waves",
            {"waves": [*range(1, 21), 100]},
            "rollout.waves: at most 20 waves",
        ),
        (
            {"wave_success_percent": "101"},
            "wave_success_percent",
            {"wave_success_percent": 101},
            "rollout.wave_success_percent: must be 0 to 100",
        ),
        (
            {"max_per_minute": "0"},
            "max_per_minute",
            {"max_per_minute": 0},
            "rollout.max_per_minute: must be 1 to 100,000",
        ),
        (
            {"max_per_minute": "1.5"},
            "max_per_minute",
            {"max_per_minute": 1.5},
            "rollout.max_per_minute: must be an integer",
        ),
        (
            # the second row filled, the first empty: the API's abort[0] is the form's row 2
            {"abort_2_failure_type": "BROKEN", "abort_2_threshold_percent": "10"},
            "abort_2_failure_type",
            {"abort": [{"failure_type": "BROKEN", "threshold_percent": 10}]},
            "rollout.abort[0].failure_type: must be one of FAILED, TIMED_OUT, ALL",
        ),
        (
            {
                "abort_1_failure_type": "FAILED",
                "abort_1_threshold_percent": "10",
                "abort_2_failure_type": "ALL",
                "abort_2_threshold_percent": "0",
            },
            "abort_2_threshold_percent",
            {
                "abort": [
                    {"failure_type": "FAILED", "threshold_percent": 10},
                    {"failure_type": "ALL", "threshold_percent": 0},
                ]
            },
            "rollout.abort[1].threshold_percent: must be greater than 0 and at most 100",
        ),
        (
            {"abort_1_failure_type": "FAILED"},
            "abort_1_threshold_percent",
            {"abort": [{"failure_type": "FAILED"}]},
            "rollout.abort[0].threshold_percent: is required",
        ),
        (
            {"abort_1_threshold_percent": "10"},
            "abort_1_failure_type",
            {"abort": [{"threshold_percent": 10}]},
            "rollout.abort[0].failure_type: must be one of FAILED, TIMED_OUT, ALL",
        ),
        (
            {"abort_1_failure_type": "ALL", "abort_1_threshold_percent": "5", "abort_1_min_executed": "0"},
            "abort_1_min_executed",
            {"abort": [{"failure_type": "ALL", "threshold_percent": 5, "min_executed": 0}]},
            "rollout.abort[0].min_executed: must be 1 to 100,000,000",
        ),
        (
            {"retry_3_failure_type": "FAILED", "retry_3_max_attempts": "11"},
            "retry_3_max_attempts",
            {"retries": [{"failure_type": "FAILED", "max_attempts": 11}]},
            "rollout.retries[0].max_attempts: must be 1 to 10",
        ),
        (
            {"retry_1_failure_type": "TIMED_OUT"},
            "retry_1_max_attempts",
            {"retries": [{"failure_type": "TIMED_OUT"}]},
            "rollout.retries[0].max_attempts: is required",
        ),
        (
            {"in_progress_timeout_minutes": "0"},
            "in_progress_timeout_minutes",
            {"in_progress_timeout_minutes": 0},
            "rollout.in_progress_timeout_minutes: must be 1 to 10,080",
        ),
        (
            {"in_progress_timeout_minutes": "1e999"},
            "in_progress_timeout_minutes",
            {"in_progress_timeout_minutes": 1.5},
            "rollout.in_progress_timeout_minutes: must be an integer",
        ),
    ],
)
def test_a_bad_rollout_shows_the_apis_message_on_its_field(
    console: Client, fleet: Org, fields: dict[str, str], field: str, rollout: dict[str, Any], message: str
) -> None:
    response = console.post(ADD, form(fleet, **fields))

    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    html = response.content.decode()
    assert html.count(message) == 2  # on the field and in the note above the form
    assert not Operation.objects.exists()
    # the API refuses the same rollout with the same words
    body = error(
        fleet.admin.post(
            "/v0/operations/",
            {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "rollout": rollout},
        ),
        400,
    )
    key, reason = message.split(": ", 1)
    assert body["errors"] == {key: [reason]}


def test_an_oversized_rollout_field_is_refused_by_the_form(console: Client, fleet: Org) -> None:
    response = console.post(ADD, form(fleet, max_per_minute="9" * 5000, waves="1, 100"))

    assert response.status_code == 200
    assert "at most 24 characters" in response.context["form"].errors["max_per_minute"][0]
    assert "waves" not in response.context["form"].errors  # the rest is not judged half-read
    assert not Operation.objects.exists()


# --- the operation page ---------------------------------------------------------------------------


def test_the_page_shows_each_wave_each_abort_rule_and_the_rate(console: Client, fleet: Org) -> None:
    operation = dispatched(
        fleet,
        {
            "waves": [50, 100],
            "wave_success_percent": 50,
            "max_per_minute": 100,
            "abort": [
                {"failure_type": "FAILED", "threshold_percent": 60, "min_executed": 2},
                {"failure_type": "TIMED_OUT", "threshold_percent": 10, "min_executed": 5},
            ],
            "retries": [{"failure_type": "TIMED_OUT", "max_attempts": 3}],
            "in_progress_timeout_minutes": 30,
        },
    )
    first = wave_commands(operation, 1)
    assert len(first) == 5 and len(wave_commands(operation, 2)) == 5
    finish(first[0], C.SUCCESS)
    finish(first[1], C.FAILURE)
    base = f"{LIST}{operation.pk}/"

    html = page(console, operation)
    live = console.get(f"{base}progress/").json()

    assert 'id="rollout-panel"' in html
    assert (
        '<tr class="rollout-wave rollout-current" data-wave="1" data-state="OPEN" data-outcome="OPEN">'
        in html
    )
    assert '<tr class="rollout-wave" data-wave="2" data-state="WAITING" data-outcome="WAITING">' in html
    waves = live["rollout"]["waves"]
    assert [(w["wave"], w["state"], w["current"]) for w in waves] == [
        (1, "OPEN", True),
        (2, "WAITING", False),
    ]
    assert {part["key"]: (part["count"], part["percent"]) for part in waves[0]["bar"]} == {
        "success": (1, "20.00"),
        "failed": (1, "20.00"),
        "cancelled": (0, "0.00"),
        "pending": (3, "60.00"),
    }
    assert 'data-part="pending" style="width:60.00%"' in html
    failed_rule, timeout_rule = live["rollout"]["abort"]
    assert failed_rule["text"] == (
        "abort when at least 60 % fail, once at least 2 devices have finished; now 50 % (1 of 2 finished)"
    )
    assert failed_rule["closeness"] == "83.33" and failed_rule["armed"] and not failed_rule["met"]
    assert timeout_rule["text"] == (
        "abort when at least 10 % time out, once at least 5 devices have finished; now 0 % (0 of 2 finished)"
    )
    assert not timeout_rule["armed"]
    assert "abort when at least 60 % fail, once at least 2 devices have finished; now 50 %" in html
    assert 'class="op-seg abort-fill" style="width:83.33%"' in html
    assert "counts once 5 devices have finished" in html
    assert live["rollout"]["rate"] == {"max": 100, "last_minute": 0, "percent": "0.00"}
    assert "0 handed out in the last minute, at most 100 a minute" in html
    assert "TIMED_OUT: up to 3 deliveries" in html and "more than 30 min: Command TimeOut" in html
    # each poll brings the panel drawn by the same template
    assert "abort when at least 60 % fail" in live["rollout_html"]
    assert 'data-wave="1" data-state="OPEN"' in live["rollout_html"]

    finish(first[2], C.FAILURE)  # 2 of 3 finished failed: 66.7% >= 60%, the rule is met

    operation.refresh_from_db()
    live = console.get(f"{base}progress/").json()
    assert live["state"] == "CANCELLED"
    assert live["reason"] == "abort: FAILED 66.7% >= 60% after 3 devices"
    assert live["rollout"]["abort"][0]["met"] and live["rollout"]["abort"][0]["closeness"] == "100.00"
    assert "abort-rule abort-met" in live["rollout_html"]
    # the cancelled rest now counts as finished; the rule shows what it measured when it aborted
    assert live["rollout"]["abort"][0]["text"] == (
        "abort when at least 60 % fail, once at least 2 devices have finished; "
        "now 66.7 % (2 of 3 finished): it aborted the operation"
    )
    assert live["rollout"]["abort"][1]["met"] is False
    # the waves say what happened: the open one was cancelled by the stop, the next never opened
    stop_commands(operation.pk)
    live = console.get(f"{base}progress/").json()
    outcomes = [(w["wave"], w["outcome"]) for w in live["rollout"]["waves"]]
    assert outcomes == [(1, "CANCELLED"), (2, "NEVER_OPENED")]
    assert 'class="wave-state wave-never_opened">NEVER OPENED<' in live["rollout_html"]
    assert live["settled"] is True and live["handed_out"] == 5 and live["waiting"] == 5


def test_waves_before_they_are_drawn_and_an_operation_without_rollout(console: Client, fleet: Org) -> None:
    waiting = create_operation(
        fleet.tenant.pk,
        {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "rollout": {"waves": [5, 100]}},
        "tests",
    )
    plain = dispatched(fleet)

    assert "5%, 100%: the waves are drawn once the fan-out has counted the devices" in page(console, waiting)
    assert console.get(f"{LIST}{waiting.pk}/progress/").json()["rollout"]["planned"] == ["5%", "100%"]
    assert 'id="rollout-panel"' not in page(console, plain)
    answer = console.get(f"{LIST}{plain.pk}/progress/").json()
    assert answer["rollout"] is None and "rollout_html" not in answer
    only_rate = dispatched(fleet, {"max_per_minute": 7})
    html = page(console, only_rate)
    assert "No waves: every device at once." in html and "at most 7 a minute" in html


# --- pause and resume -----------------------------------------------------------------------------


def test_pause_and_resume_buttons(console: Client, fleet: Org) -> None:
    operation = dispatched(fleet, {"waves": [50, 100]})
    base = f"{LIST}{operation.pk}/"
    html = page(console, operation)
    assert 'id="pause-operation"' in html
    assert '<li id="resume-tool" style="display:none">' in html

    paused = console.post(f"{base}pause/", follow=True)

    operation.refresh_from_db()
    assert operation.state == S.PAUSED and operation.paused_from == S.DISPATCHED
    assert operation.reason == "paused from the console"
    assert operation.activity.filter(operation_state="PAUSED", actor="admin:root").exists()
    html = paused.content.decode()
    assert f"Paused operation {operation.pk}" in html
    assert '<li id="pause-tool" style="display:none">' in html and '<li id="resume-tool">' in html
    live = console.get(f"{base}progress/").json()
    assert live["paused"] is True and live["pausable"] is False

    again = console.post(f"{base}pause/", follow=True).content.decode()
    # the service's refusal, as the API words it (the admin capitalises its messages)
    assert "State: the operation is already PAUSED; resume it with RESUMED" in again

    resumed = console.post(f"{base}resume/", follow=True)

    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED and operation.paused_from is None
    assert f"Resumed operation {operation.pk}." in resumed.content.decode()
    refused = console.post(f"{base}resume/", follow=True).content.decode()
    assert "State: only a PAUSED operation can be RESUMED; it is DISPATCHED" in refused
    assert console.get(f"{base}pause/").status_code == 405  # a button, never a link


def test_resume_after_a_wave_below_its_threshold_opens_the_next(console: Client, fleet: Org) -> None:
    operation = dispatched(fleet, {"waves": [20, 100], "wave_success_percent": 60})
    first = wave_commands(operation, 1)
    finish(first[0], C.SUCCESS)
    finish(first[1], C.FAILURE)
    operation.refresh_from_db()
    assert operation.state == S.PAUSED

    listed = console.get(LIST).content.decode()
    html = page(console, operation)

    assert '<span class="op-badge op-badge-paused">PAUSED</span>' in listed
    assert "wave 1 closed with 50.0% succeeded, below wave_success_percent 60%" in listed
    assert "1 ok / 1 failed / 8 pending of 10, wave 1 of 2" in listed
    assert 'data-wave="1" data-state="DONE"' in html and 'data-wave="2" data-state="WAITING"' in html

    console.post(f"{LIST}{operation.pk}/resume/")

    operation.refresh_from_db()
    assert operation.state == S.PROCESSING and operation.current_wave == 2
    assert 'class="rollout-wave rollout-current" data-wave="2" data-state="OPEN"' in page(console, operation)


def viewer_console(tenant: Tenant) -> Client:
    """A staff user of ``tenant`` who may only look at operations."""
    user = User.objects.create_user("watcher", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_operation", "view_operationactivity"])
    )
    ConsoleUser.objects.create(user=user, tenant=tenant)
    client = Client()
    client.force_login(user)
    return client


def test_a_viewer_can_neither_pause_nor_resume(fleet: Org) -> None:
    viewer = viewer_console(fleet.tenant)
    running = dispatched(fleet)
    paused = dispatched(fleet)
    request_state(paused, S.PAUSED, "night", "tests")

    html = page(viewer, running)
    assert 'id="live-progress"' in html
    assert "pause-operation" not in html and "cancel-operation" not in html
    assert viewer.post(f"{LIST}{running.pk}/pause/").status_code == 403
    assert viewer.post(f"{LIST}{paused.pk}/resume/").status_code == 403
    actions = viewer.get(LIST).content.decode()
    assert 'value="pause"' not in actions and 'value="cancel"' not in actions
    for action in ("pause", "cancel"):  # the list's actions need the change permission too
        viewer.post(LIST, {"action": action, "_selected_action": [str(running.pk)], "index": "0"})

    running.refresh_from_db()
    paused.refresh_from_db()
    assert running.state == S.DISPATCHED and paused.state == S.PAUSED


def test_another_tenants_staff_finds_no_operation_to_pause(fleet: Org, other_org: Org) -> None:
    operation = dispatched(fleet)
    stranger = staff_console("stranger", other_org.tenant)

    assert stranger.post(f"{LIST}{operation.pk}/pause/").status_code == 404
    assert stranger.post(f"{LIST}{operation.pk}/resume/").status_code == 404
    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED


# --- the list -------------------------------------------------------------------------------------


def test_the_list_shows_paused_operations_and_filters_them(console: Client, fleet: Org) -> None:
    running = dispatched(fleet)
    paused = dispatched(fleet)
    request_state(paused, S.PAUSED, "hold for the night", "tests")

    listed = console.get(LIST).content.decode()
    only_paused = console.get(LIST, {"state__exact": int(S.PAUSED)})

    assert '<span class="op-badge op-badge-paused">PAUSED</span>' in listed
    assert '<span class="op-paused-reason op-state-reason">hold for the night</span>' in listed
    assert '<span class="op-badge op-badge-dispatched">DISPATCHED</span>' in listed
    assert "?state__exact=130" in listed  # the state filter offers PAUSED
    assert list(only_paused.context["cl"].result_list) == [paused]
    assert str(running.pk) not in only_paused.content.decode()
    dashboard = console.get("/admin/").content.decode()
    assert '<span class="op-badge op-badge-paused">PAUSED</span>' in dashboard


def test_the_pause_and_resume_actions(console: Client, fleet: Org) -> None:
    first, second = dispatched(fleet), dispatched(fleet)
    request_state(second, S.PAUSED, "", "tests")

    console.post(LIST, {"action": "pause", "_selected_action": [str(first.pk), str(second.pk)], "index": "0"})

    assert {op.state for op in Operation.objects.all()} == {S.PAUSED}
    console.post(
        LIST, {"action": "resume", "_selected_action": [str(first.pk), str(second.pk)], "index": "0"}
    )
    assert {op.state for op in Operation.objects.all()} == {S.DISPATCHED}
