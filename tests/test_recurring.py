"""RECURRING operations (contract section 12): a series of WINDOW runs, one per firing.

The sweep (``operations.series``) is called here with the instant it runs at, so firings years
ahead are made without waiting; the end-to-end test with two beats is tests/test_recurring_e2e.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from commands.models import CommandStatus
from inventory.models import EventType, WebhookEvent
from inventory.services import create_api_key
from inventory.webhooks.services import create_endpoint
from operations import series
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import Operation
from tests.conftest import Api, Org, add_device
from tests.helpers import content, error

OPS = "/v0/operations/"
S = OperationState
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def body(**args: Any) -> dict[str, Any]:
    schedule_args = {"time_expression": "0 0 9 * * ?", "duration_minutes": 60, **args}
    return {
        "operation_type": "REBOOT",
        "schedule_type": "RECURRING",
        "schedule_args": schedule_args,
        "operation_device_query": {"devices": ["dev-ny", "dev-berlin"]},
        "arguments": {"reason": "nightly"},
    }


@pytest.fixture
def devices(org: Org) -> None:
    add_device(org.tenant, "dev-ny", timezone="America/New_York")
    add_device(org.tenant, "dev-berlin", timezone="Europe/Berlin")


def create(org: Org, **args: Any) -> dict[str, Any]:
    return dict(content(org.operator.post(OPS, body(**args)), 201))


def get(org: Org, operation_id: str) -> dict[str, Any]:
    return dict(content(org.operator.get(f"{OPS}{operation_id}/")))


def test_a_series_waits_scheduled_and_shows_its_next_runs(org: Org, devices: None) -> None:
    created = create(org, timezone="Europe/Berlin")

    assert created["state"] == "SCHEDULED" and created["schedule_type"] == "RECURRING"
    assert created["runs_count"] == 0 and created["last_run"] is None and created["parent"] is None
    upcoming = [at(text) for text in created["upcoming_runs"]]
    assert len(upcoming) == 3 and created["next_run_at"] == created["upcoming_runs"][0]
    assert upcoming == sorted(upcoming) and upcoming[2] - upcoming[0] <= dt.timedelta(days=2, hours=1)
    assert created["schedule_args"]["duration_minutes"] == 60
    # A series fans out nothing itself.
    assert not CommandStatus.objects.filter(operation_id=created["id"]).exists()


@pytest.mark.parametrize(
    ("args", "field", "code"),
    [
        ({"time_expression": ""}, "schedule_args.time_expression", None),
        ({"time_expression": "0 0 9 * * MON"}, "schedule_args.time_expression", "invalid_time_expression"),
        ({"time_expression": "0 0 0 30 FEB ?"}, "schedule_args.time_expression", "invalid_time_expression"),
        ({"duration_minutes": 0}, "schedule_args.duration_minutes", None),
        ({"duration_minutes": 1441}, "schedule_args.duration_minutes", None),
        ({"max_runs": 0}, "schedule_args.max_runs", None),
        (
            {"start_datetime": "2031-01-02T00:00:00Z", "end_datetime": "2031-01-01T00:00:00Z"},
            "schedule_args.end_datetime",
            None,
        ),
        ({"end_datetime": "2020-01-01T00:00:00Z"}, "schedule_args.end_datetime", "never_fires"),
        ({"start_datetime": "2031-01-01T00:00:00"}, "schedule_args.start_datetime", None),
    ],
)
def test_bad_series_are_400_naming_the_field(
    org: Org, devices: None, args: dict[str, Any], field: str, code: str | None
) -> None:
    body_ = error(org.operator.post(OPS, body(**args)), 400, code)
    assert field in body_["errors"], body_


def test_each_firing_makes_one_run_with_its_event(org: Org, devices: None, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    create_endpoint(org.tenant.pk, "http://127.0.0.1:9/hook", ["operation.created"])
    created = create(org)
    fire = at(created["next_run_at"])

    assert series.fire_due(fire - dt.timedelta(seconds=1)) == 0
    assert series.fire_due(fire) == 1
    assert series.fire_due(fire) == 0  # a second sweep of the same firing
    assert series.fire_one(created["id"], fire + dt.timedelta(seconds=30)) == 0

    [run] = Operation.objects.filter(parent_id=created["id"])
    assert run.scheduled_for == fire and run.schedule_type == "WINDOW"
    assert run.arguments == {"reason": "nightly"} and run.operation_type == "REBOOT"
    assert at(run.schedule_args["start_datetime"]) == fire
    assert at(run.schedule_args["end_datetime"]) == fire + dt.timedelta(minutes=60)
    shown = get(org, created["id"])
    assert shown["runs_count"] == 1 and shown["state"] == "SCHEDULED"
    assert shown["last_run"]["id"] == str(run.pk) and at(shown["last_run"]["scheduled_for"]) == fire
    assert at(shown["next_run_at"]) == fire + dt.timedelta(days=1)
    runs = content(org.operator.get(OPS, {"parent": created["id"]}))
    assert [item["id"] for item in runs["results"]] == [str(run.pk)]
    assert runs["results"][0]["parent"] == created["id"]
    created_events = [e.data["id"] for e in WebhookEvent.objects.filter(type=EventType.OPERATION_CREATED)]
    assert created_events == [created["id"], str(run.pk)]
    assert (
        WebhookEvent.objects.get(type=EventType.OPERATION_CREATED, data__id=str(run.pk)).data["parent"]
        == (created["id"])
    )


def test_device_time_runs_open_at_the_local_hour_across_a_dst_change(org: Org, devices: None) -> None:
    # New York springs forward on 2030-03-10; Berlin on 2030-03-31.
    created = create(org, time_type="device", start_datetime="2030-03-09T00:00:00Z", max_runs=2)
    first = at(created["next_run_at"])
    assert first == at("2030-03-09T09:00:00Z")  # the wall clock, written as UTC

    # The run is made when the zone furthest ahead (UTC+14) reaches 09:00.
    assert series.fire_due(at("2030-03-08T18:59:59Z")) == 0
    assert series.fire_due(at("2030-03-08T19:00:00Z")) == 1
    assert series.fire_due(at("2030-03-09T19:00:00Z")) == 1
    runs = list(Operation.objects.filter(parent_id=created["id"]).order_by("scheduled_for"))
    assert [run.scheduled_for for run in runs] == [at("2030-03-09T09:00:00Z"), at("2030-03-10T09:00:00Z")]

    opens: dict[tuple[str, str], dt.datetime] = {}
    for run in runs:
        fan_out(run.pk)
        run.refresh_from_db()
        assert run.state == S.SCHEDULED
        for command in CommandStatus.objects.filter(operation=run).select_related("device"):
            assert command.not_before is not None
            assert run.scheduled_for is not None
            opens[(command.device.device_id, str(run.scheduled_for.date()))] = command.not_before
    assert opens == {
        ("dev-ny", "2030-03-09"): at("2030-03-09T14:00:00Z"),  # 09:00 EST
        ("dev-ny", "2030-03-10"): at("2030-03-10T13:00:00Z"),  # 09:00 EDT
        ("dev-berlin", "2030-03-09"): at("2030-03-09T08:00:00Z"),  # 09:00 CET
        ("dev-berlin", "2030-03-10"): at("2030-03-10T08:00:00Z"),
    }
    # max_runs reached: no firing left.
    assert get(org, created["id"])["next_run_at"] is None


def test_a_paused_series_skips_its_firings_and_resumes_from_the_next(org: Org, devices: None) -> None:
    created = create(org, time_expression="0 * * * * ?")
    fire = at(created["next_run_at"])
    paused = content(org.operator.put(f"{OPS}{created['id']}/", {"state": "PAUSED"}))
    assert paused["state"] == "PAUSED" and paused["next_run_at"] is None and paused["upcoming_runs"] == []

    assert series.fire_due(fire + dt.timedelta(minutes=5)) == 0
    assert not Operation.objects.filter(parent_id=created["id"]).exists()

    resumed = content(org.operator.put(f"{OPS}{created['id']}/", {"state": "RESUMED"}))
    assert resumed["state"] == "SCHEDULED" and resumed["runs_count"] == 0
    next_fire = at(resumed["next_run_at"])
    assert next_fire > dt.datetime.now(UTC) - dt.timedelta(seconds=1)
    assert series.fire_due(next_fire) == 1


def test_a_cancelled_series_ends_and_cancels_its_unfinished_runs(org: Org, devices: None) -> None:
    created = create(org)
    fire = at(created["next_run_at"])
    assert series.fire_due(fire) == 1
    run = Operation.objects.get(parent_id=created["id"])
    fan_out(run.pk)

    answer = content(org.operator.put(f"{OPS}{created['id']}/", {"state": "CANCELLED", "reason": "no more"}))

    assert answer["state"] == "CANCELLED" and answer["next_run_at"] is None
    run.refresh_from_db()
    assert run.state == S.CANCELLED
    assert series.fire_due(fire + dt.timedelta(days=1)) == 0
    assert Operation.objects.filter(parent_id=created["id"]).count() == 1
    # Final: a second cancel is refused as for any operation.
    error(org.operator.put(f"{OPS}{created['id']}/", {"state": "CANCELLED"}), 400, "invalid_transition")


def test_a_series_past_max_runs_finishes_when_its_runs_have(org: Org, devices: None) -> None:
    created = create(org, max_runs=2)
    fire = at(created["next_run_at"])
    assert series.fire_due(fire + dt.timedelta(minutes=59)) == 1  # late, but its window is still open
    assert series.fire_due(fire + dt.timedelta(days=1, hours=2)) == 0  # too late: skipped
    assert series.fire_due(fire + dt.timedelta(days=2)) == 1
    assert series.finish_ended() == 0  # its runs have not finished
    for run in Operation.objects.filter(parent_id=created["id"]):
        fan_out(run.pk)
        content(org.operator.put(f"{OPS}{run.pk}/", {"state": "CANCELLED"}))

    assert series.finish_ended() == 1
    assert series.finish_ended() == 0
    shown = get(org, created["id"])
    assert shown["state"] == "FAILURE" and shown["runs_count"] == 2
    assert [a["operation_state"] for a in shown["operation_activity"]][-2:] == ["COMPLETED", "FAILURE"]


def test_the_runs_list_is_the_tenants_own(org: Org, other_org: Org, devices: None) -> None:
    created = create(org)
    series.fire_due(at(created["next_run_at"]))
    assert content(other_org.operator.get(OPS, {"parent": created["id"]}))["count"] == 0
    error(org.operator.get(OPS, {"parent": "not-a-uuid"}), 400)


def test_a_device_time_series_starts_at_a_wall_clock_no_zone_has_reached(org: Org, devices: None) -> None:
    before = dt.datetime.now(UTC)
    created = create(org, time_type="device", time_expression="0 0 * * * ?")  # every hour
    first = at(created["next_run_at"])

    # Kiritimati (UTC+14) reaches that wall clock 14 hours before UTC does: still ahead of now,
    # and the first hour that is.
    assert before < first - dt.timedelta(hours=14) <= before + dt.timedelta(hours=1)
    assert series.fire_due(before) == 0
    assert series.fire_due(first - dt.timedelta(hours=14)) == 1


def test_a_series_the_policy_holds_is_approved_once_for_all_its_runs(org: Org, devices: None) -> None:
    """Contract sections 12 and 13: a RECURRING series of a type the tenant's policy lists
    waits for approval with nothing scheduled; approved, it waits for its first firing, and
    its runs are not held again."""
    content(org.admin.put("/v0/approval-policy/", {"operation_types": ["REBOOT"]}))
    created = create(org)
    assert created["state"] == "WAITING_FOR_APPROVAL" and created["next_run_at"] is None
    assert series.fire_due(timezone.now() + dt.timedelta(days=3)) == 0

    approver = Api(create_api_key(org.tenant, "admin", "second admin")[1])
    approved = content(approver.post(f"{OPS}{created['id']}/approve/", {"remark": "nightly is fine"}))

    assert approved["state"] == "SCHEDULED" and approved["approval"]["state"] == "APPROVED"
    fire = at(approved["next_run_at"])
    assert fire > timezone.now()
    assert series.fire_due(fire) == 1
    [run] = Operation.objects.filter(parent_id=created["id"])
    assert run.state == S.CREATED and not run.approval_state
