"""``/v0/operations/``: create, list, get, PUT and preview, with their errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from operations.choices import OperationType
from operations.fanout import fan_out
from operations.models import Operation
from operations.stopping import stop_commands
from tests.conftest import Api, Org, add_device

OPS = "/v0/operations/"


def body(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "operation_type": "REBOOT",
        "schedule_type": "IMMEDIATE",
        "operation_device_query": {"devices": ["dev-a", "dev-b"]},
        "arguments": {"sample_key": "x"},
    }
    data.update(extra)
    return data


@pytest.fixture
def devices(org: Org) -> None:
    add_device(org.tenant, "dev-a", timezone="Europe/Berlin")
    add_device(org.tenant, "dev-b", timezone="Asia/Tokyo")


def test_create_answers_201_created_and_sends_the_fan_out_after_commit(
    org: Org, devices: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = org.operator.post(OPS, body())

    assert response.status_code == 201, response.json()
    content = response.json()["content"]
    assert response.json()["code"] == 0
    assert content["state"] == "CREATED" and content["state_code"] == 10
    assert content["operation"] == "REBOOT"
    assert content["created_by"] == "operator"
    assert content["operation_activity"][0]["operation_state"] == "CREATED"
    assert content["operation_stats"]["device_operation_statuses_count"]["resolved_device_count"] == 0
    assert len(callbacks) == 1  # the fan-out is sent only once the row is committed


def test_every_operation_type_of_the_seed_is_accepted(org: Org, devices: None) -> None:
    for operation_type in OperationType.values:
        response = org.admin.post(OPS, body(operation_type=operation_type))
        assert response.status_code == 201, (operation_type, response.json())
    assert Operation.objects.count() == len(OperationType.values) >= 90


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"operation_type": "DANCE"}, "operation_type"),
        ({"operation_type": None}, "operation_type"),
        ({"schedule_type": "LATER"}, "schedule_type"),
        ({"operation_device_query": None}, "operation_device_query"),
        ({"operation_device_query": {}}, "operation_device_query"),
        ({"operation_device_query": {"devices": ["ghost"]}}, "operation_device_query.devices"),
        ({"arguments": [1, 2]}, "arguments"),
        ({"schedule_type": "WINDOW"}, "schedule_args.start_datetime"),
        (
            {
                "schedule_type": "WINDOW",
                "schedule_args": {
                    "start_datetime": "2030-01-01T10:00:00",
                    "end_datetime": "2030-01-02T10:00:00Z",
                },
            },
            "schedule_args.start_datetime",
        ),
        (
            {
                "schedule_type": "WINDOW",
                "schedule_args": {
                    "start_datetime": "2030-01-02T10:00:00Z",
                    "end_datetime": "2030-01-01T10:00:00Z",
                },
            },
            "schedule_args.end_datetime",
        ),
        (
            {
                "schedule_type": "WINDOW",
                "schedule_args": {
                    "start_datetime": "2020-01-01T10:00:00Z",
                    "end_datetime": "2020-01-02T10:00:00Z",
                },
            },
            "schedule_args.end_datetime",
        ),
        ({"schedule_args": {"time_type": "martian"}}, "schedule_args.time_type"),
        ({"schedule_args": {"days": ["Funday"]}}, "schedule_args.days"),
        ({"schedule_args": {"timezone": "Mars/Olympus"}}, "schedule_args.timezone"),
    ],
)
def test_bad_create_is_a_400_naming_the_field(
    org: Org, devices: None, change: dict[str, Any], field: str
) -> None:
    response = org.admin.post(OPS, body(**change))

    assert response.status_code == 400
    data = response.json()
    assert data["code"] == 400
    assert field in data["errors"], data
    assert data["message"].startswith(field)


def test_window_times_are_filled_in_by_the_server(org: Org, devices: None) -> None:
    args = {
        "start_datetime": "2030-01-07T14:30:00+05:30",
        "end_datetime": "2030-01-09T16:00:00+05:30",
        "time_type": "DEVICE",
        "days": ["monday", "Tuesday"],
        "window_start_time": "00:00:00",
    }

    response = org.admin.post(OPS, body(schedule_type="WINDOW", schedule_args=args))

    assert response.status_code == 201, response.json()
    stored = response.json()["content"]["schedule_args"]
    assert stored["time_type"] == "device"
    assert stored["days"] == ["Monday", "Tuesday"]
    assert (stored["window_start_time"], stored["window_end_time"]) == ("14:30:00", "16:00:00")


def test_viewer_cannot_create_or_update(org: Org, devices: None) -> None:
    assert org.viewer.post(OPS, body()).status_code == 403
    operation = Operation.objects.create(
        tenant=org.tenant, operation_type="REBOOT", device_query={"all": True}
    )
    assert org.viewer.put(f"{OPS}{operation.pk}/", {"state": "CANCELLED"}).status_code == 403
    assert org.viewer.get(f"{OPS}{operation.pk}/").status_code == 200


def test_other_tenants_operations_are_invisible(org: Org, other_org: Org, devices: None) -> None:
    mine = org.admin.post(OPS, body()).json()["content"]["id"]

    assert other_org.admin.get(f"{OPS}{mine}/").status_code == 404
    assert other_org.admin.put(f"{OPS}{mine}/", {"state": "CANCELLED"}).status_code == 404
    assert other_org.admin.get(OPS).json()["content"]["count"] == 0
    assert org.admin.get(f"{OPS}not-a-uuid/").status_code == 404


def test_list_filters_by_state_integer_or_name_and_orders(org: Org, devices: None) -> None:
    first = org.admin.post(OPS, body()).json()["content"]["id"]
    second = org.admin.post(OPS, body()).json()["content"]["id"]
    fan_out(first)

    def ids(params: dict[str, Any]) -> list[str]:
        response = org.admin.get(OPS, params)
        assert response.status_code == 200, response.json()
        return [o["id"] for o in response.json()["content"]["results"]]

    assert ids({"state": 50}) == [first]
    assert ids({"state": "DISPATCHED"}) == [first]
    assert ids({"state": "CREATED"}) == [second]
    assert ids({"ordering": "created_at"}) == [first, second]
    assert ids({"ordering": "-created_at"}) == [second, first]
    assert ids({"ordering": "-state"}) == [first, second]
    assert ids({"limit": 1, "offset": 1, "ordering": "created_at"}) == [second]
    for bad in ({"state": "55"}, {"state": "SLEEPING"}, {"ordering": "secret"}, {"limit": "x"}):
        response = org.admin.get(OPS, bad)
        assert response.status_code == 400, bad
        assert set(bad) <= set(response.json()["errors"])


@pytest.mark.parametrize("state", ["\u00b2", "\u0665\u0660", "\uff15\uff10", "5" * 5000, "-50", "5 0"])
def test_list_refuses_a_state_that_is_not_an_ascii_integer_or_a_name(org: Org, state: str) -> None:
    """``str.isdigit`` is true for superscript two (``int('\u00b2')`` raises), ``isdecimal`` for
    Arabic-Indic and fullwidth digits; 5,000 digits pass both and overflow ``int``'s string
    limit. Each is a 400 naming ``state``, as an unknown state is, never a 500."""
    response = org.admin.get(OPS, {"state": state})

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert list(errors) == ["state"]
    assert errors["state"][0].startswith("unknown state"), errors


def test_a_window_to_the_end_of_year_9999_in_kiritimati_is_created(org: Org, devices: None) -> None:
    """Issue 12, item 1: ``9999-12-31T23:59:59Z`` is 13:59:59 on a day after year 9999 in
    Kiritimati (UTC+14); reading its time of day there overflowed."""
    args = {
        "start_datetime": "2030-01-07T02:00:00Z",
        "end_datetime": "9999-12-31T23:59:59Z",
        "timezone": "Pacific/Kiritimati",
    }

    response = org.admin.post(OPS, body(schedule_type="WINDOW", schedule_args=args))

    assert response.status_code == 201, response.content
    stored = response.json()["content"]["schedule_args"]
    assert (stored["window_start_time"], stored["window_end_time"]) == ("16:00:00", "13:59:59")


def test_put_cancels_and_answers_in_the_seed_shape(org: Org, devices: None) -> None:
    operation_id = org.admin.post(OPS, body()).json()["content"]["id"]
    fan_out(operation_id)

    response = org.admin.put(f"{OPS}{operation_id}/", {"state": "CANCELLED", "reason": "User requested"})

    assert response.status_code == 200
    data = response.json()
    assert data["operationId"] == operation_id and data["status"] == "SUCCEEDED"
    assert data["content"]["state"] == "CANCELLED" and data["content"]["reason"] == "User requested"
    # The answer comes before the commands move: a worker moves them (operations.stopping).
    counts = data["content"]["operation_stats"]["device_operation_statuses_count"]
    assert counts["pending_device_count"] == 2 and data["content"]["commands_stop"] == "in_progress"
    stop_commands(operation_id)
    done = org.admin.get(f"{OPS}{operation_id}/").json()["content"]
    counts = done["operation_stats"]["device_operation_statuses_count"]
    assert counts["cancelled_device_count"] == 2 and counts["pending_device_count"] == 0
    assert done["commands_stop"] == "done"
    again = org.admin.put(f"{OPS}{operation_id}/", {"state": "TIMEOUT"})
    assert again.status_code == 400 and "CANCELLED" in again.json()["message"]


@pytest.mark.parametrize(("asked", "stored"), [("FAILED", "FAILURE"), ("TIMEOUT", "TIMEOUT")])
def test_put_failed_and_timeout(org: Org, devices: None, asked: str, stored: str) -> None:
    operation_id = org.admin.post(OPS, body()).json()["content"]["id"]
    fan_out(operation_id)

    response = org.admin.put(f"{OPS}{operation_id}/", {"state": asked, "reason": "because"})
    stop_commands(operation_id)  # what the worker does after the answer

    assert response.status_code == 200
    assert response.json()["content"]["state"] == stored
    states = org.admin.get("/commands/v0/status/", {"request": operation_id}).json()["content"]["results"]
    expected = "Command TimeOut" if asked == "TIMEOUT" else "Command Cancelled"
    assert {s["state"] for s in states} == {expected}


@pytest.mark.parametrize(
    "payload", [{"state": "SUCCESS"}, {"state": None}, {}, {"state": "CANCELLED", "reason": {"why": 1}}]
)
def test_put_refuses_other_states(org: Org, devices: None, payload: dict[str, Any]) -> None:
    operation_id = org.admin.post(OPS, body()).json()["content"]["id"]

    response = org.admin.put(f"{OPS}{operation_id}/", payload)

    assert response.status_code == 400


def test_put_scheduled_needs_a_window_operation(org: Org, devices: None) -> None:
    operation_id = org.admin.post(OPS, body()).json()["content"]["id"]
    fan_out(operation_id)

    response = org.admin.put(f"{OPS}{operation_id}/", {"state": "SCHEDULED"})

    assert response.status_code == 400
    assert "WINDOW" in response.json()["message"]


def test_preview_counts_without_creating(org: Org, devices: None) -> None:
    response = org.viewer.post(f"{OPS}preview/", {"operation_device_query": {"all": True}})

    assert response.status_code == 200
    assert response.json()["content"]["device_count"] == 2
    assert [d["id"] for d in response.json()["content"]["devices"]] == ["dev-a", "dev-b"]
    assert Operation.objects.count() == 0
    bad = org.viewer.post(f"{OPS}preview/", {"operation_device_query": {"filters": {"secret": 1}}})
    assert bad.status_code == 400


def test_window_operation_waits_scheduled(org: Org, devices: None) -> None:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    args = {"start_datetime": start.isoformat(), "end_datetime": (start + dt.timedelta(hours=2)).isoformat()}
    operation_id = org.admin.post(OPS, body(schedule_type="WINDOW", schedule_args=args)).json()["content"][
        "id"
    ]

    fan_out(operation_id)

    content = org.admin.get(f"{OPS}{operation_id}/").json()["content"]
    assert content["state"] == "SCHEDULED"
    counts = content["operation_stats"]["device_operation_statuses_count"]
    assert counts["resolved_device_count"] == 2 and counts["dispatched_device_count"] == 0
    states = org.admin.get("/commands/v0/status/", {"request": operation_id}).json()["content"]["results"]
    assert {s["state"] for s in states} == {"Command Scheduled"}


def test_anonymous_is_401(anonymous: Api) -> None:
    response = anonymous.get(OPS)
    assert response.status_code == 401
    assert response.json()["code"] == 401
