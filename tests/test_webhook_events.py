"""The outbox: every state machine's one writer records its event in its own transaction.

Events are written only when an active endpoint of the tenant subscribes (decided inside the
INSERT); a change that rolls back leaves no event; ``"*"`` leaves out command.state_changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import transaction

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.payload import payload_of
from commands.services import hand_out, move_and_settle, report
from inventory.models import EventType, WebhookEvent
from inventory.services import bulk_import_devices, delete_device
from inventory.webhooks.services import create_endpoint
from operations.choices import OperationState
from operations.services import request_state
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org, add_device

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/hook"


@pytest.fixture(autouse=True)
def _private_networks(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


def subscribe(org: Org, *events: str) -> None:
    create_endpoint(org.tenant.pk, URL, list(events))


def events_of(kind: EventType) -> list[dict[str, Any]]:
    return [e.data for e in WebhookEvent.objects.filter(type=kind.value).order_by("id")]


def _as_api(data: dict[str, Any]) -> dict[str, Any]:
    """Timestamps compared as instants (SQL writes microseconds always, Python when non-zero)."""
    out = dict(data)
    for key in ("created_on", "updated_on", "scheduled_for"):
        if out.get(key):
            out[key] = dt.datetime.fromisoformat(out[key].replace("Z", "+00:00"))
    return out


def test_without_a_subscriber_nothing_is_written(org: Org, device: DeviceActor) -> None:
    operation = dispatched_operation(org.tenant, [device])
    report(command_of(operation, device), CommandState.SUCCESS)
    assert WebhookEvent.objects.count() == 0


def test_a_report_writes_command_state_changed_as_the_api_shows_the_command(org: Org) -> None:
    subscribe(org, "command.state_changed")
    actor = add_device(org.tenant, "dev-1")
    operation = dispatched_operation(org.tenant, [actor])
    command, _ = report(command_of(operation, actor), CommandState.ACKNOWLEDGED, reason="got it")

    [data] = events_of(EventType.COMMAND_STATE_CHANGED)
    command = CommandStatus.objects.get(pk=command.pk)
    expected = payload_of(command, "dev-1")
    assert data.pop("previous_state") == "Command Queued"
    assert _as_api(data) == _as_api(expected)


def test_hand_out_and_set_moves_write_one_event_per_command(org: Org) -> None:
    subscribe(org, "command.state_changed")
    actors = [add_device(org.tenant, f"dev-{i}") for i in range(3)]
    operation = dispatched_operation(org.tenant, actors)
    hand_out(actors[0].device.pk, 10, "dev-0", "handed out")
    move_and_settle(CommandStatus.objects.filter(operation=operation), CommandState.CANCELLED, "stop")

    moves = [
        (d["device"], d["previous_state"], d["state"]) for d in events_of(EventType.COMMAND_STATE_CHANGED)
    ]
    assert moves[0] == ("dev-0", "Command Queued", "Command Initiated")
    assert sorted(moves[1:]) == [
        ("dev-0", "Command Initiated", "Command Cancelled"),
        ("dev-1", "Command Queued", "Command Cancelled"),
        ("dev-2", "Command Queued", "Command Cancelled"),
    ]
    assert all(d["reason"] == "stop" for d in events_of(EventType.COMMAND_STATE_CHANGED)[1:])


def test_the_wildcard_leaves_out_command_state_changed(org: Org, device: DeviceActor) -> None:
    subscribe(org, "*")
    operation = dispatched_operation(org.tenant, [device])
    report(command_of(operation, device), CommandState.SUCCESS)
    assert events_of(EventType.COMMAND_STATE_CHANGED) == []
    assert events_of(EventType.OPERATION_CREATED)[0]["id"] == str(operation.pk)
    states = [(d["previous_state"], d["state"]) for d in events_of(EventType.OPERATION_STATE_CHANGED)]
    assert ("COMPLETED", "SUCCESS") in states and ("DISPATCHED", "PROCESSING") in states


def test_an_operators_cancel_is_one_state_change_with_the_reason(org: Org, device: DeviceActor) -> None:
    subscribe(org, "operation.state_changed")
    operation = dispatched_operation(org.tenant, [device])
    WebhookEvent.objects.all().delete()
    request_state(operation, OperationState.CANCELLED, "wrong fleet", "alice")

    [data] = events_of(EventType.OPERATION_STATE_CHANGED)
    assert (data["previous_state"], data["state"], data["reason"]) == (
        "DISPATCHED",
        "CANCELLED",
        "wrong fleet",
    )
    assert data["state_code"] == OperationState.CANCELLED


def test_a_rolled_back_change_emits_nothing(org: Org, device: DeviceActor) -> None:
    subscribe(org, "*", "command.state_changed")
    operation = dispatched_operation(org.tenant, [device])
    WebhookEvent.objects.all().delete()

    with pytest.raises(RuntimeError), transaction.atomic():
        request_state(operation, OperationState.CANCELLED, "oops", "alice")
        assert WebhookEvent.objects.count() > 0  # written inside the transaction...
        raise RuntimeError("the caller fails after the change")

    assert WebhookEvent.objects.count() == 0  # ...and gone with it


def test_devices_created_deleted_and_imported(org: Org) -> None:
    subscribe(org, "device.created", "device.deleted")
    actor = add_device(org.tenant, "dev-x", os="android")
    bulk_import_devices(org.tenant.pk, [{"device_id": f"b-{i}"} for i in range(50)])
    delete_device(actor.device)

    created = events_of(EventType.DEVICE_CREATED)
    assert len(created) == 51 and created[0]["id"] == "dev-x" and created[0]["os"] == "android"
    assert [d["id"] for d in events_of(EventType.DEVICE_DELETED)] == ["dev-x"]


def test_another_tenants_endpoint_does_not_make_this_tenant_emit(org: Org, other_org: Org) -> None:
    subscribe(other_org, "device.created")
    add_device(org.tenant, "dev-y")
    assert WebhookEvent.objects.count() == 0
    add_device(other_org.tenant, "dev-y")
    assert [e.tenant_id for e in WebhookEvent.objects.all()] == [other_org.tenant.pk]


def test_an_inactive_endpoint_subscribes_to_nothing(org: Org) -> None:
    create_endpoint(org.tenant.pk, URL, ["device.created"], active=False)
    add_device(org.tenant, "dev-z")
    assert WebhookEvent.objects.count() == 0


def test_the_device_paths_write_events_once_an_endpoint_subscribes(org: Org, device: DeviceActor) -> None:
    operation = dispatched_operation(org.tenant, [device])
    command = command_of(operation, device)
    path = f"/commands/v0/status/{command.pk}/"

    # given no subscriber: the poll and the report write nothing
    assert device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}).status_code == 200
    assert device.api.put(path, {"state": "Command Acknowledged"}).status_code == 200
    assert WebhookEvent.objects.count() == 0

    # when an endpoint takes command.state_changed, the next report writes its event
    subscribe(org, "command.state_changed")
    assert device.api.put(path, {"state": "Command In Progress"}).status_code == 200

    [data] = events_of(EventType.COMMAND_STATE_CHANGED)
    assert (data["previous_state"], data["state"]) == ("Command Acknowledged", "Command In Progress")


def test_a_set_move_writes_each_command_as_the_api_shows_it_after_the_move(org: Org) -> None:
    """The set move's event is generated from the same field list as the API's payload, over
    the rows as the move left them (state, reason, version, updated_on all new)."""
    subscribe(org, "command.state_changed")
    actors = [add_device(org.tenant, f"dev-{i}") for i in range(2)]
    operation = dispatched_operation(org.tenant, actors)
    move_and_settle(CommandStatus.objects.filter(operation=operation), CommandState.CANCELLED, "stop")

    events = events_of(EventType.COMMAND_STATE_CHANGED)
    assert len(events) == 2
    for data in events:
        command = CommandStatus.objects.get(pk=int(data["id"]))
        assert data.pop("previous_state") == "Command Queued"
        assert _as_api(data) == _as_api(payload_of(command, data["device"]))
